-- Each lead's first contact: when, through which channel and how it reached us (the funnel's
-- channel and source). Incremental on leads.changed_at, which landing and merges bump: a run
-- redoes only the leads touched since the last one (with a lookback for transactions that
-- committed late). Merged leads stay, flagged, so a merge replaces the row it made stale.

{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='lead_id',
        indexes=[{'columns': ['lead_id'], 'unique': True}, {'columns': ['built_at']}],
    )
}}

with

{% if is_incremental() %}
watermark as (

    {{ incremental_watermark(['changed_at']) }}

),
{% endif %}

leads as (

    select * from {{ ref('stg_leadflow__leads') }}

    {% if is_incremental() %}
    -- the leads changed since the watermark (a changed_at index range): these are the rows redone,
    -- so this model needs no changed CTE
    where changed_at > (select watermark.changed_at from watermark)
                       - interval '{{ var("incremental_lookback_minutes") }} minutes'
    {% endif %}

),

messages as (

    select * from {{ ref('stg_leadflow__messages') }}

),

message_leads as (

    select * from {{ ref('stg_leadflow__message_leads') }}

),

first_touches as (

    select distinct on (message_leads.lead_id)
        message_leads.lead_id,
        messages.channel,
        messages.contact_source,
        messages.sent_at

    from leads
    inner join message_leads using (lead_id)
    inner join messages using (message_id)
    order by message_leads.lead_id, messages.sent_at, messages.message_id

),

final as (

    select
        leads.lead_id,
        leads.broker_id,
        leads.is_merged,
        leads.changed_at,
        first_touches.channel as first_channel,
        first_touches.contact_source as source,
        first_touches.sent_at as first_contact_at,
        date_trunc('week', first_touches.sent_at)::date as first_contact_week,
        -- the week this row replaces, if it moved (a merge can bring an earlier first contact):
        -- fct_cohorts_weekly recounts both weeks
        {% if is_incremental() %}replaced.first_contact_week{% else %}null::date{% endif %}
            as previous_first_contact_week,
        now() as built_at

    from leads
    -- a merged lead has no messages left: it stays, flagged, so its old row is replaced
    left join first_touches using (lead_id)
    {% if is_incremental() %}
    left join {{ this }} as replaced using (lead_id)
    {% endif %}

)

select * from final
