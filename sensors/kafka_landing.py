"""Launch a landing run when records wait in Kafka beyond the offsets stored in PostgreSQL.

Run keys are ``<offsets fingerprint>-<attempt>``. While a landing for the current offsets is
queued or running, the tick asks for nothing. When that landing failed, the offsets did not
move, so the same fingerprint comes back: the attempt number goes up, giving a new run key
(Dagster never launches a run key it has seen, which would otherwise stall landing forever).
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

from leadflow.landing import probe
from pipelines.jobs import landing_job
from pipelines.resources import KafkaResource, PostgresResource
from sensors.runs import IN_FLIGHT

FINGERPRINT_TAG = "leadflow/offsets"

@sensor(default_status=DefaultSensorStatus.RUNNING, job=landing_job, minimum_interval_seconds=15,
        description="Requests a landing run when Kafka holds records past the offsets stored in PostgreSQL.")
def kafka_landing_sensor(context: SensorEvaluationContext, postgres: PostgresResource,
                         kafka: KafkaResource) -> SensorResult | SkipReason:
    found = probe(postgres.url, kafka.bootstrap_servers, kafka.topics)
    if found.pending == 0:
        return SkipReason("no records past the stored offsets")
    runs = context.instance.get_runs(
        filters=RunsFilter(job_name=landing_job.name, tags={FINGERPRINT_TAG: found.fingerprint}))
    if any(run.status in IN_FLIGHT for run in runs):
        return SkipReason(f"a landing from offsets {found.fingerprint} is already in flight")
    attempt = len(runs)
    return SensorResult(
        run_requests=[RunRequest(run_key=f"{found.fingerprint}-{attempt}",
                                 tags={FINGERPRINT_TAG: found.fingerprint, "leadflow/attempt": str(attempt)})],
        cursor=found.fingerprint,
    )
