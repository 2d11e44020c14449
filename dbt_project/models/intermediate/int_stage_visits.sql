-- One row per stage visit, paired with the lead's next stage event: when the lead entered the
-- stage and when it left (null while it is still there). Independent of as_of, so it can grow
-- incrementally: a run redoes only the leads with stage events it has not seen. The unique index
-- on stage_visit_id makes PostgreSQL refuse a duplicate visit at write time.

{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='lead_id',
        indexes=[
            {'columns': ['stage_visit_id'], 'unique': True},
            {'columns': ['lead_id']},
            {'columns': ['broker_id', 'entered_at']},
            {'columns': ['built_at']},
            {'columns': ['exited_at']},
        ],
    )
}}

with

{% if is_incremental() %}
watermark as (

    -- the newest event this table has paired (stage_visit_id is its stage_event_id)
    {{ incremental_watermark(['stage_visit_id'], start=0) }}

),

changed as (

    -- the leads with a new event
    {{ changed_keys(ref('stg_leadflow__stage_events'), ['lead_id'], 'stage_visit_id', written_at='stage_event_id') }}

),
{% endif %}

events as (

    select * from {{ ref('stg_leadflow__stage_events') }}

    {% if is_incremental() %}
    -- every event of a changed lead: its last visit now has an exit
    where lead_id in (select lead_id from changed)
    {% endif %}

),

final as (

    select
        stage_event_id as stage_visit_id,
        broker_id,
        lead_id,
        to_stage as stage,
        from_stage as previous_stage,
        occurred_at as entered_at,
        lead(occurred_at) over visits as exited_at,
        lead(to_stage) over visits as next_stage,
        row_number() over visits as visit_number,
        -- when the row was written: int_funnel_visits redoes the leads rewritten since its own last build
        now() as built_at

    from events
    window visits as (partition by lead_id order by occurred_at, sequence_in_instant, stage_event_id)

)

select * from final
