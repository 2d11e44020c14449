with

source as (

    select * from {{ source('leadflow', 'raw_messages') }}

),

renamed as (

    select
        message_id,
        event_id,
        broker_id,
        channel,
        provider_message_id,
        conversation_id,
        contact_channel_id,
        contact_phone as contact_phone_e164,
        contact_name,
        lower(contact_email) as contact_email,
        direction,
        message_type,
        body as message_text,
        sent_at,
        received_at,
        landed_at,
        kafka_partition,
        kafka_offset

    from source

)

select * from renamed
