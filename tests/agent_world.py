"""A world for the lead agent's tests: the real ingest API, Kafka, PostgreSQL and the agent, with people
who write through the real (signed) webhooks and a fake Telegram/WhatsApp that receives the replies.

Each world has its own topics, so an agent reads only what its test wrote.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from leadflow.agent.notify import Notifier
from leadflow.agent.store import save_agent_settings
from leadflow.agent.stream import LeadAgent, LLMFactory
from leadflow.brokers import Broker, default_secret_env
from leadflow.config import Settings, Topics
from leadflow.demo.run import BackgroundServer
from leadflow.demo.webhooks import signed
from leadflow.kafka import ensure_topics
from leadflow.outbound.senders import RateLimiter, Sender, TelegramSender, WhatsAppSender
from tests.fake_channels import FakeChannels

WHATSAPP_TOKEN = "wa-token-not-a-secret"  # what the fake WhatsApp accepts
_ids = itertools.count(int(time.time() * 1000) % 10**9)


def world_settings(settings: Settings) -> Settings:
    topics = Topics(f"t{uuid.uuid4().hex[:8]}")
    ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_partitions)
    return settings.model_copy(update={"kafka_topic_prefix": topics.prefix})


@dataclass
class Lead:
    """A person writing to a broker on one channel."""

    world: AgentWorld
    broker: Broker
    channel: str
    user: str  # Telegram user id, or WhatsApp number (digits)
    name: str
    seen: int = 0

    def say(self, text: str | None, *, kind: str = "text", at: datetime | None = None) -> str:
        """Send one message through the ingest API; returns its provider id."""
        n = next(_ids)
        epoch = int((at or datetime.now(UTC)).timestamp())
        if self.channel == "telegram":
            message: dict[str, Any] = {"message_id": n, "date": epoch, "from": {"id": int(self.user), "is_bot": False,
                                                                               "first_name": self.name},
                                       "chat": {"id": int(self.user), "type": "private"}}
            if kind == "text":
                message["text"] = text
            else:
                message[kind] = {"file_id": f"f{n}", "duration": 3}
            payload: dict[str, Any] = {"update_id": n, "message": message}
            provider_id = str(n)
        else:
            provider_id = f"wamid.sim{n}"
            wa: dict[str, Any] = {"from": self.user, "id": provider_id, "timestamp": str(epoch), "type": kind}
            if kind == "text":
                wa["text"] = {"body": text}
            else:
                wa[kind] = {"id": f"media{n}", "mime_type": "audio/ogg"}
            payload = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
                "field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550001111", "phone_number_id": "106540352242922"},
                    "contacts": [{"profile": {"name": self.name}, "wa_id": self.user}], "messages": [wa]}}]}]}
        path, headers, body = signed(self.channel, self.broker, payload)
        response = self.world.http.post(self.world.ingest.url + path, content=body, headers=headers)
        assert response.status_code == 200, response.text
        return provider_id

    def replies(self) -> list[str]:
        """Every text the fake provider received for this person, in order."""
        out = []
        for provider, path, body in list(self.world.fake.requests):
            if provider != self.channel or path.startswith("!"):
                continue
            if self.channel == "telegram" and str(body.get("chat_id")) == self.user \
                    and f"/bot{self.world.telegram_tokens[self.broker.slug]}/" in path:
                out.append(str(body.get("text")))
            elif self.channel == "whatsapp" and body.get("to") == self.user:
                out.append(str((body.get("text") or {}).get("body")))
        return out

    def next_reply(self, timeout_s: float = 15.0) -> str:
        """The next reply this person gets (waits for it)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.replies()
            if len(got) > self.seen:
                self.seen += 1
                return got[self.seen - 1]
            time.sleep(0.02)
        from leadflow.db.connection import transaction
        with transaction(self.world.settings.database_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT status, reason FROM leadflow.agent_replies WHERE broker_id = %s",
                        (self.broker.broker_id,))
            rows = cur.fetchall()
        stats = [agent.stats for agent, _, _ in self.world.agents], rows
        raise AssertionError(f"{self.name} got no reply within {timeout_s} s (replies so far: {self.replies()}; "
                             f"agents: {stats})")

    def quiet(self, for_s: float) -> bool:
        """True when no new reply arrives for ``for_s`` seconds."""
        time.sleep(for_s)
        return len(self.replies()) == self.seen


@dataclass
class AgentWorld:
    settings: Settings
    fake: FakeChannels
    ingest: BackgroundServer
    http: httpx.Client
    monkeypatch: pytest.MonkeyPatch
    telegram_tokens: dict[str, str] = field(default_factory=dict)
    agents: list[tuple[LeadAgent, threading.Event, threading.Thread]] = field(default_factory=list)

    def enable(self, broker: Broker, **agent: Any) -> None:
        """Turn the broker's agent on, with the credentials its replies are sent with."""
        save_agent_settings(self.settings.database_url, broker.slug, {"enabled": True, **agent})
        token = f"{broker.broker_id}:tg-{uuid.uuid4().hex[:12]}"
        self.telegram_tokens[broker.slug] = token
        self.monkeypatch.setenv(default_secret_env(broker.slug, "telegram_bot_token"), token)
        self.monkeypatch.setenv(default_secret_env(broker.slug, "whatsapp_access_token"), WHATSAPP_TOKEN)
        self.monkeypatch.setenv(default_secret_env(broker.slug, "whatsapp_phone_number_id"), "106540352242922")

    def lead(self, broker: Broker, channel: str = "telegram", name: str = "Camila") -> Lead:
        # +56 98…: a block of Chilean mobiles valid throughout. "569" + the counter's last 8 digits was invalid
        # (+56 90…, +56 91…) for hours at a time, whenever the clock put those digits there.
        user = str(next(_ids)) if channel == "telegram" else f"5698{next(_ids) % 10**7:07d}"
        return Lead(self, broker, channel, user, name)

    def start_agent(self, *, llm: LLMFactory | None = None, burst_s: float = 0.3, max_wait_s: float = 1.5,
                    member: int = 0, members: int = 1, workers: int = 8) -> LeadAgent:
        senders: dict[str, Sender] = {"telegram": TelegramSender(self.fake.url, 2, RateLimiter(1000, 0)),
                   "whatsapp": WhatsAppSender(self.fake.url, 2)}
        agent = LeadAgent(self.settings, senders, llm=llm, notifier=Notifier(self.fake.url), burst_s=burst_s,
                          max_wait_s=max_wait_s, member=member, members=members, workers=workers)
        stop = threading.Event()
        thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
        thread.start()
        assert agent.ready.wait(30), "the agent did not start"
        self.agents.append((agent, stop, thread))
        return agent

    def stop_agents(self) -> None:
        for _agent, stop, thread in self.agents:
            stop.set()
            thread.join(30)
        self.agents.clear()
