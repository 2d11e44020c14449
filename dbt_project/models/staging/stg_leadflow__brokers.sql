with

source as (

    select * from {{ source('leadflow', 'brokers') }}

),

renamed as (

    select
        broker_id,
        slug as broker_slug,
        name as broker_name,
        country as country_code,
        timezone,
        created_at

    from source

)

select * from renamed
