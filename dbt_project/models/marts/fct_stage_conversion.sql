-- Per broker, first channel and stage, over all time up to as_of: how many leads reached it, went
-- further, are in it now or stalled there; the conversion to later stages and from entry; the
-- median days in the stage (a visit still open counts its days so far).

with

visits as (

    select * from {{ ref('int_funnel_visits') }}

),

per_stage as (

    select
        broker_id,
        channel as first_channel,
        stage,
        stage_position,
        count(distinct lead_id) as leads_reached,
        count(distinct lead_id) filter (where advanced) as leads_advanced,
        count(distinct lead_id) filter (where is_current) as leads_now,
        count(distinct lead_id) filter (where stalled) as leads_stalled,
        percentile_cont(0.5) within group (order by days_in_stage) as median_days_in_stage

    from visits
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
