"""Whether the flow is healthy, for a broker's admins and the operator, without the Dagster UI.

Three sources, each allowed to be away without failing the answer:

- PostgreSQL, which is what to trust: the landing's offsets and when it last moved them (``kafka_offsets``), the
  newest landed message, dead letters of the last 24 h, the agent's replies waiting or of unknown fate;
- Kafka's end offsets, for the lag per partition. The embedded broker (Tansu) reports wrong high watermarks
  (``leadflow.landing`` never trusts them), so the lag is shown for what it is, next to the commit times;
- Dagster's instance (``$DAGSTER_HOME/dagster.yaml``): each sensor's and schedule's last tick and each job's last
  run. Without a readable instance these are "unknown".

Kafka and Dagster are asked from a thread of their own with a deadline, and their answers are cached for a few
seconds: a page reloaded by several admins costs one look, and a Kafka or Dagster that hangs costs a page at
most the deadline. Partition offsets belong to no broker, so their numbers are a SUPERADMIN's only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import psycopg2.extensions
from confluent_kafka import TopicPartition

from leadflow.config import Topics
from leadflow.kafka import cluster_id, make_consumer, partitions_of
from reports_api.admin import people
from reports_api.admin.dead_letters import Owner
from reports_api.security import Principal

T = TypeVar("T")
CACHE_S = 5.0
DEADLINE_S = 4.0
# The agent's replies whose fate a crash left unknown: 'sending' for longer than a provider call takes
# (the same minute `leadflow agent status` uses).
UNKNOWN_AFTER = "1 minute"


class _Cached(Generic[T]):
    """The last answer of ``compute`` for ``ttl_s``; computed on a daemon thread, waited for ``deadline_s`` at most
    (a thread stuck on an unreachable service is not joined at exit, and not started twice)."""

    def __init__(self, compute: Callable[[], T], fallback: Callable[[str], T], ttl_s: float = CACHE_S,
                 deadline_s: float = DEADLINE_S) -> None:
        self._compute = compute
        self._fallback = fallback
        self.ttl_s = ttl_s
        self._deadline_s = deadline_s
        self._value: T | None = None
        self._at = float("-inf")
        self._running: Future[T] | None = None
        self._lock = threading.Lock()

    def _start(self) -> Future[T]:
        future: Future[T] = Future()

        def work() -> None:
            try:
                future.set_result(self._compute())
            except Exception as exc:  # whatever the client raises is the "unknown" answer's note
                future.set_exception(exc)

        threading.Thread(target=work, name="ops-health-probe", daemon=True).start()
        return future

    def get(self) -> T:
        with self._lock:
            if self._value is not None and time.monotonic() - self._at < self.ttl_s:
                return self._value
            if self._running is None or self._running.done():
                self._running = self._start()
            running = self._running
        try:
            value = running.result(timeout=self._deadline_s)
        except FutureTimeout:
            return self._fallback(f"did not answer within {self._deadline_s:.0f} s")
        except Exception as exc:
            value = self._fallback(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        with self._lock:
            self._value, self._at = value, time.monotonic()
        return value


@dataclass(frozen=True)
class KafkaEnds:
    cluster: str | None
    ends: dict[tuple[str, int], int] = field(default_factory=dict)
    note: str | None = None


def _kafka_ends(bootstrap: str, topics: list[str]) -> KafkaEnds:
    consumer = make_consumer(bootstrap)
    try:
        cluster = cluster_id(consumer)
        ends: dict[tuple[str, int], int] = {}
        for topic in topics:
            for partition in partitions_of(consumer, topic):
                _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=3, cached=False)
                ends[(topic, partition)] = int(high)
        return KafkaEnds(cluster, ends)
    finally:
        consumer.close()


def _iso(epoch_s: float | None) -> datetime | None:
    return None if epoch_s is None else datetime.fromtimestamp(epoch_s, UTC)


def unknown_dagster(note: str) -> dict[str, Any]:
    return {"available": False, "note": note, "sensors": [], "runs": [], "read_at": datetime.now(UTC)}


def dagster_state(home: Path | None) -> dict[str, Any]:
    """Each sensor's and schedule's last tick and each job's latest run, from the instance at ``home``."""
    if home is None or not (home / "dagster.yaml").is_file():
        # Without its configuration an instance would be a new, empty one in this directory: not the real one.
        return unknown_dagster(f"no dagster.yaml in {home} (DAGSTER_HOME)" if home else "DAGSTER_HOME is not set")
    from dagster import DagsterInstance
    from dagster._core.scheduler.instigation import InstigatorType

    with DagsterInstance.from_config(str(home)) as instance:
        sensors = []
        for state in instance.all_instigator_state():
            if state.instigator_type not in (InstigatorType.SENSOR, InstigatorType.SCHEDULE):
                continue
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
            tick = ticks[0] if ticks else None
            note = None
            if tick is not None:
                note = tick.skip_reason or (str(tick.error.message).strip().splitlines()[0]
                                            if tick.error and str(tick.error.message).strip() else None)
            sensors.append({"name": state.instigator_name, "kind": state.instigator_type.value.lower(),
                            "status": state.status.value, "last_tick_at": _iso(tick.timestamp) if tick else None,
                            "last_tick_status": tick.status.value if tick else None, "last_tick_note": note})
        runs: dict[str, dict[str, Any]] = {}
        for record in instance.get_run_records(limit=300):
            run = record.dagster_run
            if run.job_name not in runs:
                runs[run.job_name] = {"job": run.job_name, "status": run.status.value,
                                      "started_at": _iso(record.start_time), "ended_at": _iso(record.end_time),
                                      "run_id": run.run_id}
    return {"available": True, "note": None, "sensors": sorted(sensors, key=lambda s: s["name"]),
            "runs": sorted(runs.values(), key=lambda r: r["job"]), "read_at": datetime.now(UTC)}


class OpsProbes:
    """What the health answer asks outside PostgreSQL, cached: Kafka's end offsets and Dagster's instance."""

    def __init__(self, bootstrap: str, topics: Topics, dagster_home: Path | None) -> None:
        self.topics = topics.all()
        self.landing_topics = [topics.messages, topics.dead_letters]  # what leadflow.landing reads
        self.kafka = _Cached(lambda: _kafka_ends(bootstrap, self.topics), lambda note: KafkaEnds(None, note=note))
        self.dagster = _Cached(lambda: dagster_state(dagster_home), unknown_dagster)


def _age(at: datetime | None, now: datetime) -> float | None:
    return None if at is None else max((now - at).total_seconds(), 0.0)


def _figures(cur: psycopg2.extensions.cursor, broker_id: int | None, now: datetime) -> dict[str, Any]:
    """One broker's figures, or every broker's (``broker_id`` None)."""
    if broker_id is None:
        cur.execute("SELECT max(landed_at) FROM leadflow.raw_messages")  # raw_messages_landed: one index probe
    else:
        # Bounded by (broker_id, sent_at): a broker's newest landing is among its recent messages.
        cur.execute("""SELECT max(landed_at) FROM leadflow.raw_messages
                       WHERE broker_id = %s AND sent_at >= now() - interval '14 days'""", (broker_id,))
    row = cur.fetchone()
    newest = row[0] if row else None
    mine = "" if broker_id is None else "broker_id = %(broker)s AND"
    cur.execute(f"""SELECT (SELECT count(*) FROM leadflow.dead_letters
                            WHERE {mine} received_at >= now() - interval '24 hours'),
                           (SELECT count(*) FROM leadflow.agent_replies
                            WHERE {mine} status IN ('claimed', 'retry')),
                           (SELECT count(*) FROM leadflow.agent_replies
                            WHERE {mine} status = 'sending' AND decided_at < now() - interval '{UNKNOWN_AFTER}'),
                           (SELECT count(*) FROM leadflow.google_calendar_connections
                            WHERE {mine} status = 'broken'),
                           (SELECT count(*) FROM leadflow.appointments
                            WHERE {mine} calendar_state IN ('pending', 'failed') AND calendar_error IS NOT NULL)""",
                {"broker": broker_id})
    counts = cur.fetchone() or (0, 0, 0, 0, 0)
    return {"newest_landed_at": newest, "newest_landed_age_s": _age(newest, now),
            "dead_letters_24h": int(counts[0]), "agent_pending": int(counts[1]), "agent_unknown": int(counts[2]),
            "calendars_broken": int(counts[3]), "visits_not_in_calendar": int(counts[4])}


def _offsets(cur: psycopg2.extensions.cursor, topics: list[str]) -> list[tuple[str, str, str, int, int, datetime]]:
    cur.execute("""SELECT consumer, cluster_id, topic, partition, next_offset, updated_at FROM leadflow.kafka_offsets
                   WHERE topic = ANY(%s) ORDER BY consumer, topic, partition""", (topics,))
    return [(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]), r[5]) for r in cur.fetchall()]


def read(probes: OpsProbes, owner: Owner, who: Principal, broker_id: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    with owner.cursor() as cur:
        people.broker(cur, who, broker_id)  # the guard (ADMIN of the broker or SUPERADMIN) and a 404
        figures = _figures(cur, broker_id, now)
        system = _figures(cur, None, now) if who.role == "SUPERADMIN" else None
        offsets = _offsets(cur, probes.topics)
    kafka = probes.kafka.get()
    if kafka.cluster is not None:
        # Offsets of another cluster (a wiped embedded broker) say nothing about this one.
        offsets = [o for o in offsets if o[1] == kafka.cluster]
    landing = [o for o in offsets if o[0] == "landing"]
    last_commit = max((o[5] for o in landing), default=None)
    behind = None
    if kafka.cluster is not None:
        landed = {(o[2], o[3]): o[4] for o in landing}
        behind = any(end > landed.get(tp, 0) for tp, end in kafka.ends.items() if tp[0] in probes.landing_topics)
    partitions = None
    if who.role == "SUPERADMIN":
        partitions = []
        for reader, _cluster, topic, partition, next_offset, committed_at in offsets:
            end = kafka.ends.get((topic, partition))
            partitions.append({"reader": reader, "topic": topic, "partition": partition, "next_offset": next_offset,
                               "end_offset": end, "lag": None if end is None else max(end - next_offset, 0),
                               "committed_at": committed_at})
    return {"broker": figures, "system": system, "partitions": partitions, "dagster": probes.dagster.get(),
            "landing": {"last_commit_at": last_commit, "last_commit_age_s": _age(last_commit, now),
                        "behind": behind, "kafka_note": kafka.note}}
