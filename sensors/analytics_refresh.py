"""Rebuild the funnel analytics after new data lands, so brokers' reports follow the pipeline.

The cursor is a watermark of what the dbt models read (``leadflow.analytics.data_watermark``).
"""

from dagster import DefaultSensorStatus, SensorEvaluationContext, SensorResult, SkipReason, sensor

from leadflow.analytics import data_watermark
from pipelines.jobs import analytics_job
from pipelines.resources import PostgresResource
from sensors.runs import run_for_new_watermark


@sensor(default_status=DefaultSensorStatus.RUNNING, job=analytics_job, minimum_interval_seconds=120,
        description="Requests a dbt build of the funnel analytics when messages, leads, stages or sends changed.")
def analytics_refresh_sensor(context: SensorEvaluationContext, postgres: PostgresResource) -> SensorResult | SkipReason:
    return run_for_new_watermark(context, analytics_job.name, data_watermark(postgres.url), "analytics",
                                 unchanged="nothing new since the last analytics build",
                                 running="an analytics build is running; the next tick looks again")
