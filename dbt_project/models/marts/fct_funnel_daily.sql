-- The funnel per broker, day, channel, source, first campaign and stage (see funnel_by_period).

{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['broker_id', 'period_start'],
        indexes=[{'columns': ['broker_id', 'channel', 'source', 'campaign', 'period_start']}],
        post_hook=["{{ delete_placeholders() }}"],
    )
}}

{{ funnel_by_period('day') }}
