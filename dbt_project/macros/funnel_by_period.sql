{#- The funnel per broker, period (day or week, by the day a lead entered the stage) and stage, cut
    by channel, source and first campaign with every roll-up precomputed ('all'), so a report
    filtered on any of them reads exact medians instead of re-aggregating them. -#}
{% macro funnel_by_period(period) %}

with

visits as (

    select * from {{ ref('int_funnel_visits') }}

),

final as (

    select
        broker_id,
        date_trunc('{{ period }}', entered_at)::date as period_start,
        case when grouping(channel) = 1 then 'all' else channel end as channel,
        case when grouping(source) = 1 then 'all' else source end as source,
        case when grouping(campaign) = 1 then 'all' else campaign end as campaign,
        stage,
        stage_name,
        stage_position,
        count(distinct lead_id) as leads_entered,
        count(distinct lead_id) filter (where advanced) as leads_advanced,
        count(distinct lead_id) filter (where won) as leads_won,
        count(distinct lead_id) filter (where is_current) as leads_now,
        count(distinct lead_id) filter (where stalled) as leads_stalled,
        -- of the visits that ended: a visit still open has no time in stage yet
        percentile_cont(0.5) within group (order by days_in_stage) filter (where not is_current)
            as median_days_in_stage

    from visits
    group by broker_id, 2, stage, stage_name, stage_position, cube(channel, source, campaign)

)

select
    *,
    round(leads_advanced::numeric / leads_entered, 4)::float8 as conversion_to_next,
    round(leads_won::numeric / leads_entered, 4)::float8 as conversion_to_won
from final

{% endmacro %}
