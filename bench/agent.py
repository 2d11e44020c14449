"""The lead agent under load: reply latency and throughput, against baselines measured in the same run.

- Latency: simulated leads write through the real ingest API (signed WhatsApp webhooks, in its own
  process) to ``leadflow agent run`` (its own process, default settings: the 1.2 s burst window
  included); each lead waits for the reply, then writes again. Measured from the webhook's 200 to
  the fake WhatsApp API receiving the reply: p50/p95/p99, replies lost or doubled, and the agent's
  peak memory (with its qualifier worker). Once on the offline policy, once with a fake LLM that takes
  800 ms per call. Both fakes answer from processes of their own, as the real APIs would: in the
  bench's process they waited on the load generator's threads, and the bench charged that to the agent.
- Throughput: replies/s of the agent over a topic already holding one message per contact, against
  a bare consumer that reads the same topic and posts a fixed text to the same fake API with the
  same number of workers (LEADFLOW_AGENT_WORKERS; both measured from their first reply to their last).

Sizes: LEADFLOW_BENCH_AGENT_LEADS (500), LEADFLOW_BENCH_AGENT_TURNS (3), LEADFLOW_BENCH_AGENT_CONTACTS (3000);
LEADFLOW_BENCH_AGENT_MEMBERS (1): agent processes sharing the partitions in the latency runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
WA_TOKEN = "wa-token-not-a-secret"
COMUNAS = ("ñuñoa", "providencia", "las condes", "la florida", "maipú", "san miguel", "vitacura", "macul")


def _text(lead: int, turn: int) -> str:
    """Turn ``turn`` of lead ``lead``: every lead's conversation is its own (an e-mail, a budget), as real
    ones are, so nothing the agent remembers per conversation answers for another lead."""
    return (f"hola! busco depto para comprar en {COMUNAS[lead % len(COMUNAS)]}, mi correo es lead{lead}@example.com",
            f"{2 + lead % 3} dormitorios", f"hasta {3000 + lead} UF, tengo crédito preaprobado",
            "en 3 meses", "sí, el sábado me sirve")[turn % 5]


@dataclass
class FakeWhatsApp:
    """Receives replies in a process of its own (``bench.fake_whatsapp_process``), which stamps them as they
    arrive; here each stamp is recorded and wakes whoever waits for that recipient."""

    received: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    waiters: dict[str, threading.Event] = field(default_factory=dict)
    url: str = ""
    process: subprocess.Popen[str] | None = None

    def start(self) -> FakeWhatsApp:
        self.process = subprocess.Popen([sys.executable, "-m", "bench.fake_whatsapp_process"], cwd=ROOT,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.process.kill()
            raise RuntimeError(f"the fake WhatsApp did not start: {self.url!r}")
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()
        return self

    def _read(self, lines: Any) -> None:
        for line in lines:
            to, at = line.split()
            self.received[to].append(float(at))
            event = self.waiters.get(to)
            if event is not None:
                event.set()

    def stop(self) -> None:
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(30)


def _peak_rss_mb(pid: int) -> float:
    """Peak resident memory of the process and its children (the agent's qualifier worker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(c) for c in children.read_text().split()] if children.exists() else []
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024 + sum(_peak_rss_mb(kid) for kid in kids)
    return float("nan")


def _broker(database_url: str, settings: dict[str, Any], llm: dict[str, Any] | None = None) -> Any:
    from leadflow.agent.store import save_agent_settings
    from leadflow.brokers import SECRET_KINDS, add_broker, default_secret_env
    from leadflow.db.connection import transaction

    broker = add_broker(database_url, f"bench-{uuid.uuid4().hex[:6]}", name="Bench", country="CL",
                        timezone="America/Santiago")
    for kinds in SECRET_KINDS.values():
        for kind in kinds:
            os.environ[broker.secret_env_name(kind)] = secrets.token_urlsafe(16)
    os.environ[default_secret_env(broker.slug, "whatsapp_access_token")] = WA_TOKEN
    os.environ[default_secret_env(broker.slug, "whatsapp_phone_number_id")] = "1098765"
    save_agent_settings(database_url, broker.slug, {"enabled": True, "policy": "llm" if llm else "offline",
                                                    "max_replies_per_hour": 200, **settings})
    if llm:
        with transaction(database_url) as conn, conn.cursor() as cur:
            cur.execute("UPDATE leadflow.broker_settings SET llm = %s WHERE broker_id = %s",
                        (json.dumps(llm), broker.broker_id))
    return broker


def _agent_process(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(Path(sys.executable).with_name("leadflow")), "agent", "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _whatsapp(broker: Any, phone: str, text: str, n: int) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp", "metadata": {"phone_number_id": "1098765"},
            "contacts": [{"profile": {"name": f"Lead {phone[-4:]}"}, "wa_id": phone}],
            "messages": [{"from": phone, "id": f"wamid.in{n}", "timestamp": str(int(datetime.now(UTC).timestamp())),
                          "type": "text", "text": {"body": text}}]}}]}]}


def _conversations(ingest_url: str, broker: Any, fake: FakeWhatsApp, leads: int, turns: int,
                   prefix: str) -> tuple[list[float], int, int]:
    """Every lead writes ``turns`` times, each after the previous reply; latencies (s), lost, doubled."""
    from leadflow.demo.webhooks import signed

    phones = [f"56{prefix}{i:06d}" for i in range(leads)]
    for phone in phones:
        fake.waiters[phone] = threading.Event()
    latencies: list[float] = []
    lost = 0
    counter = iter(range(10**9))

    async def lead(client: httpx.AsyncClient, number: int, phone: str) -> None:
        nonlocal lost
        for turn in range(turns):
            event = fake.waiters[phone]
            event.clear()
            path, headers, body = signed("whatsapp", broker, _whatsapp(broker, phone, _text(number, turn),
                                                                       next(counter)))
            response = await client.post(path, content=body, headers=headers)
            answered = time.monotonic()
            if response.status_code != 200:
                raise RuntimeError(f"ingest answered {response.status_code}: {response.text}")
            got = await asyncio.get_running_loop().run_in_executor(None, event.wait, 30.0)
            if not got:
                lost += 1
                return
            latencies.append(fake.received[phone][-1] - answered)
            await asyncio.sleep(0.3)  # a person reads before answering

    async def main() -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=ingest_url, timeout=30, limits=limits) as client:
            await asyncio.gather(*(lead(client, i, phone) for i, phone in enumerate(phones)))

    asyncio.get_event_loop_policy().new_event_loop().run_until_complete(_with_executor(main))
    time.sleep(2.0)  # a doubled reply would come by now
    doubled = sum(max(0, len(fake.received[p]) - turns) for p in phones)
    return latencies, lost, doubled


async def _with_executor(main: Any) -> None:
    # Waiting for replies blocks a thread per lead: give the loop enough of them.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=600))
    await main()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def bench_agent_latency(settings: Any, leads: int, turns: int, llm_ms: int | None = None) -> None:
    from bench import fake_llm_process
    from bench.loadgen import start_server
    from leadflow.config import Topics, child_process_environment
    from leadflow.kafka import ensure_topics
    from leadflow.services.ports import free_port

    topics = Topics(f"bench{uuid.uuid4().hex[:6]}")
    ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_partitions)
    fake = FakeWhatsApp().start()
    llm_fake: subprocess.Popen[str] | None = None
    llm = None
    if llm_ms is not None:
        llm_fake, llm_url = fake_llm_process.start(llm_ms, leads * turns + 50)
        os.environ["LEADFLOW_OPENAI_API_KEY"] = "bench-key-not-a-secret"
        os.environ["LEADFLOW_OPENAI_BASE_URL"] = llm_url + "/v1"
        llm = {"provider": "openai", "model": "gpt-4o-mini"}
    broker = _broker(settings.database_url, {}, llm)
    env = {**child_process_environment(settings.model_copy(update={
        "kafka_topic_prefix": topics.prefix, "whatsapp_api_url": fake.url})),
        }
    port = free_port()
    ingest = start_server([sys.executable, "-m", "uvicorn", "--factory", "ingest_api.app:create_app", "--port",
                           str(port), "--log-level", "warning", "--no-access-log"], env, port)
    members = int(os.environ.get("LEADFLOW_BENCH_AGENT_MEMBERS", "1"))
    agents = [_agent_process({**env, "LEADFLOW_AGENT_MEMBER": str(i), "LEADFLOW_AGENT_MEMBERS": str(members)})
              for i in range(members)]
    try:
        time.sleep(3.0)  # the agent assigns its partitions
        started = time.monotonic()
        latencies, lost, doubled = _conversations(f"http://127.0.0.1:{port}", broker, fake, leads, turns,
                                                  f"9{uuid.uuid4().int % 100:02d}")
        elapsed = time.monotonic() - started
        memory = sum(_peak_rss_mb(agent.pid) for agent in agents)
    finally:
        for agent in agents:
            agent.terminate()
        for agent in agents:
            agent.wait(30)
        ingest.terminate()
        ingest.wait(30)
        fake.stop()
        if llm_fake is not None:
            fake_llm_process.stop(llm_fake)
    target = 3.0 if llm_ms is not None else 2.0
    policy = f"fake LLM, {llm_ms} ms per call" if llm_ms is not None else "offline policy"
    print(f"\n== lead agent latency: {leads} leads x {turns} turns, concurrently, {policy} "
          f"(burst window {settings.agent_burst_ms} ms included; {members} agent process(es))")
    print(f"webhook 200 -> reply at the provider: p50 {statistics.median(latencies):.2f} s, "
          f"p95 {_percentile(latencies, 0.95):.2f} s, p99 {_percentile(latencies, 0.99):.2f} s "
          f"(target p95 < {target:.0f} s); replies {len(latencies)}, lost {lost}, doubled {doubled}; "
          f"{len(latencies) / elapsed:.0f} replies/s; agent peak memory {memory:.0f} MB")


def bench_agent_throughput(settings: Any, contacts: int) -> None:
    from leadflow.config import Topics, child_process_environment
    from leadflow.events import ChannelMessage, Contact
    from leadflow.kafka import (
        assign_from,
        consume,
        ensure_topics,
        make_consumer,
        make_producer,
        partitions_of,
        produce_all,
    )

    fake = FakeWhatsApp().start()
    broker = _broker(settings.database_url, {})
    now = datetime.now(UTC)
    results: dict[str, float] = {}
    try:
        for name in ("bare consumer (baseline)", "lead agent"):
            topics = Topics(f"bench{uuid.uuid4().hex[:6]}")
            ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_partitions)
            prefix = f"{len(results) + 1}{uuid.uuid4().int % 10}"
            phones = [f"57{prefix}{i:07d}" for i in range(contacts)]
            items = []
            for i, phone in enumerate(phones):
                message = ChannelMessage.build(
                    broker_id=broker.broker_id, broker_slug=broker.slug, channel="whatsapp",
                    provider_message_id=f"wamid.t{prefix}{i}", contact=Contact(channel_user_id=phone),
                    text=_text(i, 0), sent_at=now, received_at=now)
                items.append((message.kafka_key(), message.model_dump_json().encode()))
            produce_all(make_producer(settings.kafka_bootstrap_servers, linger_ms=20), topics.messages, items)
            if name.startswith("bare"):
                consumer = make_consumer(settings.kafka_bootstrap_servers)
                assign_from(consumer, {(topics.messages, p): 0
                                       for p in partitions_of(consumer, topics.messages)})
                workers = settings.agent_workers  # the same concurrency as the agent's
                with httpx.Client(timeout=10, limits=httpx.Limits(max_connections=workers)) as client, \
                        ThreadPoolExecutor(workers) as pool:
                    def post(value: bytes | None) -> None:
                        event = json.loads(value or b"{}")
                        client.post(f"{fake.url}/1098765/messages", headers={"Authorization": f"Bearer {WA_TOKEN}"},
                                    json={"messaging_product": "whatsapp", "to": event["contact"]["channel_user_id"],
                                          "type": "text", "text": {"body": "Hola, ¿en qué comuna buscas?"}})
                    read = 0
                    while read < contacts:
                        records = consume(consumer, 1000, 1.0)
                        read += len(records)
                        list(pool.map(post, [r.value for r in records]))
                consumer.close()
            else:
                env = {**child_process_environment(settings.model_copy(update={
                    "kafka_topic_prefix": topics.prefix, "whatsapp_api_url": fake.url})),
                    "LEADFLOW_AGENT_MAX_WAIT_MS": "60000"}
                agent = _agent_process(env)
                deadline = time.monotonic() + 600
                while sum(1 for p in phones if fake.received.get(p)) < contacts and time.monotonic() < deadline:
                    time.sleep(0.2)
                agent.terminate()
                agent.wait(30)
            stamps = sorted(t for p in phones for t in fake.received.get(p, []))
            if len(stamps) < contacts:
                raise RuntimeError(f"{name}: {len(stamps)} of {contacts} replies arrived")
            results[name] = (len(stamps) - 1) / max(stamps[-1] - stamps[0], 1e-9)
    finally:
        fake.stop()
    bare, ours = results["bare consumer (baseline)"], results["lead agent"]
    print(f"\n== lead agent throughput: {contacts:,} contacts, one message each, already on the topic, "
          f"{settings.agent_workers} workers each, first reply to last")
    print(f"{'bare consumer, fixed text (baseline)':40s} {bare:9,.0f} replies/s")
    print(f"{'lead agent (history, decide, claim, send)':40s} {ours:9,.0f} replies/s   ratio {ours / bare:.2f} "
          "(target >= 0.50)")


def bench_agent(settings: Any) -> None:
    leads = int(os.environ.get("LEADFLOW_BENCH_AGENT_LEADS", "500"))
    turns = int(os.environ.get("LEADFLOW_BENCH_AGENT_TURNS", "3"))
    bench_agent_latency(settings, leads, turns)
    bench_agent_latency(settings, leads, turns, llm_ms=800)
    bench_agent_throughput(settings, int(os.environ.get("LEADFLOW_BENCH_AGENT_CONTACTS", "3000")))
