-- Stage visits as at as_of, with everything the funnel cuts by and counts: the lead's channel,
-- source and first campaign, whether it got past the stage, won, or is stalled in it. Merged leads
-- stay, flagged (the marts leave them out), so a merge replaces the rows it made stale.
-- Incremental by lead: a run redoes the leads whose visits could read differently (see changed).
-- Analyzed after every run: fresh statistics let the marts' reads of a few periods use the indexes.

-- depends_on: {{ ref('int_stage_visits') }}

{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='lead_id',
        indexes=[
            {'columns': ['lead_id']},
            {'columns': ['broker_id', 'entered_day']},
            {'columns': ['broker_id', 'entered_week']},
            {'columns': ['built_at']},
        ],
        post_hook=["analyze {{ this }}"],
    )
}}

{% set as_of = as_of() %}

with

{% if is_incremental() %}
watermark as (

    -- what the last build read: its rows carry it, and the newest row is found by the built_at index
    {{ incremental_watermark(['built_at', 'built_as_of', 'sends_watermark', 'stage_visits_watermark',
                              'leads_watermark'], newest_by='built_at') }}

),

-- The leads whose visits can read differently from the last build.
changed as (

    -- new stage events, or a new first contact, channel or merge (rows rewritten since)
    {{ changed_keys(ref('int_stage_visits'), ['lead_id'], 'stage_visits_watermark') }}
    union
    {{ changed_keys(ref('int_leads_sourced'), ['lead_id'], 'leads_watermark') }}
    union
    -- a campaign send that changed since
    {{ changed_keys(ref('stg_leadflow__outbound_sends'), ['lead_id'], 'sends_watermark', written_at='updated_at') }}
    union
    -- every lead of a broker whose settings (its pipeline) changed since
    select visits.lead_id
    from {{ ref('int_stage_visits') }} as visits
    inner join {{ source('leadflow', 'broker_settings') }} as settings using (broker_id)
    cross join watermark
    where settings.updated_at > watermark.built_at
    union
    -- as_of moved: a visit began or ended in between, or a current one passed its stall limit
    -- (each by an index range); when as_of went back, every lead
    select visits.lead_id
    from {{ ref('int_stage_visits') }} as visits, watermark
    where visits.entered_at > watermark.built_as_of and visits.entered_at <= {{ as_of }}
    union
    select visits.lead_id
    from {{ ref('int_stage_visits') }} as visits, watermark
    where visits.exited_at > watermark.built_as_of and visits.exited_at <= {{ as_of }}
    union
    select visits.lead_id
    from {{ ref('int_broker_stages') }} as stages
    cross join watermark
    inner join {{ ref('int_stage_visits') }} as visits
        on visits.broker_id = stages.broker_id
       and visits.stage = stages.stage
       and visits.entered_at > watermark.built_as_of - stages.stall_days * interval '1 day'
       and visits.entered_at <= {{ as_of }} - stages.stall_days * interval '1 day'
    where visits.exited_at is null or visits.exited_at > watermark.built_as_of
    union
    select visits.lead_id
    from {{ ref('int_stage_visits') }} as visits, watermark
    where {{ as_of }} < watermark.built_as_of

),

-- materialized: the changed leads' visits first (by the lead_id index), before any join
visits as materialized (

    select * from {{ ref('int_stage_events_paired') }}
    where lead_id in (select lead_id from changed)

),
{% else %}
visits as (

    select * from {{ ref('int_stage_events_paired') }}

),
{% endif %}

leads as (

    select * from {{ ref('int_leads_sourced') }}

),

campaigns as (

    select * from {{ ref('int_leads_first_campaign') }}

),

stages as (

    select * from {{ ref('int_broker_stages') }}

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
        bool_or(stages.is_won) over (partition by visits.lead_id) as lead_won,
        -- a person moving a lead back and forward again re-enters a stage: only the first visit
        -- counts towards how many leads ever reached it
        row_number() over (partition by visits.lead_id, visits.stage
                           order by visits.entered_at, visits.stage_visit_id) = 1 as is_first_visit

    from visits
    inner join stages using (broker_id, stage)

),

flagged as (

    select
        positioned.stage_visit_id,
        positioned.broker_id,
        positioned.lead_id,
        positioned.stage,
        positioned.stage_name,
        positioned.stage_position,
        positioned.entered_at,
        -- the funnel marts' periods (in the session's time zone, as date_trunc reads it)
        date_trunc('day', positioned.entered_at)::date as entered_day,
        date_trunc('week', positioned.entered_at)::date as entered_week,
        -- only for visits that ended: a current visit's days grow with as_of and are not kept here
        case when not positioned.is_current then positioned.days_in_stage end as days_in_stage,
        positioned.is_current,
        positioned.is_first_visit,
        leads.is_merged,
        leads.first_channel as channel,
        leads.source,
        leads.first_contact_week,
        coalesce(campaigns.first_campaign_id::text, 'none') as campaign,
        positioned.furthest_position > positioned.stage_position and positioned.stage <> 'perdido' as advanced,
        positioned.lead_won as won,
        positioned.is_current and coalesce(positioned.days_in_stage > positioned.stall_days, false) as stalled

    from positioned
    inner join leads using (lead_id)
    left join campaigns using (lead_id)

),

final as (

    select
        flagged.*,
        -- What this build read, so the next one knows what is new; built_at tells the marts which
        -- rows changed since they last read them.
        now() as built_at,
        {{ as_of }} as built_as_of,
        (select coalesce(max(updated_at), '-infinity') from {{ ref('stg_leadflow__outbound_sends') }})
            as sends_watermark,
        (select max(built_at) from {{ ref('int_stage_visits') }}) as stage_visits_watermark,
        (select max(built_at) from {{ ref('int_leads_sourced') }}) as leads_watermark

    from flagged

)

select * from final
