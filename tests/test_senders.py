"""Every outbound client against its local fake (127.0.0.1): success, 429, 500 and a timeout each give the
verdict the dispatcher acts on (sent, retry later, or refused)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from leadflow.brokers import default_secret_env
from leadflow.events import OutboundCommand
from leadflow.outbound.errors import Rejected, RetryLater
from leadflow.outbound.senders import (
    BlandCaller,
    RateLimiter,
    TelegramSender,
    VapiCaller,
    WhatsAppSender,
)
from tests.fake_channels import FakeChannels, Reply

NOW = datetime(2026, 11, 26, 15, tzinfo=UTC)
SLUG = "acme-test"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeChannels]:
    for kind, value in (("telegram_bot_token", "1:tg"), ("whatsapp_access_token", "wa-token-not-a-secret"),
                        ("whatsapp_phone_number_id", "1098765"), ("vapi_api_key", "k"), ("vapi_assistant_id", "a"),
                        ("vapi_phone_number_id", "p"), ("bland_api_key", "b")):
        monkeypatch.setenv(default_secret_env(SLUG, kind), value)
    server = FakeChannels().start()
    yield server
    server.stop()


def command(channel: str, payload: dict[str, Any]) -> OutboundCommand:
    return OutboundCommand.build(send_id=1, broker_id=1, broker_slug=SLUG, campaign_id=1, lead_id=1, step=0,
                                 action="call" if channel in ("vapi", "bland") else "message", channel=channel,
                                 payload=payload, created_at=NOW)


def senders(url: str) -> dict[str, Callable[[], str]]:
    fast = RateLimiter(per_second=1000, key_interval_s=0)
    call = {"phone": "+56911112222", "name": "Camila", "task": "Retomar la búsqueda"}
    return {
        "telegram": lambda: TelegramSender(url, 0.5, fast).send(command("telegram", {"chat_id": "7", "text": "Hola"})),
        "whatsapp": lambda: WhatsAppSender(url, 0.5, clock=lambda: NOW).send(command("whatsapp", {
            "to": "56911112222", "text": "Hola", "last_inbound_at": NOW.isoformat()})),
        "vapi": lambda: VapiCaller(url, 0.5).send(command("vapi", call)),
        "bland": lambda: BlandCaller(url, 0.5).send(command("bland", call)),
    }


@pytest.mark.parametrize("provider", ["telegram", "whatsapp", "vapi", "bland"])
def test_each_provider_success_and_failures_give_the_right_verdict(provider: str, fake: FakeChannels) -> None:
    send = senders(fake.url)[provider]
    assert send()  # the provider's id for the message, call or event
    fake.script(provider, Reply(status=429, retry_after=7))
    with pytest.raises(RetryLater, match="429"):
        send()
    fake.script(provider, Reply(status=500), Reply(status=500))  # one quick retry inside the attempt, then give up
    with pytest.raises(RetryLater, match="500"):
        send()
    fake.script(provider, Reply(delay_s=0.8), Reply(delay_s=0.8))  # longer than the client's 0.5 s timeout
    with pytest.raises(RetryLater, match="Timeout"):
        send()
    fake.script(provider, Reply(status=400))
    with pytest.raises(Rejected):
        send()


def test_telegram_honours_the_providers_wait_after_a_429(fake: FakeChannels) -> None:
    fake.script("telegram", Reply(status=429, retry_after=42))
    with pytest.raises(RetryLater) as caught:
        senders(fake.url)["telegram"]()
    assert caught.value.after_s == 42
