"""The embedded Kafka's two storage engines, side by side: memory (lost at stop) and s3 (SeaweedFS, durable).

Each engine runs in a process of its own with its own LEADFLOW_HOME, started and stopped by the same
``leadflow services`` code a user runs, and measures:
- batched produce: records/s for ``LEADFLOW_BENCH_STORAGE_RECORDS`` (20,000) webhook-sized records;
- a lone acknowledged record (the ingest API's case: one webhook, answered after the ack): p50/p95 ms;
- delivery: from a record's ack to a consumer holding it (the lead agent's case), p50/p95 ms.
The memory engine is the baseline; the ratios say what durability costs on this machine.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(records: int) -> dict[str, Any]:
    """Runs in the child: the services of this process's LEADFLOW_HOME, measured, then stopped."""
    from leadflow.config import export_environment
    from leadflow.kafka import assign_from, ensure_topics, make_consumer, make_producer, produce_all
    from leadflow.services import manager

    manager.up(log=lambda _line: None)
    try:
        bootstrap = export_environment().kafka_bootstrap_servers
        topic = f"storage{uuid.uuid4().hex[:6]}"
        ensure_topics(bootstrap, [topic], 6)
        value = json.dumps({"text": "hola, busco depto en ñuñoa para comprar, 3 dormitorios " * 6}).encode()
        items = [(f"contact-{i % 500}".encode(), value) for i in range(records)]
        producer = make_producer(bootstrap, linger_ms=20)
        produce_all(producer, topic, items[:1000])  # connections and metadata, not measured
        started = time.perf_counter()
        produce_all(producer, topic, items)
        batched = records / (time.perf_counter() - started)
        lone = make_producer(bootstrap)
        consumer = make_consumer(bootstrap, fetch_wait_ms=20)
        acks: list[float] = []
        deliveries: list[float] = []
        probe = f"probe{uuid.uuid4().hex[:6]}"
        ensure_topics(bootstrap, [probe], 1)
        assign_from(consumer, {(probe, 0): 0})
        consumer.consume(1, 1.0)
        for i in range(200):
            started = time.perf_counter()
            lone.produce(probe, key=b"k", value=value)
            lone.flush(10)
            acked = time.perf_counter()
            acks.append((acked - started) * 1000)
            while not consumer.consume(1, 0.005):
                if time.perf_counter() - acked > 5:
                    raise RuntimeError(f"record {i} acknowledged but not delivered within 5 s")
            deliveries.append((time.perf_counter() - acked) * 1000)
        consumer.close()
        return {"batched_per_s": batched, "ack_p50_ms": statistics.median(acks), "ack_p95_ms": _percentile(acks, 0.95),
                "delivery_p50_ms": statistics.median(deliveries), "delivery_p95_ms": _percentile(deliveries, 0.95)}
    finally:
        manager.down(log=lambda _line: None)


def _run(storage: str, records: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="leadflow-bench-storage-"))
    env = {**os.environ, "LEADFLOW_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
           "LEADFLOW_KAFKA_STORAGE": storage}
    for name in ("LEADFLOW_DATABASE_URL", "LEADFLOW_KAFKA_BOOTSTRAP_SERVERS"):
        env.pop(name, None)
    out = subprocess.run([sys.executable, "-m", "bench.kafka_storage", str(records)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"storage {storage}: {out.stderr.strip()[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def bench_kafka_storage(records: int) -> None:
    memory, s3 = _run("memory", records), _run("s3", records)
    print(f"\n== embedded Kafka storage: memory (baseline, lost at stop) vs s3 (SeaweedFS, durable); "
          f"{records:,} records batched, 200 lone records")
    print(f"{'':28s} {'memory':>12s} {'s3':>12s} {'s3/memory':>10s}")
    for name, key, unit in (("batched produce", "batched_per_s", "rec/s"), ("lone ack p50", "ack_p50_ms", "ms"),
                            ("lone ack p95", "ack_p95_ms", "ms"), ("ack to consumer p50", "delivery_p50_ms", "ms"),
                            ("ack to consumer p95", "delivery_p95_ms", "ms")):
        print(f"{name + ' (' + unit + ')':28s} {memory[key]:12,.1f} {s3[key]:12,.1f} {s3[key] / memory[key]:10.2f}")


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]))))
