-- Leads entering each stage, per broker, ISO week (Monday) and first channel.

with

daily as (

    select * from {{ ref('fct_funnel_daily') }}

),

final as (

    select
        broker_id,
        date_trunc('week', day)::date as week,
        first_channel,
        stage,
        sum(leads_entered)::bigint as leads_entered

    from daily
    group by 1, 2, 3, 4

)

select * from final
