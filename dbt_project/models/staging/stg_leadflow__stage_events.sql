with

source as (

    select * from {{ source('leadflow', 'stage_events') }}

),

renamed as (

    select
        stage_event_id,
        broker_id,
        lead_id,
        from_stage,
        to_stage,
        occurred_at,
        sequence as sequence_in_instant,
        reason,
        automatic as is_automatic

    from source

)

select * from renamed
