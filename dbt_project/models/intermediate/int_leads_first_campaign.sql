-- The campaign that first reached each lead by the as_of instant: the funnel's campaign dimension
-- (first-touch attribution). Leads no campaign reached are not here.

with

sends as (

    select * from {{ ref('stg_leadflow__outbound_sends') }}
    where sent_at <= {{ as_of() }}

),

final as (

    select distinct on (lead_id)
        lead_id,
        broker_id,
        campaign_id as first_campaign_id,
        sent_at as first_campaign_touch_at

    from sends
    order by lead_id, sent_at, send_id

)

select * from final
