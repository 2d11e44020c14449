{#- The funnel per broker, period (day or week, by the day a lead entered the stage) and stage, cut
    by channel, source and first campaign with every roll-up precomputed ('all'), so a report
    filtered on any of them reads exact medians instead of re-aggregating them.

    Incremental: a run recomputes the (broker, period) pairs that hold a visit int_funnel_visits
    rewrote since this table last read it (source_built_at). A visit's period never changes, and a
    merged lead's visits stay there flagged, so those are all the pairs that can differ. A pair
    left without live visits gets one placeholder row (stage null), so delete+insert clears it, and
    the post-hook deletes the placeholder. -#}
{% macro funnel_by_period(period) %}

with

{% if is_incremental() %}
watermark as (

    {{ incremental_watermark(['source_built_at']) }}

),

changed as (

    {{ changed_keys(ref('int_funnel_visits'), ['broker_id', 'entered_' ~ period ~ ' as period_start'],
                    'source_built_at') }}

),

visits as (

    -- the changed periods' visits, each period by the (broker_id, entered_{{ period }}) index (a lateral
    -- fenced with offset 0: else the planner walks the whole index to merge-join a few hundred periods)
    select period_visits.*, changed.period_start
    from changed
    cross join lateral (
        select * from {{ ref('int_funnel_visits') }}
        where int_funnel_visits.broker_id = changed.broker_id
          and int_funnel_visits.entered_{{ period }} = changed.period_start
          and not int_funnel_visits.is_merged
        offset 0  -- keeps the subquery a per-period index scan
    ) as period_visits

),
{% else %}
visits as (

    select *, entered_{{ period }} as period_start
    from {{ ref('int_funnel_visits') }}
    where not is_merged

),
{% endif %}

aggregated as (

    select
        broker_id,
        period_start,
        case when grouping(channel) = 1 then 'all' else channel end as channel,
        case when grouping(source) = 1 then 'all' else source end as source,
        case when grouping(campaign) = 1 then 'all' else campaign end as campaign,
        stage,
        stage_name,
        stage_position,
        count(distinct lead_id) as leads_entered,
        -- the same leads, less those that had been in the stage before (moved back, then forward)
        count(distinct lead_id) filter (where is_first_visit) as leads_first_entered,
        count(distinct lead_id) filter (where is_first_visit and advanced) as leads_first_advanced,
        count(distinct lead_id) filter (where advanced) as leads_advanced,
        count(distinct lead_id) filter (where won) as leads_won,
        count(distinct lead_id) filter (where is_current) as leads_now,
        count(distinct lead_id) filter (where stalled) as leads_stalled,
        -- of the visits that ended: a visit still open has no time in stage yet
        percentile_cont(0.5) within group (order by days_in_stage) filter (where not is_current)
            as median_days_in_stage

    from visits
    group by broker_id, period_start, stage, stage_name, stage_position, cube(channel, source, campaign)

),

source_built as (

    select max(built_at) as source_built_at from {{ ref('int_funnel_visits') }}

)

select
    aggregated.*,
    round(leads_advanced::numeric / leads_entered, 4)::float8 as conversion_to_next,
    round(leads_won::numeric / leads_entered, 4)::float8 as conversion_to_won,
    source_built.source_built_at
from aggregated
cross join source_built

{% if is_incremental() %}
union all

select changed.broker_id, changed.period_start, null, null, null, null, null, null, null, null, null, null, null,
       null, null, null, null, null, source_built.source_built_at
from changed
cross join source_built
where not exists (select 1 from visits
                  where visits.broker_id = changed.broker_id and visits.period_start = changed.period_start)
{% endif %}

{% endmacro %}
