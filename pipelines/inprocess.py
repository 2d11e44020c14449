"""Drive the sensor and its runs in this process: what the Dagster daemon does, without the daemon.

`leadflow tick` and `make demo` use it so a fresh machine lands data in seconds; `dagster dev`
or `dagster-daemon run` evaluate the same sensor on their own schedule in production.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dagster import DagsterInstance, Definitions, RunRequest, SensorResult, build_sensor_context

from sensors.kafka_landing import kafka_landing_sensor

# In-process runs print Dagster's step-by-step DEBUG log by default; warnings are what an operator needs here.
QUIET: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class TickOutcome:
    run_keys: list[str]
    failed: list[str]
    skip_reason: str | None
    landed: dict[str, int] = field(default_factory=dict)  # summed landing metadata of the runs


def tick(defs: Definitions, instance: DagsterInstance) -> TickOutcome:
    """Evaluate the landing sensor once and execute the runs it requests."""
    resources = {key: defs.resources[key] for key in ("postgres", "kafka")} if defs.resources else {}
    context = build_sensor_context(instance=instance, resources=resources, definitions=defs,
                                   sensor_name=kafka_landing_sensor.name)
    result = kafka_landing_sensor(context)
    if not isinstance(result, SensorResult):
        return TickOutcome([], [], getattr(result, "skip_message", None) or "skipped")
    job = defs.resolve_job_def("landing_job")
    outcome = TickOutcome([], [], None)
    for request in result.run_requests or []:
        assert isinstance(request, RunRequest)
        key = request.run_key or ""
        run = job.execute_in_process(instance=instance, tags={**request.tags, "dagster/run_key": key},
                                     run_config=QUIET, raise_on_error=False)
        (outcome.run_keys if run.success else outcome.failed).append(key)
        for materialization in run.asset_materializations_for_node("landed_messages") if run.success else []:
            for name in ("messages_landed", "statuses_landed", "dead_letters_landed", "duplicates_absorbed"):
                value = materialization.metadata[name].value
                outcome.landed[name] = outcome.landed.get(name, 0) + int(value if isinstance(value, int) else 0)
    return outcome


def drain(defs: Definitions, instance: DagsterInstance, max_ticks: int = 20) -> list[TickOutcome]:
    """Tick until the sensor finds nothing to land (or a run fails twice in a row)."""
    outcomes: list[TickOutcome] = []
    failures = 0
    for _ in range(max_ticks):
        outcome = tick(defs, instance)
        outcomes.append(outcome)
        if outcome.skip_reason is not None:
            break
        failures = failures + 1 if outcome.failed else 0
        if failures >= 2:
            break
    return outcomes
