with

source as (

    select * from {{ source('leadflow', 'lead_scores') }}

),

renamed as (

    select
        lead_id,
        broker_id,
        score,
        temperature,
        breakdown,
        financing_ready,
        reasons as not_ready_reasons,
        scored_at

    from source

)

select * from renamed
