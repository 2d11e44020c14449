with

source as (

    select * from {{ source('leadflow', 'campaigns') }}

),

renamed as (

    select
        campaign_id,
        broker_id,
        name as campaign_name,
        status as campaign_status,
        activated_at

    from source

)

select * from renamed
