-- Every broker's pipeline: its own stages when it replaced the default (then perdido last), else the
-- default pipeline (seed pipeline_stages). The funnel orders and names stages, decides when a lead
-- is stalled, and which stage is the won deal, by this.

with

brokers as (

    select * from {{ ref('stg_leadflow__brokers') }}

),

own as (

    select * from {{ ref('stg_leadflow__broker_pipelines') }}

),

defaults as (

    select * from {{ ref('pipeline_stages') }}

),

own_with_lost as (

    select broker_id, stage, stage_name, stage_position, stall_days from own
    union all
    select broker_id, 'perdido', 'Perdido', max(stage_position) + 1, null::integer from own group by broker_id

),

all_stages as (

    select * from own_with_lost
    union all
    select brokers.broker_id, defaults.stage, defaults.stage_name, defaults.stage_position, defaults.stall_days
    from brokers
    cross join defaults
    where brokers.broker_id not in (select broker_id from own)

),

final as (

    select
        *,
        -- the pipeline's last stage before perdido is the deal (ganado in the default one)
        stage_position = max(stage_position) filter (where stage <> 'perdido') over (partition by broker_id)
            as is_won

    from all_stages

)

select * from final
