"""Launch a campaign batch as soon as leads move a stage or get a new score, for campaigns those events
trigger; the hourly schedule covers the rest (inactivity, segments, due steps).

The cursor is the watermark of those events (last stage event id, last scoring time); the run key
is the watermark itself, so one change launches one batch however many ticks see it.
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

from leadflow.campaigns.store import trigger_watermark
from pipelines.jobs import campaign_job
from pipelines.resources import PostgresResource
from sensors.runs import IN_FLIGHT


@sensor(default_status=DefaultSensorStatus.RUNNING, job=campaign_job, minimum_interval_seconds=60,
        description="Requests a campaign batch when stage moves or scores arrive for event-triggered campaigns.")
def campaign_trigger_sensor(context: SensorEvaluationContext, postgres: PostgresResource) -> SensorResult | SkipReason:
    watermark = trigger_watermark(postgres.url)
    if watermark is None:
        return SkipReason("no active campaign is triggered by stage changes or scores")
    if watermark == context.cursor:
        return SkipReason("no stage move or score since the last batch")
    if context.instance.get_runs(filters=RunsFilter(job_name=campaign_job.name, statuses=IN_FLIGHT), limit=1):
        return SkipReason("a campaign batch is already running; the next tick looks again")
    return SensorResult(run_requests=[RunRequest(run_key=f"triggers-{watermark}")], cursor=watermark)
