"""`make bench`: throughput of the backbone, each figure against a baseline measured in the same run.

- ingest: signed Telegram webhooks/s and p50/p99 latency through the real ingest API (verify,
  parse, produce, wait for the Kafka ack) vs a bare FastAPI endpoint served the same way, for a
  broker whose secret is an environment variable and one whose secret is stored sealed in PostgreSQL;
- landing: rows/s of the exactly-once landing vs the raw rate of reading the same topic and of
  COPYing the same rows into a table of raw_messages' shape;
- qualification: conversations qualified and scored per second on the rules path (bench/qualification.py);
- campaigns: one targeting batch over 1M leads and 100 campaigns, in memory and whole on PostgreSQL
  and Kafka, and sends/s through the dispatcher against the local fake WhatsApp API (bench/campaigns.py);
- scaleout: landing rows/s and dispatcher sends/s with two processes sharing the partitions, against
  one process (bench/scale_out.py; LEADFLOW_BENCH_SCALE_ROWS, LEADFLOW_BENCH_SCALE_SENDS);
- agent: the lead agent's reply latency for simulated leads writing through the webhooks, and its
  throughput against a bare consumer posting a fixed text (bench/agent.py);
- analytics: `dbt build` over 1M stage events and an incremental rerun after 1% more, against a
  CREATE TABLE AS of the events; the reports API's funnel endpoint under 16 concurrent connections
  against a bare FastAPI GET (bench/analytics.py);
- workspace: inbox pages, filter counts and a 500-message lead page over 1M leads and 20M messages,
  p95 under 16 concurrent users against a bare SELECT of the same rows through the same pool
  (bench/workspace.py; LEADFLOW_BENCH_WS_LEADS, LEADFLOW_BENCH_WS_MESSAGES shrink it;
  LEADFLOW_BENCH_WS_URL measures a database an earlier run seeded);
- appointments: free visit slots for 200 people × 30 days with 10k busy intervals, against a per-minute
  scan of the same (bench/appointments.py);
- import: a 100k-row CSV through the workspace's import, end to end, against a COPY of the same file
  (bench/workspace_import.py; LEADFLOW_BENCH_IMPORT_ROWS).

Every figure, ours and the baselines', is the median of LEADFLOW_BENCH_REPEATS runs (default 3)
on fresh data: single sub-second measurements on a two-core machine swing by ±30%.
Embedded services are started in a temporary state directory and stopped afterwards. All
traffic stays on 127.0.0.1. Sizes: LEADFLOW_BENCH_WEBHOOKS (default 4000), LEADFLOW_BENCH_ROWS
(default 100000).
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from leadflow.brokers import Broker

ROOT = Path(__file__).resolve().parent.parent


def bench_ingest(database_url: str, total: int, repeats: int) -> None:
    from dataclasses import replace

    from bench.loadgen import LoadResult, run_load, start_server
    from leadflow import credentials
    from leadflow.brokers import SECRET_KINDS, add_broker
    from leadflow.config import Settings
    from leadflow.db.connection import transaction
    from leadflow.demo.webhooks import signed
    from leadflow.services.ports import free_ports
    from tests.payloads import telegram_text

    broker = add_broker(database_url, f"bench-{uuid.uuid4().hex[:6]}", name="Bench", country="CL",
                        timezone="America/Santiago")
    for kinds in SECRET_KINDS.values():
        for kind in kinds:
            os.environ[broker.secret_env_name(kind)] = secrets.token_urlsafe(16)
    # A second broker whose secret its admin stored (sealed in PostgreSQL, no environment variable): the same
    # server answers both, so the two rates differ only by where the secret came from.
    stored = add_broker(database_url, f"bench-{uuid.uuid4().hex[:6]}", name="Bench stored", country="CL",
                        timezone="America/Santiago")
    stored_secret = credentials.generate_value()
    keys = credentials.MasterKeys.from_settings(Settings.from_environment(), database_url)
    with transaction(database_url) as conn, conn.cursor() as cur:
        credentials.put(cur, keys, stored.broker_id, "telegram_secret_token", stored_secret, None)
    stored = replace(stored, stored={"telegram_secret_token": stored_secret})
    env = dict(os.environ)
    api_port, bare_port = free_ports(2)
    api = start_server([sys.executable, "-m", "uvicorn", "--factory", "ingest_api.app:create_app",
                        "--port", str(api_port), "--log-level", "warning", "--no-access-log"], env, api_port)
    bare = start_server([sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--port", str(bare_port),
                   "--log-level", "warning", "--no-access-log"], env, bare_port)
    next_id = [0]

    def request_for(tenant: Broker) -> Callable[[int], tuple[str, dict[str, str], bytes]]:
        def request(i: int) -> tuple[str, dict[str, str], bytes]:
            return signed("telegram", tenant, telegram_text(update_id=next_id[0] + i))
        return request

    STORED = "ingest API (secret stored in PostgreSQL)"
    targets = {"bare FastAPI endpoint (baseline)": (bare_port, broker), "ingest API (telegram)": (api_port, broker),
               STORED: (api_port, stored)}
    results: dict[str, list[LoadResult]] = {name: [] for name in targets}
    try:
        for port, tenant in targets.values():  # warm-up: connections, producer metadata
            run_load(f"http://127.0.0.1:{port}", request_for(tenant), 300, 16)
        for _ in range(repeats):
            for name, (port, tenant) in targets.items():  # interleaved, so drift hits all alike
                next_id[0] += 1_000_000
                results[name].append(run_load(f"http://127.0.0.1:{port}", request_for(tenant), total, 32))
    finally:
        for proc in (api, bare):
            proc.terminate()
            proc.wait(timeout=30)

    def median(name: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in results[name])

    print(f"\n== ingest: {total} signed webhooks x {repeats} runs, 32 keep-alive connections, server in its own "
          "process (medians)")
    print(f"{'target':42s} {'webhooks/s':>11s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for name in targets:
        print(f"{name:42s} {median(name, 'rate'):11.0f} {median(name, 'p50_ms'):8.1f} {median(name, 'p99_ms'):8.1f}")
    codes = {code for rs in results.values() for r in rs for code in r.status_codes}
    ratio = median("ingest API (telegram)", "rate") / median("bare FastAPI endpoint (baseline)", "rate")
    print(f"ratio ingest/bare: {ratio:.2f}  (target >= 0.50); ingest p99 "
          f"{median('ingest API (telegram)', 'p99_ms'):.1f} ms (target < 50 ms); status codes seen: {sorted(codes)}")
    stored_ratio = median(STORED, "rate") / median("bare FastAPI endpoint (baseline)", "rate")
    print(f"ratio ingest/bare with the secret stored in PostgreSQL: {stored_ratio:.2f} (environment: {ratio:.2f}; "
          f"stored/environment {median(STORED, 'rate') / median('ingest API (telegram)', 'rate'):.2f}, target >= 0.95)")


def _landing_once(database_url: str, bootstrap: str, rows: int) -> dict[str, float]:
    from bench.streams import inbound_messages
    from leadflow.db.connection import connect
    from leadflow.kafka import (
        assign_from,
        consume,
        make_consumer,
        partitions_of,
    )
    from leadflow.landing import land

    topics, broker = inbound_messages(database_url, bootstrap, rows)

    # Baseline 1: read the topic, nothing else.
    consumer = make_consumer(bootstrap)
    assign_from(consumer, {(topics.messages, p): 0 for p in partitions_of(consumer, topics.messages)})
    read = 0
    started = time.perf_counter()
    while batch := consume(consumer, 5000, 1.0):
        read += len(batch)
    read_s = time.perf_counter() - started - 1.0  # the final empty poll waits its full timeout (1 s)
    consumer.close()

    result = land(database_url, bootstrap, topics)
    land_s = result.seconds - 0.5  # its final empty poll waits the landing poll timeout (0.5 s)
    assert result.messages_landed == rows, result

    # Baseline 2: COPY the same rows (exported from what landed, untimed) into a table of the same shape,
    # once bare, once with raw_messages' own keys and indexes (what writing these rows there costs).
    cols = ("broker_id, event_id, channel, provider_message_id, conversation_id, contact_channel_id, contact_phone, "
            "contact_name, contact_email, direction, message_type, body, sent_at, received_at, schema_version, "
            "payload, kafka_topic, kafka_partition, kafka_offset")
    copy_s = {}
    conn = connect(database_url)
    with conn, conn.cursor() as cur:
        data = io.StringIO()
        cur.copy_expert(f"COPY (SELECT {cols} FROM leadflow.raw_messages WHERE broker_id = {broker.broker_id}) "
                        "TO STDOUT", data)
        for name, ddl in (("bare", f"CREATE TABLE bench_copy AS SELECT {cols} FROM leadflow.raw_messages "
                                   "WITH NO DATA"),
                          ("indexed", "CREATE TABLE bench_copy (LIKE leadflow.raw_messages INCLUDING ALL)")):
            cur.execute(ddl)
            data.seek(0)
            started = time.perf_counter()
            cur.copy_expert(f"COPY bench_copy ({cols}) FROM STDIN", data)
            copy_s[name] = time.perf_counter() - started
            cur.execute("DROP TABLE bench_copy")
    conn.close()
    return {"read topic (baseline)": read / read_s,
            "COPY into bare table (reference)": rows / copy_s["bare"],
            "COPY into raw_messages' shape (baseline)": rows / copy_s["indexed"],
            "landing (exactly once)": result.messages_landed / land_s}


def bench_landing(database_url: str, bootstrap: str, rows: int, repeats: int) -> None:
    runs = [_landing_once(database_url, bootstrap, rows) for _ in range(repeats)]
    rates = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    print(f"\n== landing: {rows} messages x {repeats} runs, 6 partitions (medians)")
    for name, rate in rates.items():
        print(f"{name:42s} {rate:11.0f} rows/s")
    slower = min(rates["read topic (baseline)"], rates["COPY into raw_messages' shape (baseline)"])
    print(f"ratio landing/slower baseline: {rates['landing (exactly once)'] / slower:.2f}  (target >= 0.50); "
          f"vs the bare-table COPY: {rates['landing (exactly once)'] / rates['COPY into bare table (reference)']:.2f}")


def main() -> None:
    sys.path.insert(0, str(ROOT))
    home = Path(tempfile.mkdtemp(prefix="leadflow-bench-"))
    os.environ["LEADFLOW_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    for name in ("LEADFLOW_DATABASE_URL", "LEADFLOW_KAFKA_BOOTSTRAP_SERVERS"):
        os.environ.pop(name, None)
    # The parts measure Leadflow, not the embedded broker's disk: they run on its memory engine (production
    # runs Apache Kafka). What the durable s3 default costs is a part of its own ("storage").
    os.environ.setdefault("LEADFLOW_KAFKA_STORAGE", "memory")
    from leadflow.config import export_environment
    from leadflow.services import manager

    manager.up(log=lambda _line: None)
    try:
        settings = export_environment()
        repeats = int(os.environ.get("LEADFLOW_BENCH_REPEATS", "3"))
        # LEADFLOW_BENCH_ONLY=agent,ingest runs those parts alone (default: every part).
        only = {part.strip() for part in os.environ.get("LEADFLOW_BENCH_ONLY", "").split(",") if part.strip()}

        def wanted(part: str) -> bool:
            return not only or part in only

        if wanted("storage"):
            from bench.kafka_storage import bench_kafka_storage

            bench_kafka_storage(int(os.environ.get("LEADFLOW_BENCH_STORAGE_RECORDS", "20000")))
        if wanted("ingest"):
            bench_ingest(settings.database_url, int(os.environ.get("LEADFLOW_BENCH_WEBHOOKS", "4000")), repeats)
        if wanted("landing"):
            bench_landing(settings.database_url, settings.kafka_bootstrap_servers,
                          int(os.environ.get("LEADFLOW_BENCH_ROWS", "100000")), repeats)
        if wanted("scaleout"):
            from bench.scale_out import bench_scale_out

            bench_scale_out(settings.database_url, settings.kafka_bootstrap_servers,
                            int(os.environ.get("LEADFLOW_BENCH_SCALE_ROWS", "200000")),
                            int(os.environ.get("LEADFLOW_BENCH_SCALE_SENDS", "3000")))
        if wanted("agent"):
            from bench.agent import bench_agent

            bench_agent(settings)
        from bench.campaigns import bench_batch, bench_dispatch, bench_targeting
        from bench.qualification import bench_qualification

        if wanted("qualification"):
            bench_qualification()
        if wanted("appointments"):
            from bench.appointments import bench_slots

            bench_slots(repeats=repeats)
        if wanted("campaigns"):
            bench_targeting()
            # Dispatch first: the batch bench leaves ~450,000 pending sends that are due, and the dispatcher
            # sends every due send, whatever campaign it belongs to.
            bench_dispatch(settings.database_url, settings.kafka_bootstrap_servers,
                           int(os.environ.get("LEADFLOW_BENCH_SENDS", "2000")))
            bench_batch(settings.database_url, settings.kafka_bootstrap_servers,
                        int(os.environ.get("LEADFLOW_BENCH_BATCH_LEADS", "1000000")))
        if wanted("analytics"):
            from bench.analytics import bench_dbt, bench_reports_api
            from leadflow.config import with_database

            funnel_url = bench_dbt(with_database(settings.database_url, "postgres"),
                                   int(os.environ.get("LEADFLOW_BENCH_STAGE_EVENTS", "1000000")))
            bench_reports_api(funnel_url, int(os.environ.get("LEADFLOW_BENCH_REPORT_REQUESTS", "3000")), 16)
        if wanted("import"):
            from bench.workspace_import import bench_import

            bench_import(settings, int(os.environ.get("LEADFLOW_BENCH_IMPORT_ROWS", "100000")))
        if wanted("workspace"):
            from bench.workspace import bench_workspace
            from leadflow.config import with_database

            bench_workspace(with_database(settings.database_url, "postgres"),
                            int(os.environ.get("LEADFLOW_BENCH_WS_LEADS", "1000000")),
                            int(os.environ.get("LEADFLOW_BENCH_WS_MESSAGES", "20000000")),
                            int(os.environ.get("LEADFLOW_BENCH_WS_REQUESTS", "1000")), 16)
    finally:
        manager.down(log=lambda _line: None)
        # Its state (the workspace part's 1M-lead database is ~10 GB) would fill the disk run after run.
        if os.environ.get("LEADFLOW_BENCH_KEEP") != "1":
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
