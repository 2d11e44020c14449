-- Each lead's first contact: when, and through which channel (the funnel's "source").

with

messages as (

    select * from {{ ref('stg_leadflow__messages') }}

),

message_leads as (

    select * from {{ ref('stg_leadflow__message_leads') }}

),

leads as (

    select * from {{ ref('stg_leadflow__leads') }}
    where not is_merged

),

touches as (

    select
        message_leads.lead_id,
        messages.channel,
        messages.sent_at,
        row_number() over (partition by message_leads.lead_id order by messages.sent_at, messages.message_id)
            as touch_number

    from message_leads
    inner join messages using (message_id)
    where messages.sent_at <= '{{ var("as_of") }}'::timestamptz

),

final as (

    select
        leads.lead_id,
        leads.broker_id,
        touches.channel as first_channel,
        touches.sent_at as first_contact_at,
        date_trunc('week', touches.sent_at)::date as first_contact_week

    from leads
    inner join touches on touches.lead_id = leads.lead_id and touches.touch_number = 1

)

select * from final
