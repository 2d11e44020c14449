"""The fault suite (`make faults`, run by CI): nothing accepted is lost while each part of the system fails.

A steady stream of signed Telegram webhooks runs through the whole suite; an update not answered 200
is sent again later, as Telegram does. In turn: the ingest API is SIGKILLed, the landing is SIGKILLed,
PostgreSQL is stopped and started, the embedded Kafka (durable, on SeaweedFS) is SIGKILLed and
restarted, and a dispatcher is SIGKILLed in the middle of its sends. The stack runs in a state
directory of its own, started by `leadflow services up` as a user would, with its processes as the
CLI starts them; a small supervisor restarts the landing whenever it exits, as Kubernetes would.

At the end: every update answered 200 landed, once; nothing was answered 200 while Kafka was down
(the ingest API said 503, and the update was delivered again); every send went out at most once,
and a send whose fate the kill left unknown is kept as `sending`, never resent. The counts per fault
are printed (`pytest -s` or the CI log).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from leadflow.brokers import SECRET_KINDS, Broker, add_broker
from leadflow.config import ConfigurationError, Topics
from leadflow.db.connection import connect
from leadflow.demo.webhooks import signed
from leadflow.services import postgres as embedded_postgres
from leadflow.services.ports import free_port, wait_for_port
from tests.fake_channels import FakeChannels, Reply
from tests.outbound_world import WHATSAPP_NUMBER_ID, WHATSAPP_TOKEN, seed_whatsapp_sends
from tests.payloads import telegram_text

pytestmark = [pytest.mark.services, pytest.mark.faults]

ACK_TIMEOUT_S = 2.0  # the ingest API's wait for Kafka: short, so an outage of a few seconds shows as 503s
RATE = 60  # webhooks a second


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    ingest_port: int
    ingest: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "leadflow.cli", *args], env=self.env, capture_output=True,
                              text=True, timeout=180)
        assert done.returncode == 0, done.stderr

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.home / "services.json").read_text())
        return data

    @property
    def database_url(self) -> str:
        return str(self.state()["database_url"])

    @property
    def topics(self) -> Topics:
        return Topics(self.env["LEADFLOW_KAFKA_TOPIC_PREFIX"])

    def start_ingest(self) -> None:
        with (self.home / "ingest-api.log").open("a") as log:
            self.ingest = subprocess.Popen([sys.executable, "-m", "leadflow.cli", "ingest-api", "--port",
                                            str(self.ingest_port)], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        assert wait_for_port("127.0.0.1", self.ingest_port, timeout=60), "the ingest API did not listen"
        assert self.ingest.poll() is None, (self.home / "ingest-api.log").read_text()


class Supervisor(threading.Thread):
    """Keeps a process running (`leadflow land --follow`, `leadflow agent run`): restarted half a second after it
    exits, however it exits."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        super().__init__(daemon=True)
        self.env = env
        self.args = args
        # What each run said, for the failure report.
        self.log = Path(env["LEADFLOW_HOME"]) / f"{args[0]}.log"
        self.process: subprocess.Popen[str] | None = None
        self.exits: Counter[int] = Counter()
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stopping.is_set():
            with self.lock:
                if self.process is None or self.process.poll() is not None:
                    if self.process is not None:
                        self.exits[self.process.returncode] += 1
                    with self.log.open("a") as log:
                        self.process = subprocess.Popen([sys.executable, "-m", "leadflow.cli", *self.args],
                                                        env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True)
            self.stopping.wait(0.5)

    def kill(self) -> None:
        with self.lock:
            assert self.process is not None and self.process.poll() is None
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        self.stopping.set()
        self.join()
        with self.lock:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                self.process.wait(timeout=60)


@dataclass
class Traffic:
    """Signed webhooks at a steady rate from a few senders; what is not answered 200 is sent again."""

    url: str
    broker: Broker
    phase: str = "steady"
    accepted: set[int] = field(default_factory=set)
    answers: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    log: list[tuple[float, float, str]] = field(default_factory=list)  # start, end, answer
    retry: deque[int] = field(default_factory=deque)
    next_id: int = 1
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _take(self) -> int | None:
        with self.lock:
            if self.retry:
                return self.retry.popleft()
            if self.stopping.is_set():
                return None  # winding down: only what is owed is sent again
            self.next_id += 1
            return self.next_id - 1

    def _sender(self, senders: int) -> None:
        client = httpx.Client(timeout=30)
        while True:
            update = self._take()
            if update is None:
                if self.stopping.is_set():
                    return
                continue
            payload = telegram_text(update_id=update, text=f"hola, busco depto en Ñuñoa ({update})")
            payload["message"]["chat"]["id"] = payload["message"]["from"]["id"] = 7000 + update % 40
            payload["message"]["date"] = int(time.time())  # the agent leaves old messages unanswered
            path, headers, body = signed("telegram", self.broker, payload)
            started = time.monotonic()
            try:
                answer = str(client.post(self.url + path, content=body, headers=headers).status_code)
            except httpx.TransportError:
                answer = "no connection"
            ended = time.monotonic()
            with self.lock:
                self.answers[self.phase][answer] += 1
                self.log.append((started, ended, answer))
                if answer == "200":
                    self.accepted.add(update)
                else:
                    self.retry.append(update)
            # A refused connection comes back at once: pace it like the rest.
            time.sleep(max(senders / RATE - (ended - started), 0.0))

    @contextmanager
    def running(self, senders: int = 6) -> Iterator[None]:
        threads = [threading.Thread(target=self._sender, args=(senders,), daemon=True) for _ in range(senders)]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            self.stopping.set()
            for thread in threads:
                thread.join(timeout=120)



@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("faults") / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADFLOW_", "DAGSTER_HOME"))}
    env.update(LEADFLOW_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), LEADFLOW_KAFKA_STORAGE="s3",
               LEADFLOW_KAFKA_TOPIC_PREFIX=f"f{uuid.uuid4().hex[:8]}", LEADFLOW_KAFKA_PARTITIONS="3",
               LEADFLOW_INGEST_ACK_TIMEOUT_S=str(ACK_TIMEOUT_S))
    stack = Stack(home, env, 0)
    stack.cli("services", "up")
    stack.ingest_port = free_port()  # after the services took theirs
    try:
        yield stack
    finally:
        if stack.ingest is not None and stack.ingest.poll() is None:
            stack.ingest.kill()
            stack.ingest.wait()
        stack.cli("services", "down")


class _Listening(threading.Thread):
    """Polls a port until it refuses and then accepts a connection again; ``at`` is when it did (monotonic)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(daemon=True)
        self.host, self.port = host, port
        self.at: float | None = None

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def run(self) -> None:
        deadline = time.monotonic() + 120
        # First down (a SIGKILLed process may hold its socket for a moment), then up again.
        while self._accepts() and time.monotonic() < deadline:
            time.sleep(0.01)
        while time.monotonic() < deadline:
            if self._accepts():
                self.at = time.monotonic()
                return
            time.sleep(0.05)


def _until_listening(host: str, port: int) -> _Listening:
    watcher = _Listening(host, port)
    watcher.start()
    return watcher


def _landed(database_url: str, broker: Broker) -> list[str]:
    conn = connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT provider_message_id FROM leadflow.raw_messages WHERE broker_id = %s "
                        "AND direction = 'inbound'", (broker.broker_id,))
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def _wait(condition: Any, what: str, timeout_s: float = 90, context: Any = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what} ({context() if context else ''})"
        time.sleep(0.2)


def test_nothing_accepted_is_lost_while_each_part_fails(stack: Stack) -> None:
    slug = f"faults-{uuid.uuid4().hex[:6]}"
    broker = add_broker(stack.database_url, slug, name="Faults", country="CL", timezone="America/Santiago")
    for kinds in SECRET_KINDS.values():
        for kind in kinds:
            stack.env[broker.secret_env_name(kind)] = os.environ[broker.secret_env_name(kind)] = uuid.uuid4().hex
    stack.cli("agent", "settings", "--broker", slug, "--settings", '{"enabled": true}')
    stack.env[broker.secret_env_name("telegram_bot_token")] = f"{broker.broker_id}:tg-{uuid.uuid4().hex[:12]}"
    telegram = FakeChannels().start()
    stack.env["LEADFLOW_TELEGRAM_API_URL"] = telegram.url
    stack.start_ingest()
    lander = Supervisor(stack.env, "land", "--follow", "--batch-size", "200")
    lander.start()
    agent = Supervisor(stack.env, "agent", "run")
    agent.start()
    traffic = Traffic(f"http://127.0.0.1:{stack.ingest_port}", broker)
    landed_at: dict[str, int | str] = {}
    kafka_down: tuple[float, float] = (0.0, 0.0)

    def phase(name: str, seconds: float) -> None:
        traffic.phase = name
        time.sleep(seconds)
        try:
            landed_at[name] = len(_landed(stack.database_url, broker))
        except ConfigurationError:
            landed_at[name] = "PostgreSQL down"

    with traffic.running():
        phase("steady", 3)

        assert stack.ingest is not None
        stack.ingest.kill()
        stack.ingest.wait()
        phase("ingest API killed", 1.5)
        stack.start_ingest()
        phase("ingest API restarted", 2)

        _wait(lambda: len(_landed(stack.database_url, broker)) > int(landed_at["steady"]), "the landing to land",
              context=lambda: dict(traffic.answers))
        lander.kill()
        phase("landing killed (the supervisor restarts it)", 3)

        _wait(lambda: _replies(stack.database_url, broker)["sent"] > 0, "the agent to answer")
        agent.kill()
        phase("agent killed (the supervisor restarts it)", 4)

        embedded_postgres.stop(Path(stack.state()["postgres_data_dir"]))
        phase("PostgreSQL stopped", 3)
        stack.cli("services", "up")
        phase("PostgreSQL started again", 3)

        host, port = str(stack.state()["kafka_bootstrap_servers"]).split(",")[0].rsplit(":", 1)
        os.kill(int(stack.state()["kafka_pid"]), signal.SIGKILL)
        went = time.monotonic()
        phase("Kafka killed", 4)
        listening = _until_listening(host, int(port))
        stack.cli("services", "up")
        # Down until its port listens again, not until `services up` returns: that goes on waiting for other
        # things, and a webhook acknowledged meanwhile is rightly a 200.
        listening.join(timeout=30)
        kafka_down = (went, min(listening.at or time.monotonic(), time.monotonic()))
        phase("Kafka restarted", 4)
        traffic.phase = "winding down (sending what is owed again)"
    lander_exits, agent_exits = dict(lander.exits), dict(agent.exits)
    def still_missing() -> str:
        landed = set(_landed(stack.database_url, broker))
        missing = sorted(set(map(str, traffic.accepted)) - {str(x) for x in landed})
        return (f"{len(landed)} of {len(traffic.accepted)} landed; missing e.g. {missing[:10]}; landing exits "
                f"{dict(lander.exits)}")

    _wait(lambda: len(set(_landed(stack.database_url, broker))) >= len(traffic.accepted), "every accepted update "
          "to land", context=still_missing)
    # The agent is done when no reply waits for a send or a retry.
    _wait(lambda: not {"claimed", "retry"} & set(_replies(stack.database_url, broker)), "the agent to settle")
    agent.stop()
    lander.stop()
    telegram.stop()
    replies = _replies(stack.database_url, broker)
    answered = Counter(json.dumps(body, sort_keys=True) for body in telegram.sent("telegram"))

    sends, received, statuses = _dispatcher_killed_mid_run(stack, broker)

    landed = _landed(stack.database_url, broker)
    print(f"\n== fault suite: {len(traffic.accepted)} updates accepted, {len(landed)} landed; landing exits "
          f"{lander_exits}")
    for name, answers in traffic.answers.items():
        print(f"{name:45s} {dict(answers)}  landed so far {landed_at.get(name, len(landed))}")
    print(f"{'dispatcher killed mid-run, then run again':45s} {len(sends)} sends: {dict(statuses)}; "
          f"{sum(received.values())} received by the provider")
    print(f"{'agent (killed once, restarted on every exit)':45s} replies {dict(replies)}; "
          f"{sum(answered.values())} received by Telegram; exits {agent_exits}")

    # Accepted == landed, each once.
    assert sorted(landed) == sorted(str(u) for u in traffic.accepted)
    # While Kafka was down nothing was answered 200: a request started and answered inside the outage is a 503.
    start, end = kafka_down
    inside = [answer for began, ended, answer in traffic.log if start + 0.5 < began and ended < end]
    assert inside and "200" not in inside, Counter(inside)
    assert "503" in inside
    # Every fault happened while traffic was flowing and the landing kept up afterwards.
    assert all(traffic.answers[name]["200"] > 0 for name in ("steady", "ingest API restarted", "PostgreSQL stopped",
                                                              "Kafka restarted"))
    assert traffic.answers["ingest API killed"]["no connection"] > 0
    assert 3 in lander_exits, "the landing did not notice PostgreSQL going away"
    # The agent's replies: each received once at most (its row is claimed before the send); a reply cut by the
    # kill stays 'sending', reported and never resent.
    assert replies["sent"] > 0 and -9 in agent_exits
    assert replies["sent"] <= sum(answered.values()) <= replies["sent"] + replies["sending"]
    # Sends: none twice, none lost; a send cut by the kill is kept as 'sending' (its fate unknown), never resent.
    assert max(received.values()) == 1
    assert statuses["sent"] + statuses["sending"] == len(sends) and statuses["sending"] <= 1
    assert sum(received.values()) in (statuses["sent"], statuses["sent"] + statuses["sending"])


def _replies(database_url: str, broker: Broker) -> Counter[str]:
    conn = connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT status, count(*) FROM leadflow.agent_replies WHERE broker_id = %s GROUP BY status",
                        (broker.broker_id,))
            return Counter({status: int(n) for status, n in cur.fetchall()})
    finally:
        conn.close()


def _dispatcher_killed_mid_run(stack: Stack, broker: Broker) -> tuple[list[Any], Counter[str], Counter[str]]:
    """Sends queued, a dispatcher killed mid-run, dispatchers run again until nothing is due."""
    state = stack.state()
    stack.env[broker.secret_env_name("whatsapp_access_token")] = WHATSAPP_TOKEN
    stack.env[broker.secret_env_name("whatsapp_phone_number_id")] = WHATSAPP_NUMBER_ID
    from datetime import UTC, datetime

    sends = seed_whatsapp_sends(state["database_url"], state["kafka_bootstrap_servers"], stack.topics, broker, 200,
                                datetime.now(UTC))
    fake = FakeChannels().start()
    fake.script("whatsapp", *[Reply(delay_s=0.01)] * len(sends))
    env = {**stack.env, "LEADFLOW_WHATSAPP_API_URL": fake.url}
    try:
        dispatcher = subprocess.Popen([sys.executable, "-m", "leadflow.cli", "dispatch"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: len(fake.requests) >= 20, "the dispatcher to send", 60)
        dispatcher.kill()
        dispatcher.wait()
        assert len(fake.requests) < len(sends), "the kill came after the last send: nothing was tested"
        again = subprocess.run([sys.executable, "-m", "leadflow.cli", "dispatch"], env=env, capture_output=True,
                               text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        received = Counter(body["to"] for body in fake.sent("whatsapp"))
    finally:
        fake.stop()
    conn = connect(stack.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT status, count(*) FROM leadflow.outbound_sends WHERE broker_id = %s GROUP BY status",
                        (broker.broker_id,))
            statuses: Counter[str] = Counter({status: int(n) for status, n in cur.fetchall()})
    finally:
        conn.close()
    return sends, received, statuses
