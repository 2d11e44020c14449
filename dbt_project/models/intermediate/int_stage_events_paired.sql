-- One row per stage visit: a lead entering a stage, until it entered the next one (or until the
-- as-of instant, for the stage it is in). Events after the as-of instant do not exist yet.

with

events as (

    select * from {{ ref('stg_leadflow__stage_events') }}
    where occurred_at <= '{{ var("as_of") }}'::timestamptz

),

ordered as (

    select
        stage_event_id as stage_visit_id,
        broker_id,
        lead_id,
        to_stage as stage,
        from_stage as previous_stage,
        occurred_at as entered_at,
        lead(occurred_at) over visits as exited_at,
        lead(to_stage) over visits as next_stage,
        row_number() over visits as visit_number

    from events
    window visits as (partition by lead_id order by occurred_at, sequence_in_instant, stage_event_id)

),

final as (

    select
        ordered.*,
        ordered.exited_at is null as is_current,
        extract(epoch from coalesce(ordered.exited_at, '{{ var("as_of") }}'::timestamptz) - ordered.entered_at)
            / 86400.0 as days_in_stage

    from ordered

)

select * from final
