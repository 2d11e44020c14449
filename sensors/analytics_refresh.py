"""Rebuild the funnel analytics after new data lands, so brokers' reports follow the pipeline.

The cursor is a watermark of what the dbt models read (``leadflow.analytics.data_watermark``);
one change launches one build however many ticks see it, and a build already running absorbs
the changes that arrive meanwhile (the next tick after it sees them).
"""

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from leadflow.analytics import data_watermark
from pipelines.jobs import analytics_job
from pipelines.resources import PostgresResource
from sensors.runs import IN_FLIGHT


@sensor(default_status=DefaultSensorStatus.RUNNING, job=analytics_job, minimum_interval_seconds=120,
        description="Requests a dbt build of the funnel analytics when messages, leads, stages or sends changed.")
def analytics_refresh_sensor(context: SensorEvaluationContext, postgres: PostgresResource) -> SensorResult | SkipReason:
    watermark = data_watermark(postgres.url)
    if watermark == context.cursor:
        return SkipReason("nothing new since the last analytics build")
    if context.instance.get_runs(filters=RunsFilter(job_name=analytics_job.name, statuses=IN_FLIGHT), limit=1):
        return SkipReason("an analytics build is running; the next tick looks again")
    return SensorResult(run_requests=[RunRequest(run_key=f"analytics-{watermark}")], cursor=watermark)
