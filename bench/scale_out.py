"""Scale-out by partitions: landing rows/s and dispatcher sends/s with one process, then two.

Both runs of a pair read the same amount of fresh data; the processes are started and warmed up
first and begin together, and the figure is the work done over the time from that start to the
last one's end. The baseline is the one-process run measured here, so the ratio reads as "how
much a second process adds on this machine" (2 cores, shared with PostgreSQL, Kafka and the fake
WhatsApp API: 2.0 is out of reach by construction).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.synchronize
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)


def _land_worker(database_url: str, bootstrap: str, prefix: str, ready: Any, go: Any, out: Any) -> None:
    from leadflow.config import Topics
    from leadflow.landing import land

    ready.release()
    go.wait()
    started = time.time()
    result = land(database_url, bootstrap, Topics(prefix), share_wait_s=2.0)
    out.put((started, time.time(), result.messages_landed))


def _dispatch_worker(database_url: str, bootstrap: str, prefix: str, ready: Any, go: Any, out: Any,
                     fake_url: str = "") -> None:
    from leadflow.config import Topics
    from leadflow.outbound.dispatcher import dispatch
    from leadflow.outbound.senders import WhatsAppSender

    sender = WhatsAppSender(fake_url, clock=lambda: NOW)
    ready.release()
    go.wait()
    started = time.time()
    result = dispatch(database_url, bootstrap, Topics(prefix), {"whatsapp": sender}, clock=lambda: NOW)
    out.put((started, time.time(), result.sent))


def _run(worker: Any, processes: int, *args: Any, **kwargs: Any) -> tuple[float, int]:
    """(seconds from the common start to the last end, work done by all)."""
    context = multiprocessing.get_context("spawn")
    ready: multiprocessing.synchronize.Semaphore = context.Semaphore(0)
    go: multiprocessing.synchronize.Event = context.Event()
    out: Any = context.Queue()
    children = [context.Process(target=worker, args=(*args, ready, go, out), kwargs=kwargs)
                for _ in range(processes)]
    for child in children:
        child.start()
    for _ in children:
        ready.acquire(timeout=120)
    go.set()
    results = [out.get(timeout=600) for _ in children]
    for child in children:
        child.join(timeout=60)
    return max(end for _, end, _ in results) - min(start for start, _, _ in results), sum(n for _, _, n in results)


def _produce_messages(database_url: str, bootstrap: str, rows: int) -> str:
    from leadflow.brokers import add_broker
    from leadflow.config import Topics
    from leadflow.events import ChannelMessage, Contact
    from leadflow.kafka import ensure_topics, make_producer, produce_all

    topics = Topics(f"bench{uuid.uuid4().hex[:6]}")
    ensure_topics(bootstrap, topics.all(), 6)
    broker = add_broker(database_url, f"bench-{uuid.uuid4().hex[:6]}", name="Bench", country="CL",
                        timezone="America/Santiago")
    items = []
    for i in range(rows):
        contact = f"569{i % 5000:08d}"
        event = ChannelMessage.build(
            broker_id=broker.broker_id, broker_slug=broker.slug, channel="whatsapp", provider_message_id=f"m{i}",
            conversation_id=contact, contact=Contact(channel_user_id=contact, phone_e164=f"+{contact}"),
            text="Hola, busco depto 2d2b en Ñuñoa, presupuesto 5.200 UF, tengo crédito preaprobado",
            sent_at=NOW + timedelta(seconds=i), raw={"from": contact, "id": f"m{i}", "type": "text"})
        items.append((event.kafka_key(), event.model_dump_json().encode()))
    produce_all(make_producer(bootstrap, linger_ms=20), topics.messages, items)
    return topics.prefix


def _seed_sends(database_url: str, bootstrap: str, count: int) -> str:
    from leadflow.brokers import add_broker, default_secret_env
    from leadflow.config import Topics
    from leadflow.kafka import ensure_topics
    from tests.outbound_world import WHATSAPP_NUMBER_ID, WHATSAPP_TOKEN, seed_whatsapp_sends

    broker = add_broker(database_url, f"bench-{uuid.uuid4().hex[:6]}", name="Bench", country="CL",
                        timezone="America/Santiago")
    # Inherited by the spawned dispatchers.
    os.environ[default_secret_env(broker.slug, "whatsapp_access_token")] = WHATSAPP_TOKEN
    os.environ[default_secret_env(broker.slug, "whatsapp_phone_number_id")] = WHATSAPP_NUMBER_ID
    topics = Topics(f"bench{uuid.uuid4().hex[:6]}")
    ensure_topics(bootstrap, topics.all(), 6)
    seed_whatsapp_sends(database_url, bootstrap, topics, broker, count, NOW)
    return topics.prefix


@contextlib.contextmanager
def _fake_whatsapp() -> Iterator[str]:
    """bench.fake_whatsapp_process, its per-reply lines read and dropped (a full pipe would stall it)."""
    process = subprocess.Popen([sys.executable, "-m", "bench.fake_whatsapp_process"], cwd=ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdin is not None
    url = process.stdout.readline().strip()
    threading.Thread(target=process.stdout.read, daemon=True).start()
    try:
        yield url
    finally:
        process.stdin.close()
        process.wait(timeout=30)


def bench_scale_out(database_url: str, bootstrap: str, rows: int, sends: int) -> None:
    print(f"\n== scale-out by partitions: 1 process, then 2 ({rows:,} messages to land, {sends:,} sends)")
    rates: dict[str, dict[int, float]] = {"landing": {}, "dispatcher": {}}
    for processes in (1, 2):
        prefix = _produce_messages(database_url, bootstrap, rows)
        seconds, landed = _run(_land_worker, processes, database_url, bootstrap, prefix)
        assert landed == rows, (landed, rows)
        rates["landing"][processes] = landed / seconds
    # The fake WhatsApp answers from a process of its own, so it is not the dispatchers' bottleneck.
    with _fake_whatsapp() as fake_url:
        for processes in (1, 2):
            prefix = _seed_sends(database_url, bootstrap, sends)
            seconds, sent = _run(_dispatch_worker, processes, database_url, bootstrap, prefix, fake_url=fake_url)
            assert sent == sends, (sent, sends)
            rates["dispatcher"][processes] = sent / seconds
    for part, unit in (("landing", "rows/s"), ("dispatcher", "sends/s")):
        one, two = rates[part][1], rates[part][2]
        print(f"{part + ', 1 process (baseline)':40s} {one:11,.0f} {unit}")
        print(f"{part + ', 2 processes':40s} {two:11,.0f} {unit}   ratio {two / one:.2f}")
