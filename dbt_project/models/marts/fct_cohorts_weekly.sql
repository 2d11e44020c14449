-- Weekly cohorts by first contact: of the leads first seen in a week, how many reached each stage.
-- Incremental: a run recounts the (broker, week) cohorts holding a lead or visit rewritten since
-- this table last read them (and the week a lead left, when a merge moved its first contact). A week
-- left with no lead gets a placeholder row (stage null) so delete+insert clears it; the post-hook
-- deletes the placeholder.

{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['broker_id', 'cohort_week'],
        post_hook=["{{ delete_placeholders() }}"],
    )
}}

with

{% if is_incremental() %}
watermark as (

    {{ incremental_watermark(['leads_built_at', 'visits_built_at']) }}

),

changed as (

    {{ changed_keys(ref('int_leads_sourced'), ['broker_id', 'first_contact_week as cohort_week'], 'leads_built_at') }}
    union
    {{ changed_keys(ref('int_leads_sourced'), ['broker_id', 'previous_first_contact_week'], 'leads_built_at',
                    where='previous_first_contact_week is not null') }}
    union
    {{ changed_keys(ref('int_funnel_visits'), ['broker_id', 'first_contact_week'], 'visits_built_at',
                    where='first_contact_week is not null') }}

),
{% endif %}

first_touch as (

    select int_leads_sourced.*
    from {{ ref('int_leads_sourced') }}
    {% if is_incremental() %}
    inner join changed on changed.broker_id = int_leads_sourced.broker_id
                      and changed.cohort_week = int_leads_sourced.first_contact_week
    {% endif %}
    where not is_merged and first_contact_at <= {{ as_of() }}

),

visits as (

    select int_funnel_visits.*
    from {{ ref('int_funnel_visits') }}
    {% if is_incremental() %}
    inner join changed on changed.broker_id = int_funnel_visits.broker_id
                      and changed.cohort_week = int_funnel_visits.first_contact_week
    {% endif %}
    where not is_merged

),

stages as (

    select * from {{ ref('int_broker_stages') }}

),

cohorts as (

    select broker_id, first_contact_week as cohort_week, count(*) as leads_in_cohort
    from first_touch
    group by 1, 2

),

reached as (

    select
        broker_id,
        first_contact_week as cohort_week,
        stage,
        count(distinct lead_id) as leads_reached

    from visits
    where first_contact_week is not null
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
        round(coalesce(reached.leads_reached, 0)::numeric / cohorts.leads_in_cohort, 4)::float8 as share_reached,
        (select max(built_at) from {{ ref('int_leads_sourced') }}) as leads_built_at,
        (select max(built_at) from {{ ref('int_funnel_visits') }}) as visits_built_at

    from cohorts
    inner join stages using (broker_id)
    left join reached using (broker_id, cohort_week, stage)

)

select * from final

{% if is_incremental() %}
union all

select changed.broker_id, changed.cohort_week, null, null, null, null, null, null, null, null
from changed
where not exists (select 1 from cohorts
                  where cohorts.broker_id = changed.broker_id and cohorts.cohort_week = changed.cohort_week)
{% endif %}
