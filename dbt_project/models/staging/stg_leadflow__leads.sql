with

source as (

    select * from {{ source('leadflow', 'leads') }}

),

renamed as (

    select
        lead_id,
        broker_id,
        display_name,
        phone_e164,
        lower(email) as email,
        channels,
        message_count,
        first_message_at,
        last_message_at,
        merged_into as merged_into_lead_id,
        merged_into is not null as is_merged,
        assigned_user_id,
        changed_at

    from source

)

select * from renamed
