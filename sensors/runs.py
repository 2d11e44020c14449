"""What the watermark sensors share: which runs count as "on their way", and one run per new watermark."""

from dagster import DagsterRunStatus, RunRequest, RunsFilter, SensorEvaluationContext, SensorResult, SkipReason

IN_FLIGHT = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
             DagsterRunStatus.STARTED]


def run_for_new_watermark(context: SensorEvaluationContext, job_name: str, watermark: str, key_prefix: str, *,
                          unchanged: str, running: str) -> SensorResult | SkipReason:
    """A run keyed by the watermark when it moved past the cursor and no run of the job is on its way.

    The run key is the watermark, so one change launches one run however many ticks see it; changes
    that arrive while a run is going are seen by the first tick after it.
    """
    if watermark == context.cursor:
        return SkipReason(unchanged)
    if context.instance.get_runs(filters=RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=1):
        return SkipReason(running)
    return SensorResult(run_requests=[RunRequest(run_key=f"{key_prefix}-{watermark}")], cursor=watermark)
