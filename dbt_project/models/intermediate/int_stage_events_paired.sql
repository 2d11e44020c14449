-- The stage visits as they stood at the as_of instant: events after it do not exist yet, a visit
-- left after it is still current, and days_in_stage of a current visit runs to as_of.

with

visits as (

    select * from {{ ref('int_stage_visits') }}
    where entered_at <= {{ as_of() }}

),

final as (

    select
        stage_visit_id,
        broker_id,
        lead_id,
        stage,
        previous_stage,
        entered_at,
        case when exited_at <= {{ as_of() }} then exited_at end as exited_at,
        case when exited_at <= {{ as_of() }} then next_stage end as next_stage,
        visit_number,
        exited_at is null or exited_at > {{ as_of() }} as is_current,
        (extract(epoch from least(coalesce(exited_at, 'infinity'), {{ as_of() }}) - entered_at)
            / 86400.0)::float8 as days_in_stage

    from visits

)

select * from final
