"""Campaign targeting over many leads and campaigns, and dispatcher throughput against local fakes.

Targeting (no services): LEADFLOW_BENCH_LEADS lead profiles (default 1,000,000) over 10 brokers
and 100 active campaigns (10 per broker: score thresholds, inactivity, segments, with a delay-free
first step), one batch at a fixed moment: enrollment of every triggered lead and a decision for
every due step. Baseline in the same run: one polars filter per campaign over the profiles (what
merely finding the triggered leads costs).

Dispatch (real PostgreSQL, Kafka and HTTP): commands through the real dispatcher and clients to the
local fake Telegram/WhatsApp servers; baseline: the same HTTP requests sent by a bare httpx loop.
"""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime, timedelta

import polars as pl

from leadflow.campaigns.definitions import CampaignDefinition
from leadflow.campaigns.targeting import Broker, Campaign, decide, enroll

NOW = datetime(2026, 11, 26, 15, tzinfo=UTC)  # noon in Santiago


def profiles(count: int, brokers: int = 10, seed: int = 3) -> pl.DataFrame:
    rnd = random.Random(seed)
    places = ["providencia", "ñuñoa", "las condes", "macul", "la florida", "vitacura", "santiago centro"]
    rows = {
        "lead_id": list(range(1, count + 1)),
        "broker_id": [i % brokers + 1 for i in range(count)],
        "broker_slug": [f"broker-{i % brokers + 1}" for i in range(count)],
        "name": [rnd.choice(["Camila Rojas", "Tomás Soto", None, "Ana Pérez"]) for _ in range(count)],
        "phone_e164": [f"+569{rnd.randrange(10**7, 10**8)}" for _ in range(count)],
        "score": [rnd.randrange(0, 101) for _ in range(count)],
        "temperature": [rnd.choice(["cold", "warm", "hot"]) for _ in range(count)],
        "stage": [rnd.choice(["entrada", "perfilamiento", "potencial"]) for _ in range(count)],
        "operation": [rnd.choice(["buy", "rent", None]) for _ in range(count)],
        "budget_max": [float(rnd.randrange(1000, 12000)) for _ in range(count)],
        "budget_currency": ["UF"] * count,
        "locations": [[rnd.choice(places)] for _ in range(count)],
        "bedrooms_min": [rnd.choice([1, 2, 3, None]) for _ in range(count)],
        "tags": [[] if rnd.random() < 0.9 else ["vip"] for _ in range(count)],
        "opted_out": [rnd.random() < 0.03 for _ in range(count)],
        "days_silent": [rnd.random() * 60 for _ in range(count)],
        "wa_id": [f"569{rnd.randrange(10**7, 10**8)}" if rnd.random() < 0.7 else None for _ in range(count)],
        "telegram_chat_id": [str(rnd.randrange(10**6, 10**9)) if rnd.random() < 0.4 else None for _ in range(count)],
        "summary": [None] * count,
    }
    frame = pl.DataFrame(rows, schema_overrides={"tags": pl.List(pl.String), "telegram_chat_id": pl.String,
                                                  "summary": pl.String})
    return frame.with_columns(
        last_whatsapp_at=pl.lit(NOW) - pl.duration(hours=pl.col("days_silent") * 24),
        stage_entered_at=pl.lit(NOW - timedelta(days=3)),
    )


def campaigns(brokers: int = 10, per_broker: int = 10) -> list[Campaign]:
    step = {"action": "message", "template": "Hola {{first_name}}, ¿vemos opciones en {{location}} hasta {{budget}}?",
            "whatsapp_template": {"name": "seguimiento", "language": "es", "parameters": ["{{first_name}}"]}}
    triggers = [{"type": "score_threshold", "score_min": 97}, {"type": "inactivity", "days": 59},
                {"type": "segment", "segment": "vip"}]
    out = []
    for b in range(1, brokers + 1):
        for k in range(per_broker):
            definition = CampaignDefinition.model_validate({"trigger": triggers[k % 3], "steps": [
                step, {**step, "delay_hours": 48}]})
            out.append(Campaign(b * 100 + k, b, f"c{k}", definition, NOW - timedelta(days=1)))
    return out


def bench_targeting() -> None:
    count = int(os.environ.get("LEADFLOW_BENCH_LEADS", "1000000"))
    leads = profiles(count)
    all_campaigns = campaigns()
    members = leads.filter(pl.col("tags").list.contains("vip")).select(
        "broker_id", pl.lit("vip").alias("segment"), "lead_id")
    nobody = pl.DataFrame(schema={"campaign_id": pl.Int64, "lead_id": pl.Int64})
    brokers = {b: Broker(b, f"Broker {b}", "America/Santiago") for b in range(1, 11)}

    started = time.perf_counter()
    for c in all_campaigns:
        leads.filter((pl.col("broker_id") == c.broker_id) & (pl.col("score") >= 97)).height  # noqa: B018
    floor = time.perf_counter() - started

    started = time.perf_counter()
    enrolled = enroll(all_campaigns, leads, members, nobody, NOW)
    enrolled_s = time.perf_counter() - started
    due = enrolled.select("campaign_id", "lead_id", "next_step")
    recent = pl.DataFrame(schema={"lead_id": pl.Int64, "sends": pl.Int64})
    started = time.perf_counter()
    decisions = decide(due, leads, {c.campaign_id: c for c in all_campaigns}, brokers, recent, NOW)
    decided_s = time.perf_counter() - started
    total = enrolled_s + decided_s
    sends = decisions.filter(pl.col("decision") == "send").height
    print(f"\n== campaign targeting: {count:,} leads, {len(all_campaigns)} campaigns, one batch")
    print(f"{'find triggered leads (one filter each)':40s} {floor:8.2f} s   (floor)")
    print(f"{'enroll':40s} {enrolled_s:8.2f} s   {enrolled.height:,} enrollments")
    print(f"{'decide every due step':40s} {decided_s:8.2f} s   {decisions.height:,} decisions, {sends:,} sends")
    print(f"{'batch':40s} {total:8.2f} s   (target < 30 s); ratio {total / floor:.0f}x the floor")


def bench_dispatch(database_url: str, bootstrap: str, count: int) -> None:
    """Sends/s through the real dispatcher (Kafka commands, claims in PostgreSQL, httpx to the fake
    WhatsApp API) vs a bare httpx loop posting the same bodies to the same fake."""

    import httpx

    from bench.streams import whatsapp_sends
    from leadflow.outbound.dispatcher import dispatch
    from leadflow.outbound.senders import WhatsAppSender
    from tests.fake_channels import FakeChannels

    topics, commands = whatsapp_sends(database_url, bootstrap, count, NOW)
    fake = FakeChannels().start()
    try:
        sender = WhatsAppSender(fake.url, clock=lambda: NOW)
        started = time.perf_counter()
        result = dispatch(database_url, bootstrap, topics, {"whatsapp": sender}, clock=lambda: NOW)
        ours = time.perf_counter() - started
        assert result.sent == count, result
        bodies = [sender.message(c) for c in commands]
        with httpx.Client(timeout=10) as client:
            started = time.perf_counter()
            for body in bodies:
                client.post(f"{fake.url}/1098765/messages", json=body,
                            headers={"Authorization": "Bearer wa-token-not-a-secret"})
            bare = time.perf_counter() - started
    finally:
        fake.stop()
    print(f"\n== dispatch: {count:,} WhatsApp sends through the dispatcher to the local fake API")
    print(f"{'bare httpx loop, same requests':40s} {count / bare:11,.0f} sends/s   (baseline)")
    print(f"{'dispatcher (read, claim, send, record)':40s} {count / ours:11,.0f} sends/s   "
          f"ratio {bare / ours:.2f} of the baseline")
    print("   (Telegram sends are held to its limits by design: 30/s overall, 1/s per chat)")


def bench_batch(database_url: str, bootstrap: str, count: int) -> None:
    """One whole campaign batch on PostgreSQL and Kafka: load the profiles of ``count`` leads (10 brokers),
    enroll and decide for 100 campaigns, write every decision and produce every command."""
    import uuid

    from leadflow.brokers import add_broker
    from leadflow.campaigns.store import save_campaign, target_campaigns
    from leadflow.config import Topics
    from leadflow.db.connection import transaction
    from leadflow.kafka import ensure_topics, make_producer, produce_all

    run = uuid.uuid4().hex[:6]
    brokers = [add_broker(database_url, f"batch-{run}-{b}", name=f"Batch {b}", country="CL",
                          timezone="America/Santiago") for b in range(10)]
    ids = [b.broker_id for b in brokers]
    started = time.perf_counter()
    with transaction(database_url) as conn, conn.cursor() as cur:
        cur.execute("""
            CREATE TEMP TABLE seed ON COMMIT DROP AS
            SELECT nextval('leadflow.lead_id_seq') AS lead_id, (%(ids)s::bigint[])[1 + g %% 10] AS broker_id, g
            FROM generate_series(1, %(count)s) AS g""", {"ids": ids, "count": count})
        cur.execute("""INSERT INTO leadflow.leads (lead_id, broker_id, display_name, phone_e164, channels,
                                                   message_count, first_message_at, last_message_at)
                       SELECT lead_id, broker_id, 'Lead ' || g, '+569' || (10000000 + g), '{whatsapp}', 1,
                              %(now)s - (g %% 60) * interval '1 day', %(now)s - (g %% 60) * interval '1 day'
                       FROM seed""", {"now": NOW})
        cur.execute("""
            WITH m AS (
                INSERT INTO leadflow.raw_messages (broker_id, event_id, channel, provider_message_id,
                    contact_channel_id, contact_phone, direction, message_type, body, sent_at, received_at,
                    schema_version, payload, kafka_topic, kafka_partition, kafka_offset)
                SELECT broker_id, gen_random_uuid(), 'whatsapp', 'wamid.seed' || g, '569' || (10000000 + g),
                       '+569' || (10000000 + g), 'inbound', 'text', 'hola, busco depto',
                       %(now)s - (g %% 60) * interval '1 day', %(now)s, 1, '{}'::jsonb, 'seed', 0, g
                FROM seed RETURNING message_id, broker_id, kafka_offset)
            INSERT INTO leadflow.message_leads (message_id, broker_id, lead_id)
            SELECT m.message_id, m.broker_id, s.lead_id FROM m JOIN seed s ON s.g = m.kafka_offset""", {"now": NOW})
        cur.execute("""INSERT INTO leadflow.lead_scores (lead_id, broker_id, score, temperature, breakdown,
                                                         financing_ready, scored_at)
                       SELECT lead_id, broker_id, g %% 101, CASE WHEN g %% 101 >= 70 THEN 'hot' WHEN g %% 101 >= 40
                              THEN 'warm' ELSE 'cold' END, '{}'::jsonb, false, %(now)s FROM seed""", {"now": NOW})
        cur.execute("""INSERT INTO leadflow.lead_qualifications (lead_id, broker_id, qualifier, schema_version,
                           conversation_hash, operation, budget_max, budget_currency, locations, opted_out)
                       SELECT lead_id, broker_id, 'rules', 1, md5(g::text), CASE WHEN g %% 2 = 0 THEN 'buy' ELSE 'rent'
                              END, 1000 + g %% 9000, 'UF', ARRAY['ñuñoa'], g %% 33 = 0 FROM seed""", {})
        cur.execute("""INSERT INTO leadflow.lead_stages (lead_id, broker_id, stage, entered_at, evaluated_at)
                       SELECT lead_id, broker_id, 'entrada', %(now)s - interval '3 days', %(now)s FROM seed""",
                    {"now": NOW})
    seeded = time.perf_counter() - started
    step = {"action": "message", "template": "Hola {{first_name}}, ¿vemos opciones en {{location}} hasta {{budget}}?",
            "whatsapp_template": {"name": "seguimiento", "language": "es", "parameters": ["{{first_name}}"]}}
    triggers = [{"type": "score_threshold", "score_min": 97}, {"type": "inactivity", "days": 57},
                {"type": "score_threshold", "score_min": 99}]
    for broker in brokers:
        for k in range(10):
            save_campaign(database_url, broker.slug, f"c{k}", {"trigger": triggers[k % 3], "steps": [
                step, {**step, "delay_hours": 48}]}, status="active")
    topics = Topics(f"batch{run}")
    ensure_topics(bootstrap, topics.all(), 3)
    producer = make_producer(bootstrap)

    def publish(commands: list[tuple[bytes, bytes]]) -> None:
        produce_all(producer, topics.outbound, commands)

    print(f"\n== campaign batch on PostgreSQL + Kafka: {count:,} leads, 100 campaigns (seeded in {seeded:.0f} s)")
    # First batch: every triggered lead enrolled and its first step sent. Two days later: the second
    # step falls due for all of them at once (enrollments already in the table move on).
    for label, moment in (("first batch (enroll + first step)", NOW), ("second step due, 49 h later",
                                                                       NOW + timedelta(hours=49))):
        started = time.perf_counter()
        result = target_campaigns(database_url, moment, publish)
        elapsed = time.perf_counter() - started
        print(f"{label:52s} {elapsed:8.2f} s   (target < 30 s): enrolled {result.enrolled:,}, to send "
              f"{result.sent:,}, deferred {sum(result.deferred.values()):,}, skipped {sum(result.skipped.values()):,}")
