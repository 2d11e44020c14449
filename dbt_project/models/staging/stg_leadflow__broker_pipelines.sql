-- The stages of brokers that replaced the default pipeline (broker_settings.pipeline), in order.

with

source as (

    select * from {{ source('leadflow', 'broker_settings') }}
    where jsonb_array_length(coalesce(pipeline -> 'stages', '[]'::jsonb)) > 0

),

renamed as (

    select
        source.broker_id,
        stage.value ->> 'code' as stage,
        coalesce(stage.value ->> 'name', stage.value ->> 'code') as stage_name,
        stage.position::integer as stage_position,
        (stage.value ->> 'stall_days')::integer as stall_days

    from source
    cross join lateral jsonb_array_elements(source.pipeline -> 'stages') with ordinality as stage(value, position)

)

select * from renamed
