-- How fast each lead was answered, per channel: the first inbound message, the first agent message
-- after it, and the median wait of the lead's messages for the agent's next one.
-- Incremental by lead: a run redoes the leads whose messages changed (int_leads_sourced rewrote
-- them: landing and merges bump leads.changed_at) or that have messages a later as_of now shows.
-- A lead left without messages (merged away) gets a placeholder row (channel null) that
-- delete+insert clears and the post-hook deletes.

-- depends_on: {{ ref('int_leads_sourced') }}

{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='lead_id',
        post_hook=["{{ delete_placeholders('channel') }}"],
    )
}}

with

{% if is_incremental() %}
watermark as (

    {{ incremental_watermark(['built_as_of', 'leads_watermark']) }}

),

changed as (

    {{ changed_keys(ref('int_leads_sourced'), ['lead_id'], 'leads_watermark') }}
    union
    select message_leads.lead_id
    from {{ ref('stg_leadflow__messages') }} as messages
    inner join {{ ref('stg_leadflow__message_leads') }} as message_leads using (message_id)
    cross join watermark
    where {{ as_of() }} < watermark.built_as_of
       or messages.sent_at > watermark.built_as_of and messages.sent_at <= {{ as_of() }}

),
{% endif %}

messages as (

    select * from {{ ref('stg_leadflow__messages') }}
    where sent_at <= {{ as_of() }}

),

message_leads as (

    select * from {{ ref('stg_leadflow__message_leads') }}
    {% if is_incremental() %}
    where lead_id in (select lead_id from changed)
    {% endif %}

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

select
    final.*,
    {{ as_of() }} as built_as_of,
    (select max(built_at) from {{ ref('int_leads_sourced') }}) as leads_watermark
from final

{% if is_incremental() %}
union all

select changed.lead_id, null, null, null, null, null, {{ as_of() }}, null
from changed
where not exists (select 1 from final where final.lead_id = changed.lead_id)
{% endif %}
