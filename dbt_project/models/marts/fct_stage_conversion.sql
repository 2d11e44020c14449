-- Per broker, first channel and stage: how many leads reached it, how many went further, the
-- conversion stage to stage and from entry, and the median time spent in it.

with

visits as (

    select * from {{ ref('int_stage_events_paired') }}

),

first_touch as (

    select * from {{ ref('int_leads_sourced') }}

),

stages as (

    select * from {{ ref('pipeline_stages') }}

),

reached as (

    select
        visits.broker_id,
        coalesce(first_touch.first_channel, 'unknown') as first_channel,
        visits.lead_id,
        visits.stage,
        stages.stage_position,
        -- how far along the pipeline the lead got (being lost is not further)
        max(stages.stage_position) filter (where visits.stage <> 'perdido') over (partition by visits.lead_id)
            as furthest_position,
        visits.days_in_stage,
        visits.is_current

    from visits
    inner join stages using (stage)
    left join first_touch using (lead_id)

),

per_stage as (

    select
        broker_id,
        first_channel,
        stage,
        stage_position,
        count(distinct lead_id) as leads_reached,
        count(distinct lead_id) filter (where furthest_position > stage_position) as leads_advanced,
        count(distinct lead_id) filter (where is_current) as leads_now,
        percentile_cont(0.5) within group (order by days_in_stage) as median_days_in_stage

    from reached
    group by 1, 2, 3, 4

),

entries as (

    select broker_id, first_channel, leads_reached as leads_entered
    from per_stage
    where stage = 'entrada'

),

final as (

    select
        per_stage.*,
        round(per_stage.leads_advanced::numeric / nullif(per_stage.leads_reached, 0), 4)::float8 as conversion_to_next,
        round(per_stage.leads_reached::numeric / nullif(entries.leads_entered, 0), 4)::float8 as conversion_from_entry

    from per_stage
    left join entries using (broker_id, first_channel)

)

select * from final
