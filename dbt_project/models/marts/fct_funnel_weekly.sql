-- The funnel per broker, ISO week (starting Monday), channel, source, first campaign and stage.

{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['broker_id', 'period_start'],
        indexes=[{'columns': ['broker_id', 'channel', 'source', 'campaign', 'period_start']}],
        post_hook=["{{ delete_placeholders() }}"],
    )
}}

{{ funnel_by_period('week') }}
