"""The brokers' reports API and funnel dashboard (``leadflow reports-api``)."""
