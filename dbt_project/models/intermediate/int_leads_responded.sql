-- How fast each lead was answered, per channel: the first inbound message, the first agent message
-- after it, and the median wait of the lead's messages for the agent's next one.
-- A table: a window over every message, read by a mart and four tests.

{{ config(materialized='table') }}

with

messages as (

    select * from {{ ref('stg_leadflow__messages') }}
    where sent_at <= {{ as_of() }}

),

message_leads as (

    select * from {{ ref('stg_leadflow__message_leads') }}

),

turns as (

    select
        message_leads.lead_id,
        messages.broker_id,
        messages.channel,
        messages.direction,
        messages.sent_at,
        -- the agent's next message in the same channel, for each of the lead's messages
        min(case when messages.direction = 'outbound' then messages.sent_at end) over (
            partition by message_leads.lead_id, messages.channel order by messages.sent_at, messages.message_id
            rows between 1 following and unbounded following) as answered_at

    from message_leads
    inner join messages using (message_id)

),

final as (

    select
        lead_id,
        broker_id,
        channel,
        min(sent_at) filter (where direction = 'inbound') as first_inbound_at,
        extract(epoch from min(answered_at) filter (where direction = 'inbound')
                           - min(sent_at) filter (where direction = 'inbound')) / 60.0 as first_reply_minutes,
        percentile_cont(0.5) within group (order by extract(epoch from answered_at - sent_at) / 60.0)
            filter (where direction = 'inbound' and answered_at is not null) as median_reply_minutes

    from turns
    group by 1, 2, 3
    having count(*) filter (where direction = 'inbound') > 0

)

select * from final
