-- Weekly cohorts by first contact: of the leads first seen in a week, how many reached each stage.

with

first_touch as (

    select * from {{ ref('int_leads_sourced') }}
    where not is_merged and first_contact_at <= '{{ var("as_of") }}'::timestamptz

),

visits as (

    select * from {{ ref('int_stage_events_paired') }}

),

stages as (

    select * from {{ ref('pipeline_stages') }}

),

cohorts as (

    select broker_id, first_contact_week as cohort_week, count(*) as leads_in_cohort
    from first_touch
    group by 1, 2

),

reached as (

    select
        first_touch.broker_id,
        first_touch.first_contact_week as cohort_week,
        visits.stage,
        count(distinct visits.lead_id) as leads_reached

    from first_touch
    inner join visits using (lead_id)
    group by 1, 2, 3

),

final as (

    select
        cohorts.broker_id,
        cohorts.cohort_week,
        stages.stage,
        stages.stage_name,
        stages.stage_position,
        cohorts.leads_in_cohort,
        coalesce(reached.leads_reached, 0) as leads_reached,
        round(coalesce(reached.leads_reached, 0)::numeric / cohorts.leads_in_cohort, 4)::float8 as share_reached

    from cohorts
    cross join stages
    left join reached using (broker_id, cohort_week, stage)

)

select * from final
