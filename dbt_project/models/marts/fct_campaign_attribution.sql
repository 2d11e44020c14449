-- Per campaign: leads it touched, and those that moved forward in the pipeline (or won) within
-- attribution_days of their first touch by it. Only what happened by the as_of instant counts.

with

sends as (

    select * from {{ ref('stg_leadflow__outbound_sends') }}
    where sent_at <= {{ as_of() }}

),

campaigns as (

    select * from {{ ref('stg_leadflow__campaigns') }}

),

events as (

    select * from {{ ref('stg_leadflow__stage_events') }}
    where occurred_at <= {{ as_of() }}

),

stages as (

    select * from {{ ref('int_broker_stages') }}

),

touches as (

    select campaign_id, broker_id, lead_id, min(sent_at) as first_touch_at
    from sends
    group by 1, 2, 3

),

forward_moves as (

    select
        events.lead_id,
        events.to_stage,
        events.occurred_at,
        target.is_won

    from events
    -- only leads some campaign touched
    inner join (select distinct lead_id from touches) as touched using (lead_id)
    inner join stages as target on target.broker_id = events.broker_id and target.stage = events.to_stage
    left join stages as origin on origin.broker_id = events.broker_id and origin.stage = events.from_stage
    where events.to_stage <> 'perdido'
      and target.stage_position > coalesce(origin.stage_position, 0)

),

attributed as (

    select
        touches.campaign_id,
        touches.lead_id,
        bool_or(forward_moves.lead_id is not null) as advanced,
        coalesce(bool_or(forward_moves.is_won), false) as won

    from touches
    left join forward_moves
        on forward_moves.lead_id = touches.lead_id
        and forward_moves.occurred_at > touches.first_touch_at
        and forward_moves.occurred_at <= touches.first_touch_at + interval '{{ var("attribution_days") }} days'
    group by 1, 2

),

final as (

    select
        campaigns.broker_id,
        campaigns.campaign_id,
        campaigns.campaign_name,
        count(attributed.lead_id) as leads_touched,
        count(attributed.lead_id) filter (where attributed.advanced) as leads_advanced_after_touch,
        count(attributed.lead_id) filter (where attributed.won) as leads_won_after_touch,
        round(count(attributed.lead_id) filter (where attributed.advanced)::numeric
              / nullif(count(attributed.lead_id), 0), 4)::float8 as advance_rate

    from campaigns
    left join attributed using (campaign_id)
    group by 1, 2, 3

)

select * from final
