-- The funnel per broker, ISO week (starting Monday), channel, source, first campaign and stage.

{{ config(indexes=[{'columns': ['broker_id', 'channel', 'source', 'campaign', 'period_start']}]) }}

{{ funnel_by_period('week') }}
