"""Jobs: what a sensor, a schedule or an analyst launches."""

from __future__ import annotations

from dagster import AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job

from assets.analytics import dbt_docs, leadflow_dbt_models

landing_job = define_asset_job(
    "landing_job",
    selection=AssetSelection.assets("landed_messages", "leads", "lead_qualifications", "lead_scores",
                                    "lead_stages", "lead_assignments"),
    description="Land what waits in Kafka into PostgreSQL, then resolve, qualify and score the leads it touched "
                "(launched by kafka_landing_sensor; every step is incremental).",
)

analytics_job = define_asset_job(
    "analytics_job",
    selection=AssetSelection.assets(leadflow_dbt_models, dbt_docs),
    description="dbt build of the funnel analytics as of the run's start (incremental where the data grows), "
                "dbt tests as asset checks, then dbt docs (launched by analytics_refresh_sensor when data changed).",
)

campaign_job = define_asset_job(
    "campaign_job",
    selection=AssetSelection.assets("lead_consent", "segment_memberships", "campaign_sends", "appointment_answers",
                                    "outbound_dispatch", "campaign_results"),
    description="The campaign batch: consent, segments, targeting of every active campaign, leads' answers about "
                "the visits offered, and dispatch of the sends it decided (launched hourly by "
                "campaign_batch_schedule; quiet hours follow each broker's "
                "timezone).",
)

# Hourly: each run acts only where a broker's local time allows (quiet hours are per broker timezone),
# so one schedule serves brokers in every timezone; a step due at night waits for the broker's morning.
campaign_batch_schedule = ScheduleDefinition(name="campaign_batch_schedule", job=campaign_job,
                                             cron_schedule="5 * * * *", execution_timezone="UTC",
                                             default_status=DefaultScheduleStatus.RUNNING)
