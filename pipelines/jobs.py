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
                                    "outbound_dispatch", "campaign_results", "appointment_reminders"),
    description="The campaign batch: consent, segments, targeting of every active campaign, leads' answers about "
                "the visits offered, dispatch of the sends it decided, and visit reminders (launched hourly by "
                "campaign_batch_schedule; quiet hours follow each broker's timezone).",
)

# Hourly: each run acts only where a broker's local time allows (quiet hours are per broker timezone),
# so one schedule serves brokers in every timezone; a step due at night waits for the broker's morning.
campaign_batch_schedule = ScheduleDefinition(name="campaign_batch_schedule", job=campaign_job,
                                             cron_schedule="5 * * * *", execution_timezone="UTC",
                                             default_status=DefaultScheduleStatus.RUNNING)

appointment_calendar_job = define_asset_job(
    "appointment_calendar_job",
    selection=AssetSelection.assets("appointment_calendar"),
    description="The calendar sync: pending appointments written to Google Calendar, then every connected person's "
                "busy times read back (launched every 10 minutes by appointment_calendar_schedule).",
)

# Every 10 minutes: a visit booked in the chat reaches the agent's calendar soon after, and a meeting the agent
# adds in Google stops being offered to leads within minutes.
appointment_calendar_schedule = ScheduleDefinition(name="appointment_calendar_schedule", job=appointment_calendar_job,
                                                   cron_schedule="*/10 * * * *", execution_timezone="UTC",
                                                   default_status=DefaultScheduleStatus.RUNNING)

appointment_reminders_job = define_asset_job(
    "appointment_reminders_job",
    selection=AssetSelection.assets("appointment_reminders"),
    description="Visit reminders alone, between campaign batches (launched every 15 minutes by "
                "appointment_reminders_schedule): a 1-hour reminder goes out 45 to 60 minutes before the visit.",
)

# The hourly batch alone would send a "1 h" reminder anywhere from 60 to 5 minutes ahead; every 15 minutes
# keeps it near its hour. Runs of both jobs at once are harmless: each reminder is claimed before it is sent.
appointment_reminders_schedule = ScheduleDefinition(name="appointment_reminders_schedule",
                                                    job=appointment_reminders_job, cron_schedule="*/15 * * * *",
                                                    execution_timezone="UTC",
                                                    default_status=DefaultScheduleStatus.RUNNING)
