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
        -- How the contact reached us, read from the provider's own payload: a Click-to-WhatsApp ad
        -- carries a referral, a Telegram deep link starts with /start, calls and forms are their own.
        -- An imported or hand-typed lead says it itself (the CSV's source column, lower case), else
        -- 'import' / 'manual'.
        case
            when channel in ('import', 'manual')
                then coalesce(nullif(lower(btrim(payload ->> 'source')), ''), channel)
            when channel = 'whatsapp' and payload ? 'referral' then 'ad'
            when channel = 'telegram' and body like '/start %' then 'link'
            when channel = 'form' then 'form'
            when channel in ('vapi', 'bland') then 'call'
            else 'direct'
        end as contact_source,
        sent_at,
        received_at,
        landed_at,
        kafka_partition,
        kafka_offset

    from source

)

select * from renamed
