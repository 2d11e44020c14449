-- Response times per broker and channel: how long leads waited for the first answer, and typically.

with

responded as (

    select * from {{ ref('int_leads_responded') }}

),

final as (

    select
        broker_id,
        channel,
        count(*) as leads,
        count(first_reply_minutes) as leads_answered,
        percentile_cont(0.5) within group (order by first_reply_minutes) as median_first_reply_minutes,
        percentile_cont(0.9) within group (order by first_reply_minutes) as p90_first_reply_minutes,
        percentile_cont(0.5) within group (order by median_reply_minutes) as median_reply_minutes

    from responded
    group by 1, 2

)

select * from final
