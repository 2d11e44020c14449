"""Launch a campaign batch as soon as leads move a stage or get a new score, for campaigns those events
trigger, or a person applies a manual campaign to leads; the hourly schedule covers the rest (inactivity,
segments, due steps).

The cursor is the watermark of those events (last stage event id, last scoring time, last request).
"""

from dagster import DefaultSensorStatus, SensorEvaluationContext, SensorResult, SkipReason, sensor

from leadflow.campaigns.store import trigger_watermark
from pipelines.jobs import campaign_job
from pipelines.resources import PostgresResource
from sensors.runs import run_for_new_watermark


@sensor(default_status=DefaultSensorStatus.RUNNING, job=campaign_job, minimum_interval_seconds=60,
        description="Requests a campaign batch when stage moves or scores arrive for event-triggered campaigns.")
def campaign_trigger_sensor(context: SensorEvaluationContext, postgres: PostgresResource) -> SensorResult | SkipReason:
    watermark = trigger_watermark(postgres.url)
    if watermark is None:
        return SkipReason("no active campaign is triggered by stage changes, scores or leads applied by hand")
    return run_for_new_watermark(context, campaign_job.name, watermark, "triggers",
                                 unchanged="no stage move, score or lead applied by hand since the last batch",
                                 running="a campaign batch is already running; the next tick looks again")
