with

source as (

    select * from {{ source('leadflow', 'appointments') }}

),

renamed as (

    select
        appointment_id,
        broker_id,
        lead_id,
        agent_id,
        kind as appointment_kind,
        starts_at,
        ends_at,
        timezone as booked_timezone,
        status as appointment_status,
        source as booked_via,
        channel as lead_channel,
        rescheduled_from as rescheduled_from_appointment_id,
        created_at as booked_at,
        updated_at

    from source

)

select * from renamed
