"""Funnel analytics at scale: `dbt build` over 1M stage events, an incremental rerun after 1% more,
and the reports API's funnel endpoint under concurrent load.

Data is written straight into the pipeline's tables with generate_series (what landing, identity
resolution and the stage machine would have written), in a database of its own:
- 20 brokers, events/4 leads, one first message each (channel by lead), 1 to 7 stage events per
  lead along the pipeline (mean 4; one lead in 11 ends lost), a campaign send to one lead in 5;
- baseline: `CREATE TABLE AS` of the stage events (one pass writing the same rows), timed in the
  same run, so the build is reported as a multiple of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

from leadflow.config import with_database
from leadflow.db.connection import transaction

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["entrada", "perfilamiento", "calificacion_financiera", "potencial", "agendado", "seguimiento",
          "referidos", "ganado"]
AS_OF = "2026-12-31T00:00:00Z"
NEXT_AS_OF = "2027-01-01T00:00:00Z"  # the rerun is a day later, as the hourly/daily analytics would be

SEED_SQL = """
INSERT INTO leadflow.brokers (slug, name, country, timezone)
SELECT 'bench-' || i, 'Bench ' || i, 'CL', 'America/Santiago' FROM generate_series(1, 20) i;

INSERT INTO leadflow.leads (lead_id, broker_id, channels, message_count, first_message_at, last_message_at, changed_at)
SELECT i, b.first + i %% 20, ARRAY[(ARRAY['whatsapp', 'telegram', 'vapi', 'bland', 'form'])[1 + i %% 5]], 1, t, t, t
FROM (SELECT min(broker_id) AS first FROM leadflow.brokers) b,
     LATERAL (SELECT i, timestamptz '2026-01-05' + (i %% 330) * interval '1 day'
                        + (i %% 1440) * interval '1 minute' AS t
              FROM generate_series(1, %(leads)s) i) s;

INSERT INTO leadflow.raw_messages (broker_id, event_id, channel, provider_message_id, contact_channel_id, direction,
                                   message_type, body, sent_at, received_at, schema_version, payload, kafka_topic,
                                   kafka_partition, kafka_offset)
SELECT broker_id, md5(lead_id::text)::uuid, channels[1], 'bench-' || lead_id, lead_id::text, 'inbound', 'text',
       CASE WHEN channels[1] = 'telegram' AND lead_id %% 3 = 0 THEN '/start portal' ELSE 'hola' END,
       first_message_at, first_message_at, 1, '{}'::jsonb, 'bench', 0, lead_id
FROM leadflow.leads;

INSERT INTO leadflow.message_leads (message_id, broker_id, lead_id)
SELECT message_id, broker_id, contact_channel_id::bigint FROM leadflow.raw_messages;

INSERT INTO leadflow.stage_events (broker_id, lead_id, from_stage, to_stage, occurred_at, reason, automatic, sequence)
SELECT l.broker_id, l.lead_id,
       CASE WHEN k = 1 THEN NULL ELSE (%(stages)s::text[])[k - 1] END,
       CASE WHEN k = n AND l.lead_id %% 11 = 0 THEN 'perdido' ELSE (%(stages)s::text[])[k] END,
       l.first_message_at + (k - 1) * interval '2 days' + (l.lead_id %% 17) * interval '1 hour',
       'bench', true, 0
FROM leadflow.leads l,
     LATERAL (SELECT 1 + (l.lead_id * 7919) %% 7 AS n) steps,
     LATERAL generate_series(1, steps.n) k;

INSERT INTO leadflow.campaigns (broker_id, name, status, definition, activated_at)
SELECT broker_id, 'campaign ' || c, 'active', '{"trigger": {"type": "manual"}, "steps": []}', '2026-01-01'
FROM leadflow.brokers, generate_series(1, 5) c;

INSERT INTO leadflow.outbound_sends (broker_id, campaign_id, lead_id, step, action, channel, status, created_at,
                                     sent_at, updated_at)
SELECT l.broker_id, c.campaign_id, l.lead_id, 0, 'message', 'whatsapp', 'sent', t, t, t
FROM leadflow.leads l
JOIN LATERAL (SELECT campaign_id FROM leadflow.campaigns WHERE broker_id = l.broker_id
              ORDER BY campaign_id OFFSET l.lead_id %% 5 LIMIT 1) c ON true
CROSS JOIN LATERAL (SELECT l.first_message_at + interval '1 day' AS t) at
WHERE l.lead_id %% 5 = 0;
ANALYZE;
"""

# The 1%, as a day of activity looks: the most recently active leads that are still open take their next
# step a day after their last one.
MORE_SQL = """
INSERT INTO leadflow.stage_events (broker_id, lead_id, from_stage, to_stage, occurred_at, reason, automatic, sequence)
SELECT e.broker_id, e.lead_id, e.to_stage, (%(stages)s::text[])[array_position(%(stages)s::text[], e.to_stage) + 1],
       e.occurred_at + interval '1 day', 'bench: one more step', true, 0
FROM (SELECT DISTINCT ON (lead_id) * FROM leadflow.stage_events ORDER BY lead_id, stage_event_id DESC) e
WHERE e.to_stage NOT IN ('ganado', 'perdido')
ORDER BY e.occurred_at DESC
LIMIT %(events)s
"""


def _dbt(*args: str, as_of: str = AS_OF) -> float:
    started = time.perf_counter()
    result = subprocess.run([str(Path(sys.executable).with_name("dbt")), *args, "--project-dir",
                             str(ROOT / "dbt_project"), "--profiles-dir", str(ROOT / "dbt_project")],
                            capture_output=True, text=True, cwd=ROOT, env={**os.environ, "LEADFLOW_AS_OF": as_of})
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"dbt {' '.join(args)} failed:\n{result.stdout[-4000:]}")
    if os.environ.get("LEADFLOW_BENCH_DBT_NODES"):
        nodes = json.loads((ROOT / "dbt_project" / "target" / "run_results.json").read_text())["results"]
        for node in sorted(nodes, key=lambda n: -n["execution_time"])[:int(os.environ["LEADFLOW_BENCH_DBT_NODES"])]:
            print(f"    {node['execution_time']:6.2f}s  {node['unique_id']}")
    return seconds


def seed_funnel_database(admin_url: str, events: int) -> str:
    """A new database with the pipeline's tables filled for ~``events`` stage events; its URL."""
    from leadflow.db.migrate import upgrade
    from leadflow.services import postgres as embedded_postgres

    name = f"bench_funnel_{uuid.uuid4().hex[:8]}"
    embedded_postgres.create_database(admin_url, name)
    url = with_database(admin_url, name)
    upgrade(url)
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute(SEED_SQL, {"leads": events // 4, "stages": STAGES})
    return url


def count(url: str, table: str) -> int:
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        row = cur.fetchone()
    return int(row[0]) if row else 0


def bench_dbt(admin_url: str, events: int) -> str:
    """Prints the figures; returns the seeded database's URL for the reports API bench."""
    from leadflow.config import export_environment

    started = time.perf_counter()
    url = seed_funnel_database(admin_url, events)
    seeded_s = time.perf_counter() - started
    stage_events = count(url, "leadflow.stage_events")
    with transaction(url) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        cur.execute("CREATE TABLE bench_events_copy AS SELECT * FROM leadflow.stage_events")
        baseline_s = time.perf_counter() - started
        cur.execute("DROP TABLE bench_events_copy")

    previous = os.environ.get("LEADFLOW_DATABASE_URL")
    os.environ["LEADFLOW_DATABASE_URL"] = url
    export_environment()  # dbt's profile reads the LEADFLOW_PG* parts of this URL
    try:
        full_s = _dbt("build", "--full-refresh")
        with transaction(url) as conn, conn.cursor() as cur:
            cur.execute(MORE_SQL, {"stages": STAGES, "events": stage_events // 100})
            added = cur.rowcount
        incremental_s = _dbt("build", as_of=NEXT_AS_OF)
        rows = count(url, "marts.fct_funnel_daily")
    finally:
        if previous is not None:
            os.environ["LEADFLOW_DATABASE_URL"] = previous
            export_environment()
    print(f"\n== funnel analytics: dbt build over {stage_events:,} stage events, {events // 4:,} leads "
          f"(seeded in {seeded_s:.1f}s)")
    print(f"baseline: CREATE TABLE AS of the stage events   {baseline_s:6.2f} s")
    print(f"dbt build (full refresh, models and tests)     {full_s:6.2f} s   = {full_s / baseline_s:.0f}x baseline  "
          f"(target < 60 s); fct_funnel_daily: {rows:,} rows")
    print(f"dbt build after {added:,} new events (+{added / stage_events:.1%}, incremental) {incremental_s:6.2f} s   "
          f"= {incremental_s / baseline_s:.0f}x baseline  (target < 10 s)")
    return url


def bench_reports_api(url: str, total: int, concurrency: int) -> None:
    from bench.loadgen import run_load, start_server
    from leadflow.services.ports import free_ports
    from leadflow.users import add_user, authenticate
    from reports_api.security import TokenSettings, issue_token

    secret = uuid.uuid4().hex * 2
    env = {**os.environ, "LEADFLOW_DATABASE_URL": url, "LEADFLOW_REPORTS_JWT_SECRET": secret,
           "LEADFLOW_BCRYPT_ROUNDS": "4"}
    os.environ["LEADFLOW_BCRYPT_ROUNDS"] = "4"
    add_user(url, "bench@broker.test", "bench-password", role="ADMIN", broker_slug="bench-1")
    user = authenticate(url, "bench@broker.test", "bench-password")
    assert user is not None and user.broker_id is not None
    token = issue_token(TokenSettings(secret, timedelta(hours=1)), user)
    headers = {"Authorization": f"Bearer {token}"}
    path = f"/brokers/{user.broker_id}/funnel?start=2026-01-01&end=2026-12-31&grain=week"
    api_port, bare_port = free_ports(2)
    api = start_server([sys.executable, "-m", "uvicorn", "--factory", "reports_api.app:from_environment", "--port",
                  str(api_port), "--log-level", "warning", "--no-access-log"], env, api_port)
    bare = start_server([sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--port", str(bare_port),
                   "--log-level", "warning", "--no-access-log"], env, bare_port)
    try:
        results = {}
        for name, port, target in (("bare FastAPI GET (baseline)", bare_port, "/bare/funnel"),
                                   ("reports API funnel", api_port, path)):
            def request(_i: int, target: str = target) -> tuple[str, dict[str, str], bytes]:
                return target, headers, b""

            run_load(f"http://127.0.0.1:{port}", request, 200, concurrency, method="GET")  # warm-up
            results[name] = run_load(f"http://127.0.0.1:{port}", request, total, concurrency, method="GET")
    finally:
        for proc in (api, bare):
            proc.terminate()
            proc.wait(timeout=10)
    print(f"\n== reports API: GET funnel (52 weeks x stages of one broker), {total} requests, "
          f"{concurrency} concurrent connections")
    for name, r in results.items():
        print(f"{name:32s} {r.rate:8.0f} req/s   p50 {r.p50_ms:6.1f} ms   p99 {r.p99_ms:6.1f} ms   "
              f"codes {r.status_codes}")
    api_r, bare_r = results["reports API funnel"], results["bare FastAPI GET (baseline)"]
    print(f"ratio reports/bare: {api_r.rate / bare_r.rate:.2f}; funnel p99 {api_r.p99_ms:.1f} ms (target < 100 ms)")

