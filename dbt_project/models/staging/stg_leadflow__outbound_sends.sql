with

source as (

    select * from {{ source('leadflow', 'outbound_sends') }}

),

renamed as (

    select
        send_id,
        broker_id,
        campaign_id,
        lead_id,
        step as step_index,
        action,
        channel,
        status as send_status,
        sent_at,
        delivered_at,
        read_at,
        replied_at,
        updated_at

    from source

)

select * from renamed
