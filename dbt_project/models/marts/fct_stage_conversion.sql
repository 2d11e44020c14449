-- Per broker, first channel and stage, over all time up to as_of: how many leads reached it, went
-- further, are in it now or stalled there; the conversion to later stages and from entry. Summed
-- from the daily funnel's first visits: a lead moved back and forward again is one lead that
-- reached the stage, not two (for medians in stage, see the funnel marts).

with

daily as (

    select * from {{ ref('fct_funnel_daily') }}
    where channel <> 'all' and source = 'all' and campaign = 'all'

),

per_stage as (

    select
        broker_id,
        channel as first_channel,
        stage,
        stage_position,
        sum(leads_first_entered)::bigint as leads_reached,
        sum(leads_first_advanced)::bigint as leads_advanced,
        sum(leads_now)::bigint as leads_now,
        sum(leads_stalled)::bigint as leads_stalled

    from daily
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
