with

source as (

    select * from {{ source('leadflow', 'appointment_events') }}

),

renamed as (

    select
        event_id as appointment_event_id,
        appointment_id,
        broker_id,
        lead_id,
        from_status,
        to_status,
        actor as changed_by,
        user_id as changed_by_user_id,
        at as changed_at

    from source

)

select * from renamed
