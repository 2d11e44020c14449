"""The workspace at scale: inbox pages and a 500-message lead page under 16 concurrent users.

Data is written straight into the pipeline's tables with generate_series (what landing, identity
resolution, scoring and the stage machine would have written), in a database of its own:
20 brokers, LEADFLOW_BENCH_WS_LEADS leads (default 1,000,000) and LEADFLOW_BENCH_WS_MESSAGES
messages (default 20,000,000, spread evenly over the leads, alternately the lead's and the bot's),
one lead of the measured broker with 500 more; a qualification, a stage, a score and, for one lead in
three, an agent for every lead; one lead in ten taken over by a person.

Measured through the real reports API (uvicorn, its JSON routes, a JWT of the broker's ADMIN, row
security) and, as the baseline, a bare FastAPI app that runs a plain SELECT of the same rows through
the same kind of pool (``ScopedPool``: the same login role, scope and row security) — so the ratio is
what the workspace's queries and shaping cost over fetching the rows it shows.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from leadflow.config import with_database
from leadflow.db.connection import connect, transaction

ROOT = Path(__file__).resolve().parent.parent
BROKERS = 20
STAGES = ["entrada", "perfilamiento", "calificacion_financiera", "potencial", "agendado", "seguimiento",
          "referidos", "ganado", "perdido"]
AGENTS_PER_BROKER = 5
BIG_CONVERSATION = 500

SEED_SQL = """
INSERT INTO leadflow.brokers (slug, name, country, timezone)
SELECT 'ws-' || i, 'Workspace bench ' || i, 'CL', 'America/Santiago' FROM generate_series(1, %(brokers)s) i;

INSERT INTO leadflow.users (broker_id, email, display_name, role, password_hash)
SELECT b.broker_id, 'agent' || a || '@' || b.slug || '.test', 'Agent ' || a || ' ' || b.slug, 'AGENT', 'x'
FROM leadflow.brokers b, generate_series(1, %(agents)s) a;

-- Lead i belongs to broker first + i %% 20; its messages are j = i, i + L, i + 2L, … (sent a minute apart
-- per round), so its newest message time is known without reading them.
INSERT INTO leadflow.leads (lead_id, broker_id, display_name, phone_e164, email, channels, message_count,
                            first_message_at, last_message_at, changed_at, assigned_user_id)
SELECT i, b.first + i %% %(brokers)s,
       'Lead ' || i || ' ' || (ARRAY['Pérez', 'González', 'Muñoz', 'Rojas'])[1 + (i / %(brokers)s) %% 4],
       '+569' || lpad(i::text, 8, '0'), 'lead' || i || '@mail.test',
       ARRAY[(ARRAY['whatsapp', 'telegram', 'vapi', 'bland', 'form'])[1 + i %% 5]],
       %(per_lead)s, t, t + (%(per_lead)s - 1) * interval '1 minute', t,
       CASE WHEN i %% 3 = 0 THEN (SELECT min(user_id) FROM leadflow.users u
                                  WHERE u.broker_id = b.first + i %% %(brokers)s) + i %% %(agents)s END
FROM (SELECT min(broker_id) AS first FROM leadflow.brokers) b,
     LATERAL (SELECT i, timestamptz '2026-01-05' + (i %% 330) * interval '1 day'
                        + (i %% 1440) * interval '1 minute' AS t
              FROM generate_series(1, %(leads)s) i) s;

INSERT INTO leadflow.raw_messages (broker_id, event_id, channel, provider_message_id, contact_channel_id, direction,
                                   message_type, body, sent_at, received_at, schema_version, payload, kafka_topic,
                                   kafka_partition, kafka_offset)
SELECT l.broker_id, md5('ws' || j)::uuid, l.channels[1], 'ws-' || j, l.lead_id::text,
       CASE WHEN (j / %(leads)s) %% 2 = 0 THEN 'inbound' ELSE 'outbound' END, 'text',
       (ARRAY['hola, busco depto en Ñuñoa', '¿cuántos dormitorios necesitas?', '3 dormitorios, presupuesto 4.500 UF',
              '¿tienes crédito preaprobado?', 'sí, con el banco', '¿te acomoda visitar el sábado?',
              'dale, a las 11', 'perfecto, te confirmo'])[1 + (j / %(leads)s) %% 8],
       l.first_message_at + (j / %(leads)s) * interval '1 minute',
       l.first_message_at + (j / %(leads)s) * interval '1 minute', 1,
       CASE WHEN (j / %(leads)s) %% 2 = 0 THEN '{}' ELSE '{"leadflow": {"author": "bot"}}' END::jsonb,
       'bench', 0, j
FROM generate_series(0, %(messages)s - 1) j
JOIN leadflow.leads l ON l.lead_id = 1 + j %% %(leads)s;

INSERT INTO leadflow.message_leads (message_id, broker_id, lead_id)
SELECT message_id, broker_id, contact_channel_id::bigint FROM leadflow.raw_messages;

INSERT INTO leadflow.lead_stages (lead_id, broker_id, stage, entered_at, evaluated_at, stalled, stalled_days)
SELECT lead_id, broker_id, (%(stages)s::text[])[1 + (lead_id * 7919) %% 9], last_message_at, last_message_at,
       lead_id %% 7 = 0, CASE WHEN lead_id %% 7 = 0 THEN 9 END
FROM leadflow.leads;

INSERT INTO leadflow.lead_scores (lead_id, broker_id, score, temperature, breakdown, financing_ready, scored_at)
SELECT lead_id, broker_id, s, CASE WHEN s >= 70 THEN 'hot' WHEN s >= 40 THEN 'warm' ELSE 'cold' END,
       '{"budget": 20, "timeline": 10}', s >= 50, last_message_at
FROM (SELECT lead_id, broker_id, last_message_at, ((lead_id * 104729) %% 101)::int AS s FROM leadflow.leads) x;

-- What the seeded messages say (the lead page shows each fact with the message it came from).
INSERT INTO leadflow.lead_qualifications (lead_id, broker_id, qualifier, schema_version, conversation_hash, operation,
                                          property_type, bedrooms_min, budget_max, budget_currency, budget_period,
                                          locations, qualified_at)
SELECT lead_id, broker_id, 'rules', 1, 'bench', 'buy', 'apartment', 3, 4500, 'UF', 'total', '{ñuñoa}', last_message_at
FROM leadflow.leads;

INSERT INTO leadflow.lead_handlers (broker_id, lead_id, handler, reason, switched_at)
SELECT broker_id, lead_id, 'person', 'bench: taken over', last_message_at FROM leadflow.leads WHERE lead_id %% 10 = 0;
"""

# One lead of the measured broker gets 500 more messages: the lead page's worst case.
BIG_SQL = """
INSERT INTO leadflow.raw_messages (broker_id, event_id, channel, provider_message_id, contact_channel_id, direction,
                                   message_type, body, sent_at, received_at, schema_version, payload, kafka_topic,
                                   kafka_partition, kafka_offset)
SELECT l.broker_id, md5('big' || k)::uuid, l.channels[1], 'big-' || k, l.lead_id::text,
       CASE WHEN k %% 2 = 0 THEN 'inbound' ELSE 'outbound' END, 'text', 'mensaje ' || k || ' de una conversación larga',
       l.last_message_at + k * interval '1 minute', l.last_message_at + k * interval '1 minute', 1, '{}', 'bench', 0, k
FROM leadflow.leads l, generate_series(1, %(big)s) k WHERE l.lead_id = %(lead)s;
INSERT INTO leadflow.message_leads (message_id, broker_id, lead_id)
SELECT message_id, broker_id, %(lead)s FROM leadflow.raw_messages WHERE provider_message_id LIKE 'big-%%';
UPDATE leadflow.leads SET message_count = message_count + %(big)s,
                          last_message_at = last_message_at + %(big)s * interval '1 minute'
WHERE lead_id = %(lead)s;
"""


@dataclass(frozen=True)
class Seeded:
    url: str
    broker_id: int
    lead_id: int  # the measured broker's lead with the long conversation
    leads: int
    messages: int
    seconds: float


def seed_workspace_database(admin_url: str, leads: int, messages: int) -> Seeded:
    """A new database with the workspace's tables filled; the secondary indexes of the two big tables are
    dropped while they fill and built again after (as a bulk load would), then everything is analyzed."""
    from leadflow.db.migrate import upgrade
    from leadflow.services import postgres as embedded_postgres

    started = time.perf_counter()
    name = f"bench_ws_{uuid.uuid4().hex[:8]}"
    embedded_postgres.create_database(admin_url, name)
    url = with_database(admin_url, name)
    upgrade(url)
    per_lead = max(1, messages // leads)
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("SET maintenance_work_mem = '1GB'")
        cur.execute("""SELECT indexname, indexdef FROM pg_indexes i
                       WHERE schemaname = 'leadflow' AND tablename IN ('raw_messages', 'message_leads', 'leads')
                         AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)""")
        indexes = cur.fetchall()
        for index_name, _ in indexes:
            cur.execute(f"DROP INDEX leadflow.{index_name}")
        cur.execute(SEED_SQL, {"brokers": BROKERS, "agents": AGENTS_PER_BROKER, "leads": leads,
                               "messages": per_lead * leads, "per_lead": per_lead, "stages": STAGES})
        cur.execute("SELECT min(broker_id) FROM leadflow.brokers")
        row = cur.fetchone()
        assert row is not None
        broker_id = int(row[0])
        # lead i belongs to broker first + i % 20: lead 20 is the first broker's
        big_lead = BROKERS
        cur.execute(BIG_SQL, {"lead": big_lead, "big": BIG_CONVERSATION})
        for _, definition in indexes:
            cur.execute(definition)
    conn = connect(url)
    conn.autocommit = True  # VACUUM runs outside a transaction
    try:
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
    finally:
        conn.close()
    return Seeded(url, broker_id, big_lead, leads, per_lead * leads + BIG_CONVERSATION, time.perf_counter() - started)


def seeded_database(url: str) -> Seeded:
    """A database an earlier run seeded, named by LEADFLOW_BENCH_WS_URL (seeding 1M leads takes minutes):
    brought to the latest migration, measured as it is."""
    from leadflow.db.migrate import upgrade

    upgrade(url)
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("""SELECT (SELECT min(broker_id) FROM leadflow.brokers), (SELECT count(*) FROM leadflow.leads),
                              (SELECT reltuples::bigint FROM pg_class WHERE oid = 'leadflow.raw_messages'::regclass)""")
        row = cur.fetchone()
        assert row is not None and row[0] is not None, f"{url} holds no seeded workspace"
    return Seeded(url, int(row[0]), BROKERS, int(row[1]), int(row[2]), 0.0)


def _percentile_line(name: str, rate: float, p50: float, p95: float, p99: float, codes: dict[int, int]) -> str:
    return (f"{name:44s} {rate:7.0f} req/s   p50 {p50:6.1f} ms   p95 {p95:6.1f} ms   p99 {p99:6.1f} ms   "
            f"codes {codes}")


def bench_workspace(admin_url: str, leads: int, messages: int, total: int, concurrency: int) -> None:
    from bench.loadgen import run_load, start_server
    from leadflow.services.ports import free_ports
    from leadflow.users import add_user, authenticate
    from reports_api.security import TokenSettings, issue_token

    reuse = os.environ.get("LEADFLOW_BENCH_WS_URL")
    seeded = seeded_database(reuse) if reuse else seed_workspace_database(admin_url, leads, messages)
    secret = uuid.uuid4().hex * 2
    os.environ["LEADFLOW_BCRYPT_ROUNDS"] = "4"
    env = {**os.environ, "LEADFLOW_DATABASE_URL": seeded.url, "LEADFLOW_REPORTS_JWT_SECRET": secret,
           "LEADFLOW_BENCH_WS_BROKER": str(seeded.broker_id)}
    with transaction(seeded.url) as conn, conn.cursor() as cur:
        cur.execute("SELECT slug FROM leadflow.brokers WHERE broker_id = %s", (seeded.broker_id,))
        row = cur.fetchone()
        assert row is not None
        slug = str(row[0])
        cur.execute("SELECT 1 FROM leadflow.users WHERE email = 'bench-admin@ws.test'")
        known = cur.fetchone() is not None
    if not known:
        add_user(seeded.url, "bench-admin@ws.test", "bench-password", role="ADMIN", broker_slug=slug)
    user = authenticate(seeded.url, "bench-admin@ws.test", "bench-password")
    assert user is not None and user.broker_id == seeded.broker_id
    env["LEADFLOW_BENCH_WS_USER"] = str(user.user_id)
    token = issue_token(TokenSettings(secret, timedelta(hours=1)), user)
    headers = {"Authorization": f"Bearer {token}"}
    b, lead = seeded.broker_id, seeded.lead_id
    # (what, our route, the baseline's route): each baseline selects the rows its route shows
    targets = [
        ("inbox, first page", f"/brokers/{b}/inbox", f"/bare/inbox/{b}"),
        ("inbox, filtered (stage + temperature)", f"/brokers/{b}/inbox?stage=potencial&temperature=hot",
         f"/bare/inbox/{b}?stage=potencial&temperature=hot"),
        ("inbox, counts per filter", f"/brokers/{b}/inbox/counts", f"/bare/counts/{b}"),
        ("lead page, 500 messages", f"/brokers/{b}/leads/{lead}/workspace?limit=500", f"/bare/lead/{b}/{lead}"),
        ("inbox, search (name and messages)", f"/brokers/{b}/inbox?q=Rojas", f"/bare/inbox/{b}?q=Rojas"),
    ]
    api_port, bare_port = free_ports(2)
    api = start_server([sys.executable, "-m", "uvicorn", "--factory", "reports_api.app:from_environment", "--port",
                        str(api_port), "--log-level", "warning", "--no-access-log"], env, api_port)
    bare = start_server([sys.executable, "-m", "uvicorn", "--factory", "bench.workspace_bare:create_app", "--port",
                         str(bare_port), "--log-level", "warning", "--no-access-log"], env, bare_port)
    lines = []
    try:
        for what, ours, baseline in targets:
            figures = {}
            for name, port, path in (("bare SELECT, same pool (baseline)", bare_port, baseline),
                                     ("reports API", api_port, ours)):
                def request(_i: int, path: str = path) -> tuple[str, dict[str, str], bytes]:
                    return path, headers, b""

                run_load(f"http://127.0.0.1:{port}", request, min(100, total), concurrency, method="GET")  # warm-up
                figures[name] = run_load(f"http://127.0.0.1:{port}", request, total, concurrency, method="GET")
            lines.append((what, figures))
        # The lead page right after the conversation changed (its fact sources are read anew), one user.
        cold = []
        page = f"/brokers/{b}/leads/{lead}/workspace?limit=500"
        for _ in range(20):
            with transaction(seeded.url) as conn, conn.cursor() as cur:
                cur.execute("UPDATE leadflow.lead_qualifications SET qualified_at = clock_timestamp() "
                            "WHERE lead_id = %s", (lead,))
            cold.append(run_load(f"http://127.0.0.1:{api_port}", lambda _i: (page, headers, b""), 1, 1,
                                 method="GET").p50_ms)
    finally:
        for proc in (api, bare):
            proc.terminate()
            proc.wait(timeout=10)
    print(f"\n== workspace: {seeded.leads:,} leads, {seeded.messages:,} messages, {BROKERS} brokers (seeded in "
          f"{seeded.seconds:.0f} s); {total} GETs per line, {concurrency} concurrent users")
    for what, figures in lines:
        print(f"-- {what}")
        for name, r in figures.items():
            print("   " + _percentile_line(name, r.rate, r.p50_ms, r.p95_ms, r.p99_ms, r.status_codes))
        ours_r, bare_r = figures["reports API"], figures["bare SELECT, same pool (baseline)"]
        print(f"   ratio p95 ours/bare: {ours_r.p95_ms / bare_r.p95_ms:.2f}; p95 {ours_r.p95_ms:.1f} ms "
              "(target < 150 ms)")
    cold.sort()
    print(f"-- lead page, 500 messages, first view after a change (fact sources read anew), one user: "
          f"median {cold[len(cold) // 2]:.1f} ms, max {cold[-1]:.1f} ms")
