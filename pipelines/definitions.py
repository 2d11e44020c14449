"""The Dagster code location: every asset, check, job, sensor and resource, assembled here."""

from __future__ import annotations

import contextlib

from dagster import Definitions, EnvVar
from dagster_dbt import DbtCliResource

from assets.analytics import dbt_docs, dbt_project, leadflow_dbt_models
from assets.campaigns import (
    campaign_results,
    campaign_sends,
    lead_consent,
    outbound_dispatch,
    segment_memberships,
)
from assets.landing import landed_messages, landed_rows_have_a_broker, no_duplicate_provider_message_ids
from assets.leads import (
    lead_qualifications,
    lead_scores,
    lead_stages,
    leads,
    leads_never_cross_brokers,
    no_stage_regression,
    scores_in_range,
)
from leadflow.config import ConfigurationError, export_environment
from pipelines.jobs import analytics_job, campaign_batch_schedule, campaign_job, landing_job
from pipelines.resources import ChannelSendersResource, KafkaResource, PostgresResource
from sensors.analytics_refresh import analytics_refresh_sensor
from sensors.campaign_triggers import campaign_trigger_sensor
from sensors.kafka_landing import kafka_landing_sensor

# Fill LEADFLOW_* from the embedded services when they are not set, so EnvVar resolves locally.
# Without either, the UI still loads and runs name the missing variable.
with contextlib.suppress(ConfigurationError):
    export_environment()

defs = Definitions(
    assets=[landed_messages, leads, lead_qualifications, lead_scores, lead_stages, lead_consent, segment_memberships,
            campaign_sends, outbound_dispatch, campaign_results, leadflow_dbt_models, dbt_docs],
    asset_checks=[landed_rows_have_a_broker, no_duplicate_provider_message_ids, leads_never_cross_brokers,
                  scores_in_range, no_stage_regression],
    jobs=[landing_job, analytics_job, campaign_job],
    schedules=[campaign_batch_schedule],
    sensors=[kafka_landing_sensor, campaign_trigger_sensor, analytics_refresh_sensor],
    resources={
        "postgres": PostgresResource(url=EnvVar("LEADFLOW_DATABASE_URL")),
        "kafka": KafkaResource(
            bootstrap_servers=EnvVar("LEADFLOW_KAFKA_BOOTSTRAP_SERVERS"),
            topic_prefix=EnvVar("LEADFLOW_KAFKA_TOPIC_PREFIX"),
        ),
        "channels": ChannelSendersResource(
            telegram_api_url=EnvVar("LEADFLOW_TELEGRAM_API_URL"), whatsapp_api_url=EnvVar("LEADFLOW_WHATSAPP_API_URL"),
            vapi_api_url=EnvVar("LEADFLOW_VAPI_API_URL"), bland_api_url=EnvVar("LEADFLOW_BLAND_API_URL"),
            google_calendar_api_url=EnvVar("LEADFLOW_GOOGLE_CALENDAR_API_URL"),
        ),
        "dbt": DbtCliResource(project_dir=dbt_project, profiles_dir=str(dbt_project.profiles_dir)),
    },
)
