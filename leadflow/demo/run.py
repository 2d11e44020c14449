"""`leadflow demo`: the whole backbone on a fresh machine, end to end, in about a minute.

Starts what is missing, registers two demo brokers, sends a generated stream as signed HTTP
webhooks to a running ingest API, lets the sensor-driven landing runs land it, builds the dbt
models, and prints per broker and channel what landed. Rerunning sends the same provider ids,
which the landing absorbs as duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

import uvicorn

from leadflow import credentials
from leadflow.analytics import funnel_totals
from leadflow.appointments import store as appointments
from leadflow.appointments.slots import Slot
from leadflow.brokers import SECRET_KINDS, Broker, add_broker
from leadflow.config import Settings, secret
from leadflow.db.connection import connect, transaction
from leadflow.demo.generator import generate
from leadflow.demo.webhooks import send_all
from leadflow.leads.stages import DEFAULT_PIPELINE
from leadflow.leads.store.identities import LOCK_LEADS
from leadflow.leads.store.stages import move_lead_forward
from leadflow.services.ports import free_port, wait_for_port

DEMO_BROKERS = (
    ("providencia-propiedades", "Providencia Propiedades", "CL", "America/Santiago"),
    ("polanco-realty", "Polanco Realty", "MX", "America/Mexico_City"),
)


# What the agent's replies are sent with; the demo sends them to a stand-in provider on loopback.
_SENDING = {"telegram_bot_token": lambda: f"{secrets.randbelow(10**9)}:demo-{secrets.token_hex(12)}",
            "whatsapp_access_token": lambda: f"demo-{secrets.token_hex(12)}",
            "whatsapp_phone_number_id": lambda: str(10**9 + secrets.randbelow(10**9))}


def register_demo_brokers(url: str) -> list[Broker]:
    """The demo brokers, their channel credentials stored as an admin would store them on the channels page
    (random, sealed under the local master key; kept across runs, so `make up` after `make demo` signs with
    the same ones), each returned with its opened values. A credential set in the environment is left to
    the environment (a stored one would win over it)."""
    keys = credentials.MasterKeys.from_settings(Settings.from_environment(), url)
    brokers = []
    with transaction(url) as conn, conn.cursor() as cur:
        for slug, name, country, tz in DEMO_BROKERS:
            broker = add_broker(url, slug, name=name, country=country, timezone=tz)
            stored = credentials.infos(cur, broker.broker_id)
            wanted = {kind: credentials.generate_value for kinds in SECRET_KINDS.values() for kind in kinds}
            for kind, make in {**wanted, **_SENDING}.items():
                if kind not in stored and not secret(broker.secret_env_name(kind)):
                    credentials.put(cur, keys, broker.broker_id, kind, make(), None)
            opened = credentials.read_all(cur, keys, [broker.broker_id]).get(broker.broker_id, {})
            brokers.append(replace(broker, stored=opened))
    return brokers


class BackgroundServer:
    """A uvicorn server on a free loopback port, in a thread of this process."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        if not wait_for_port("127.0.0.1", self.port, timeout=30) or not self._started():
            raise RuntimeError("the server did not start; see the log above")
        return self

    def _started(self) -> bool:
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return bool(self.server.started)

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def summary(url: str) -> list[tuple[Any, ...]]:
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                """
                SELECT b.broker_slug, m.channel, count(*) AS messages,
                       count(DISTINCT coalesce(m.contact_phone_e164, m.contact_channel_id)) AS contacts
                FROM staging.stg_leadflow__messages m
                JOIN staging.stg_leadflow__brokers b USING (broker_id)
                GROUP BY 1, 2 ORDER BY 1, 2
                """
            )
            rows = cur.fetchall()
            cur.execute("SELECT count(*) FROM leadflow.dead_letters")
            dead = cur.fetchone()
            cur.execute("SELECT count(*) FROM leadflow.delivery_statuses")
            statuses = cur.fetchone()
        rows.append(("(all)", "dead letters", dead[0] if dead else 0, None))
        rows.append(("(all)", "delivery statuses", statuses[0] if statuses else 0, None))
        return rows
    finally:
        conn.close()


def lead_summary(url: str) -> list[tuple[Any, ...]]:
    """Per broker: leads after identity resolution, by temperature, and the qualified share."""
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                """
                SELECT b.slug, count(*) AS leads,
                       count(*) FILTER (WHERE cardinality(l.channels) > 1) AS multi_channel,
                       count(*) FILTER (WHERE s.temperature = 'hot') AS hot,
                       count(*) FILTER (WHERE s.temperature = 'warm') AS warm,
                       count(*) FILTER (WHERE s.temperature = 'cold') AS cold,
                       count(*) FILTER (WHERE q.operation IS NOT NULL) AS with_operation,
                       count(*) FILTER (WHERE q.budget_max IS NOT NULL OR q.budget_min IS NOT NULL) AS with_budget,
                       round(avg(s.score), 1) AS avg_score
                FROM leadflow.leads l JOIN leadflow.brokers b USING (broker_id)
                LEFT JOIN leadflow.lead_qualifications q USING (lead_id)
                LEFT JOIN leadflow.lead_scores s USING (lead_id)
                WHERE l.merged_into IS NULL
                GROUP BY b.slug ORDER BY b.slug
                """
            )
            return list(cur.fetchall())
    finally:
        conn.close()


# What the demo's agents do with the leads the pipeline made ready: of the leads in potencial, this share
# gets a visit, of those this share is followed up, and so on down to a signed deal.
SALES_STEPS = (("agendado", 0.6), ("seguimiento", 0.7), ("ganado", 0.5))
HAND_MOVE = "demo: moved by the agent"
# Of the visits not followed up, this share is still to come (the rest were missed).
UPCOMING_SHARE = 0.5


def simulate_sales(url: str, brokers: list[Broker], seed: int) -> int:
    """Book and hold visits for some ready leads, as the brokers' agents would, so the demo's calendar, appointment
    rates and funnel (down to ganado) have something in them.

    A lead that gets a visit has it booked through the appointments core (so the stage moves are the visit's):
    followed up → a visit in the past days, held (completed → seguimiento); not followed up → either a visit still
    to come in the broker's free slots, or a past one missed (no-show). A deal is a move by hand. Each lead's luck
    is its own (a generator seeded by the lead), drawn once: only leads still in potencial are drawn, so a rerun
    moves nobody. Returns the stage steps made."""
    moved = 0
    now = datetime.now(UTC)
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_LEADS,))
        cur.execute("""SELECT s.broker_id, s.lead_id FROM leadflow.lead_stages s WHERE s.broker_id = ANY(%s)
                       AND s.stage = 'potencial'
                       AND NOT EXISTS (SELECT 1 FROM leadflow.stage_events e WHERE e.lead_id = s.lead_id
                                       AND e.reason = %s)
                       AND NOT EXISTS (SELECT 1 FROM leadflow.appointments a WHERE a.lead_id = s.lead_id)
                       ORDER BY s.lead_id""", ([b.broker_id for b in brokers], HAND_MOVE))
        past: Counter[int] = Counter()  # visits placed in the past per broker: each gets an hour of its own
        for broker_id, lead_id in cur.fetchall():
            rng = random.Random(f"{seed}:{lead_id}")
            reached: list[str] = []
            for stage, share in SALES_STEPS:  # each step only for a lead that took the one before
                if rng.random() >= share:
                    break
                reached.append(stage)
            if not reached:
                continue
            held = "seguimiento" in reached
            if not held and rng.random() < UPCOMING_SHARE:
                slots = appointments.available(cur, broker_id, now)
                if not slots:
                    continue
                slot = slots[rng.randrange(min(len(slots), 40))]
                booked = appointments.book(cur, broker_id, lead_id, slot, now, source="person", actor="system")
                moved += isinstance(booked, appointments.Appointment)
                continue
            # A visit some days ago at 10:00–17:00 in the broker's timezone, one hour apart from the others.
            _, timezone = appointments.broker_rules(cur, broker_id)
            n = past[broker_id]
            past[broker_id] += 1
            day = (now.astimezone(ZoneInfo(timezone)) - timedelta(days=2 + n // 8)).date()
            start = datetime.combine(day, clock_time(10 + n % 8), ZoneInfo(timezone))
            visit = appointments.book(cur, broker_id, lead_id, Slot(start, start + timedelta(hours=1), (None,)),
                                      start - timedelta(days=2), source="person", actor="system", check_free=False)
            if not isinstance(visit, appointments.Appointment):
                continue
            moved += 1
            appointments.change_status(cur, broker_id, visit.appointment_id, "completed" if held else "no_show", now,
                                       actor="system", note="demo")
            moved += held
            if "ganado" in reached:
                move_lead_forward(cur, broker_id, lead_id, "ganado", DEFAULT_PIPELINE, now, HAND_MOVE, automatic=False)
                moved += 1
    return moved


def run_demo(settings: Settings, contacts_per_broker: int = 300, seed: int = 7) -> dict[str, Any]:
    from dagster import DagsterInstance

    from ingest_api.app import create_app
    from leadflow.demo.conversations import print_transcripts, run_conversations
    from pipelines.definitions import defs
    from pipelines.inprocess import QUIET, drain

    # The demo sends malformed payloads on purpose; the summary counts their dead letters instead.
    logging.getLogger("ingest_api.intake").setLevel(logging.ERROR)
    brokers = register_demo_brokers(settings.database_url)
    hooks = generate([(b.broker_id, b.country) for b in brokers], contacts_per_broker, seed=seed)
    by_id = {b.broker_id: b for b in brokers}
    deliveries = [(by_id[hook.broker_id], hook.channel, hook.payload) for hook in hooks]

    started = time.perf_counter()
    with BackgroundServer(create_app(settings)) as server:
        print(f"ingest API listening at {server.url}; sending {len(deliveries)} webhooks …")
        codes: Counter[int] = asyncio.run(send_all(server.url, deliveries))
        sent_s = time.perf_counter() - started
        print(f"  answers: {dict(sorted(codes.items()))} in {sent_s:.1f}s "
              f"({len(deliveries) / max(sent_s, 1e-9):.0f} webhooks/s)")
        print("the lead agent answers a few people live (through the webhooks; replies to a stand-in provider):")
        transcripts = run_conversations(settings, brokers, server.url)
    print_transcripts(transcripts)

    instance = DagsterInstance.get()
    started = time.perf_counter()
    outcomes = drain(defs, instance)
    runs = [k for o in outcomes for k in o.run_keys]
    failed = [k for o in outcomes for k in o.failed]
    landed: Counter[str] = Counter()
    for outcome in outcomes:
        landed.update(outcome.landed)
    print(f"sensor ticks: {len(outcomes)}, landing runs: {len(runs)} succeeded, {len(failed)} failed "
          f"({time.perf_counter() - started:.1f}s): {landed['messages_landed']} new messages, "
          f"{landed['statuses_landed']} statuses, {landed['dead_letters_landed']} dead letters, "
          f"{landed['duplicates_absorbed']} duplicates absorbed")
    if failed:
        raise RuntimeError(f"landing runs failed: {failed}; see the Dagster run logs (dagster dev -w workspace.yaml)")

    print(f"agents booked and held visits and closed deals: {simulate_sales(settings.database_url, brokers, seed)} "
          "stage steps (see the Calendario page under `make up`)")
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("""SELECT b.slug, a.status, count(*) FROM leadflow.appointments a JOIN leadflow.brokers b
                       USING (broker_id) WHERE a.broker_id = ANY(%s) GROUP BY 1, 2 ORDER BY 1, 2""",
                    ([b.broker_id for b in brokers],))
        visits: dict[str, dict[str, int]] = {}
        for slug, status, count in cur.fetchall():
            visits.setdefault(slug, {})[status] = count
    for slug, statuses in visits.items():
        print(f"  visits of {slug}: " + ", ".join(f"{count} {status}" for status, count in statuses.items()))
    started = time.perf_counter()
    analytics = defs.resolve_job_def("analytics_job").execute_in_process(instance=instance, run_config=QUIET,
                                                                           raise_on_error=False)
    print(f"dbt build: {'ok' if analytics.success else 'FAILED'} ({time.perf_counter() - started:.1f}s)")
    if not analytics.success:
        raise RuntimeError("dbt build failed; see the run's logs in the Dagster UI")
    funnels = funnel_totals(settings.database_url, [b.broker_id for b in brokers])
    return {"codes": codes, "rows": summary(settings.database_url), "leads": lead_summary(settings.database_url),
            "funnels": {b.slug: funnels[b.broker_id] for b in brokers}}

