"""The Dagster code location: every asset, check, job, sensor and resource, assembled here."""

from __future__ import annotations

from dagster import Definitions, EnvVar
from dagster_dbt import DbtCliResource

from assets.analytics import dbt_docs, dbt_project, leadflow_dbt_models
from assets.appointment_answers import appointment_answers
from assets.appointment_calendar import appointment_calendar
from assets.appointment_reminders import appointment_reminders
from assets.campaigns import (
    campaign_results,
    campaign_sends,
    lead_consent,
    outbound_dispatch,
    segment_memberships,
)
from assets.landing import landed_messages, landed_rows_have_a_broker, no_duplicate_provider_message_ids
from assets.leads import (
    assignments_stay_in_their_broker,
    lead_assignments,
    lead_qualifications,
    lead_scores,
    lead_stages,
    leads,
    leads_never_cross_brokers,
    no_stage_regression,
    scores_in_range,
)
from leadflow.config import Settings
from pipelines.jobs import (
    analytics_job,
    appointment_calendar_job,
    appointment_calendar_schedule,
    appointment_reminders_job,
    appointment_reminders_schedule,
    campaign_batch_schedule,
    campaign_job,
    landing_job,
)
from pipelines.resources import ChannelSendersResource, GoogleCalendarResource, KafkaResource, PostgresResource
from sensors.analytics_refresh import analytics_refresh_sensor
from sensors.campaign_triggers import campaign_trigger_sensor
from sensors.kafka_landing import kafka_landing_sensor

# PostgreSQL and Kafka are read through EnvVar when a run starts, so connection strings (passwords) stay
# out of the UI. `leadflow dagster …` (and `make up`) exports the embedded services' addresses first
# (leadflow.config.export_environment); without them a run names the variable that is missing.
_settings = Settings.from_environment()
defs = Definitions(
    assets=[landed_messages, leads, lead_qualifications, lead_scores, lead_stages, lead_assignments,
            lead_consent, segment_memberships,
            campaign_sends, appointment_answers, outbound_dispatch, campaign_results, appointment_reminders,
            leadflow_dbt_models, dbt_docs, appointment_calendar],
    asset_checks=[landed_rows_have_a_broker, no_duplicate_provider_message_ids, leads_never_cross_brokers,
                  scores_in_range, no_stage_regression, assignments_stay_in_their_broker],
    jobs=[landing_job, analytics_job, campaign_job, appointment_reminders_job, appointment_calendar_job],
    schedules=[campaign_batch_schedule, appointment_reminders_schedule, appointment_calendar_schedule],
    sensors=[kafka_landing_sensor, campaign_trigger_sensor, analytics_refresh_sensor],
    resources={
        "postgres": PostgresResource(url=EnvVar("LEADFLOW_DATABASE_URL")),
        "kafka": KafkaResource(
            bootstrap_servers=EnvVar("LEADFLOW_KAFKA_BOOTSTRAP_SERVERS"),
            topic_prefix=EnvVar("LEADFLOW_KAFKA_TOPIC_PREFIX"),
        ),
        # Provider URLs are no secrets: taken from the settings as they are when the code location loads.
        "channels": ChannelSendersResource(
            telegram_api_url=_settings.telegram_api_url, whatsapp_api_url=_settings.whatsapp_api_url,
            vapi_api_url=_settings.vapi_api_url, bland_api_url=_settings.bland_api_url,
            database_url=EnvVar("LEADFLOW_DATABASE_URL"),
        ),
        "google_calendar": GoogleCalendarResource(api_url=_settings.google_calendar_api_url,
                                                  auth_url=_settings.google_oauth_auth_url,
                                                  token_url=_settings.google_oauth_token_url),
        "dbt": DbtCliResource(project_dir=dbt_project, profiles_dir=str(dbt_project.profiles_dir)),
    },
)
