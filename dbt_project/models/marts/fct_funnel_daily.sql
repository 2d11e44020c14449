-- Leads entering each stage, per broker, day and first channel.

with

visits as (

    select * from {{ ref('int_stage_events_paired') }}

),

first_touch as (

    select * from {{ ref('int_leads_sourced') }}

),

final as (

    select
        visits.broker_id,
        visits.entered_at::date as day,
        coalesce(first_touch.first_channel, 'unknown') as first_channel,
        visits.stage,
        count(distinct visits.lead_id) as leads_entered

    from visits
    left join first_touch using (lead_id)
    group by 1, 2, 3, 4

)

select * from final
