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
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
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
    from bench.streams import inbound_messages, whatsapp_sends

    print(f"\n== scale-out by partitions: 1 process, then 2 ({rows:,} messages to land, {sends:,} sends)")
    rates: dict[str, dict[int, float]] = {"landing": {}, "dispatcher": {}}
    for processes in (1, 2):
        topics, _broker = inbound_messages(database_url, bootstrap, rows)
        seconds, landed = _run(_land_worker, processes, database_url, bootstrap, topics.prefix)
        assert landed == rows, (landed, rows)
        rates["landing"][processes] = landed / seconds
    # The fake WhatsApp answers from a process of its own, so it is not the dispatchers' bottleneck.
    with _fake_whatsapp() as fake_url:
        for processes in (1, 2):
            topics, _commands = whatsapp_sends(database_url, bootstrap, sends, NOW, partitions=6)
            seconds, sent = _run(_dispatch_worker, processes, database_url, bootstrap, topics.prefix,
                                 fake_url=fake_url)
            assert sent == sends, (sent, sends)
            rates["dispatcher"][processes] = sent / seconds
    for part, unit in (("landing", "rows/s"), ("dispatcher", "sends/s")):
        one, two = rates[part][1], rates[part][2]
        print(f"{part + ', 1 process (baseline)':40s} {one:11,.0f} {unit}")
        print(f"{part + ', 2 processes':40s} {two:11,.0f} {unit}   ratio {two / one:.2f}")
