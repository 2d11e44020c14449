-- Stage visits of live leads as at as_of, with everything the funnel cuts by and counts: the lead's
-- channel, source and first campaign, whether it got past the stage, won, or is stalled in it.

with

visits as (

    select * from {{ ref('int_stage_events_paired') }}

),

leads as (

    select * from {{ ref('int_leads_sourced') }}
    where not is_merged

),

campaigns as (

    select * from {{ ref('int_leads_first_campaign') }}

),

stages as (

    select * from {{ ref('pipeline_stages') }}

),

positioned as (

    select
        visits.*,
        stages.stage_name,
        stages.stage_position,
        stages.stall_days,
        -- how far along the pipeline the lead got (being lost is not further)
        max(stages.stage_position) filter (where visits.stage <> 'perdido') over (partition by visits.lead_id)
            as furthest_position,
        bool_or(visits.stage = 'ganado') over (partition by visits.lead_id) as lead_won

    from visits
    inner join stages using (stage)

),

final as (

    select
        positioned.stage_visit_id,
        positioned.broker_id,
        positioned.lead_id,
        positioned.stage,
        positioned.stage_name,
        positioned.stage_position,
        positioned.entered_at,
        positioned.days_in_stage,
        positioned.is_current,
        leads.first_channel as channel,
        leads.source,
        coalesce(campaigns.first_campaign_id::text, 'none') as campaign,
        positioned.furthest_position > positioned.stage_position and positioned.stage <> 'perdido' as advanced,
        positioned.lead_won as won,
        positioned.is_current and coalesce(positioned.days_in_stage > positioned.stall_days, false) as stalled

    from positioned
    inner join leads using (lead_id)
    left join campaigns using (lead_id)

)

select * from final
