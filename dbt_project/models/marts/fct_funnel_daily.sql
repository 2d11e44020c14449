-- The funnel per broker, day, channel, source, first campaign and stage (see funnel_by_period).

{{ config(indexes=[{'columns': ['broker_id', 'channel', 'source', 'campaign', 'period_start']}]) }}

{{ funnel_by_period('day') }}
