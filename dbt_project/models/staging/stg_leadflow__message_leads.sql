with

source as (

    select * from {{ source('leadflow', 'message_leads') }}

),

renamed as (

    select
        message_id,
        broker_id,
        lead_id

    from source

)

select * from renamed
