"""Issue 17, finding 13: a refused webhook tells the caller nothing about Leadflow's configuration.

Unknown broker, channel without a configured secret, missing credential, wrong credential: one
answer (403 ``{"detail": "forbidden"}``), nothing produced; the reason is in the server log, and
neither the secret nor the credential presented ever is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Protocol

import pytest
from fastapi.testclient import TestClient

from ingest_api.app import create_app
from leadflow.brokers import SECRET_KINDS
from leadflow.config import Settings
from leadflow.demo.webhooks import signed
from tests import payloads
from tests.conftest import BrokerFactory
from tests.kafka_helpers import events_for

CREDENTIAL_HEADERS = {"x-telegram-bot-api-secret-token", "x-hub-signature-256", "x-vapi-signature",
                      "x-webhook-signature", "authorization"}


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, broker_reload_interval_s=0)) as test_client:
        yield test_client


class Answered(Protocol):
    """What the test client's responses have (its response class is the client's own, not httpx's)."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def content(self) -> bytes: ...
    @property
    def text(self) -> str: ...


def answer(response: Answered) -> tuple[int, str, bytes]:
    return response.status_code, response.headers["content-type"], response.content


@pytest.mark.parametrize("channel", sorted(payloads.VALID))
def test_every_refusal_is_the_same_answer_and_produces_nothing(
        client: TestClient, settings: Settings, make_broker: BrokerFactory, channel: str) -> None:
    broker, bare = make_broker(), make_broker(with_secrets=False)
    forged = {kind: "not-the-secret" for kind in SECRET_KINDS[channel]}
    path, headers, body = signed(channel, broker, payloads.VALID[channel]())
    _, forged_headers, _ = signed(channel, broker, body, secrets=forged)
    without = {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}
    answers = {
        "unknown broker": client.post(path.replace(broker.slug, "no-such-broker"), content=body, headers=headers),
        "channel not configured": client.post(path.replace(broker.slug, bare.slug), content=body, headers=headers),
        "missing credential": client.post(path, content=body, headers=without),
        "wrong credential": client.post(path, content=body, headers=forged_headers),
    }
    assert {case: answer(r) for case, r in answers.items()} == {
        case: (403, "application/json", b'{"detail":"forbidden"}') for case in answers}
    for someone in (broker, bare):
        assert events_for(settings.kafka_bootstrap_servers, settings.topics.messages, someone.broker_id) == []
        assert events_for(settings.kafka_bootstrap_servers, settings.topics.dead_letters, someone.broker_id) == []


@pytest.mark.parametrize("channel", sorted(payloads.VALID))
def test_refusal_reason_is_logged_without_the_secret_or_the_credential_presented(
        client: TestClient, make_broker: BrokerFactory, caplog: pytest.LogCaptureFixture, channel: str) -> None:
    broker = make_broker()
    secrets = [broker.secret(kind) for kind in SECRET_KINDS[channel]]
    forged = {kind: "forged-credential-value" for kind in SECRET_KINDS[channel]}
    path, headers, body = signed(channel, broker, payloads.VALID[channel](), secrets=forged)
    presented = [v for k, v in headers.items() if k.lower() in CREDENTIAL_HEADERS]
    with caplog.at_level(logging.INFO):
        assert client.post(path, content=body, headers=headers).status_code == 403
    refusals = [r.getMessage() for r in caplog.records if r.name == "ingest_api.auth"]
    assert len(refusals) == 1 and broker.slug in refusals[0] and "invalid" in refusals[0]
    for value in [*secrets, "forged-credential-value", *presented]:
        assert value and value not in caplog.text


def test_unconfigured_channel_is_logged_with_the_variable_to_set(
        client: TestClient, make_broker: BrokerFactory, caplog: pytest.LogCaptureFixture) -> None:
    bare = make_broker(with_secrets=False)
    path, headers, body = signed("whatsapp", bare, payloads.whatsapp_text(), secrets={"whatsapp_app_secret": "x"})
    with caplog.at_level(logging.WARNING, logger="ingest_api.auth"):
        response = client.post(path, content=body, headers=headers)
    assert response.status_code == 403 and "LEADFLOW" not in response.text
    assert bare.secret_env_name("whatsapp_app_secret") in caplog.text


def test_slug_cannot_forge_log_lines(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ingest_api.auth"):
        client.post("/webhooks/x%0Aroot%20logged%20in/telegram", content=b"{}")
    [refusal] = [r.getMessage() for r in caplog.records if r.name == "ingest_api.auth"]
    assert "\n" not in refusal and "\\n" in refusal


def test_whatsapp_handshake_refusals_are_the_same_answer(client: TestClient, make_broker: BrokerFactory) -> None:
    broker, bare = make_broker(), make_broker(with_secrets=False)
    token = broker.secret("whatsapp_verify_token")

    def handshake(slug: str, verify_token: str | None, mode: str = "subscribe") -> Answered:
        params = {"hub.mode": mode, "hub.challenge": "1158201444"}
        if verify_token is not None:
            params["hub.verify_token"] = verify_token
        return client.get(f"/webhooks/{slug}/whatsapp", params=params)

    refused = {answer(handshake("no-such-broker", token)), answer(handshake(bare.slug, "anything")),
               answer(handshake(broker.slug, "guess")), answer(handshake(broker.slug, None))}
    assert refused == {(403, "application/json", b'{"detail":"forbidden"}')}
    # A request of the wrong shape is refused before the broker is looked up: the same 400 for any slug.
    shapeless = {answer(handshake(slug, token, mode="x")) for slug in ("no-such-broker", broker.slug)}
    assert [status for status, _, _ in shapeless] == [400]
    assert handshake(broker.slug, token).text == "1158201444"
