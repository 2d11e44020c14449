"""Every channel route against the real embedded Kafka and PostgreSQL.

For each channel: a valid delivery is produced and acknowledged, a forged one is refused with
nothing produced, a malformed one is refused and kept in the dead-letter topic, and a duplicate
delivery lands once. Every refusal is the same answer (``REFUSED``), whatever its reason.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ingest_api.app import create_app
from leadflow.brokers import Broker
from leadflow.config import Settings
from leadflow.db.connection import connect
from leadflow.demo.webhooks import signed
from leadflow.landing import land
from leadflow.services import kafka as embedded_kafka
from leadflow.services.ports import free_port
from tests import payloads
from tests.conftest import BrokerFactory
from tests.kafka_helpers import events_for

CHANNELS = sorted(payloads.VALID)

# What each channel's forged request looks like: the right header with a wrong secret.
FORGED_SECRETS = {
    "telegram": {"telegram_secret_token": "not-the-token"},
    "whatsapp": {"whatsapp_app_secret": "not-the-app-secret"},
    "vapi": {"vapi_secret": "not-the-secret"},
    "bland": {"bland_webhook_secret": "not-the-secret"},
    "form": {"form_api_key": "not-the-key"},
}
AUTH_HEADERS = {"x-telegram-bot-api-secret-token", "x-hub-signature-256", "x-vapi-signature",
                "x-webhook-signature", "authorization"}
# What every refused caller gets: unknown broker, unconfigured channel, missing or wrong credential.
REFUSED = (403, {"detail": "forbidden"})


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, broker_reload_interval_s=0)) as test_client:
        yield test_client


def post(client: TestClient, channel: str, broker: Broker, payload: dict[str, object] | bytes,
         secrets: dict[str, str] | None = None, drop_auth: bool = False) -> tuple[int, dict[str, object]]:
    path, headers, body = signed(channel, broker, payload, secrets)
    if drop_auth:
        headers = {k: v for k, v in headers.items() if k.lower() not in AUTH_HEADERS}
    response = client.post(path, content=body, headers=headers)
    return response.status_code, response.json()


def landed_ids(settings: Settings, broker: Broker) -> list[str]:
    conn = connect(settings.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT provider_message_id FROM leadflow.raw_messages WHERE broker_id = %s "
                        "ORDER BY provider_message_id", (broker.broker_id,))
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


@pytest.mark.parametrize("channel", CHANNELS)
def test_valid_delivery_is_acknowledged_only_once_kafka_holds_its_events(
        client: TestClient, settings: Settings, make_broker: BrokerFactory, channel: str) -> None:
    broker = make_broker()
    status, body = post(client, channel, broker, payloads.VALID[channel]())
    assert status == 200, body
    assert body["accepted"] == payloads.EXPECTED_MESSAGES[channel]
    produced = events_for(settings.kafka_bootstrap_servers, settings.topics.messages, broker.broker_id)
    assert len(produced) == payloads.EXPECTED_MESSAGES[channel]
    assert {e["channel"] for e in produced} == {channel}
    assert all(e["schema_version"] == 1 and e["broker_slug"] == broker.slug for e in produced)


@pytest.mark.parametrize("channel", CHANNELS)
def test_forged_signature_is_rejected_and_nothing_is_produced(
        client: TestClient, settings: Settings, make_broker: BrokerFactory, channel: str) -> None:
    broker = make_broker()
    status, body = post(client, channel, broker, payloads.VALID[channel](), secrets=FORGED_SECRETS[channel])
    assert (status, body) == REFUSED
    assert events_for(settings.kafka_bootstrap_servers, settings.topics.messages, broker.broker_id) == []
    assert events_for(settings.kafka_bootstrap_servers, settings.topics.dead_letters, broker.broker_id) == []


@pytest.mark.parametrize("channel", CHANNELS)
def test_missing_credentials_get_the_same_refusal_as_forged_ones(
        client: TestClient, settings: Settings, make_broker: BrokerFactory, channel: str) -> None:
    broker = make_broker()
    assert post(client, channel, broker, payloads.VALID[channel](), drop_auth=True) == REFUSED
    assert events_for(settings.kafka_bootstrap_servers, settings.topics.messages, broker.broker_id) == []


@pytest.mark.parametrize("channel", CHANNELS)
def test_malformed_authentic_payload_gets_422_and_a_dead_letter_copy(
        client: TestClient, settings: Settings, make_broker: BrokerFactory, channel: str) -> None:
    broker = make_broker()
    raw = json.dumps(payloads.MALFORMED[channel]).encode()
    status, body = post(client, channel, broker, raw)
    assert status == 422
    assert body["detail"]["dead_lettered"] is True  # type: ignore[index]
    [letter] = events_for(settings.kafka_bootstrap_servers, settings.topics.dead_letters, broker.broker_id)
    assert letter["channel"] == channel and letter["reason"]
    assert base64.b64decode(letter["body_b64"]) == raw
    assert events_for(settings.kafka_bootstrap_servers, settings.topics.messages, broker.broker_id) == []


def test_body_that_is_not_json_is_dead_lettered_byte_for_byte(
        client: TestClient, settings: Settings, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    raw = b"\xff\xfenot json at all"
    status, _ = post(client, "bland", broker, raw)
    assert status == 422
    [letter] = events_for(settings.kafka_bootstrap_servers, settings.topics.dead_letters, broker.broker_id)
    assert base64.b64decode(letter["body_b64"]) == raw


@pytest.mark.parametrize("channel", CHANNELS)
def test_duplicate_delivery_lands_once(client: TestClient, settings: Settings, make_broker: BrokerFactory,
                                       channel: str) -> None:
    broker = make_broker()
    payload = payloads.VALID[channel]()
    assert post(client, channel, broker, payload)[0] == 200
    assert post(client, channel, broker, payload)[0] == 200  # the provider retries
    land(settings.database_url, settings.kafka_bootstrap_servers, settings.topics)
    ids = landed_ids(settings, broker)
    assert len(ids) == payloads.EXPECTED_MESSAGES[channel]
    assert len(set(ids)) == len(ids)


def test_whatsapp_verification_handshake_echoes_the_challenge(client: TestClient,
                                                               make_broker: BrokerFactory) -> None:
    broker = make_broker()
    token = broker.secret("whatsapp_verify_token")
    response = client.get(f"/webhooks/{broker.slug}/whatsapp",
                          params={"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"})
    assert response.status_code == 200 and response.text == "1158201444"


def test_whatsapp_verification_with_wrong_token_is_refused(client: TestClient, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    response = client.get(f"/webhooks/{broker.slug}/whatsapp",
                          params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"})
    assert (response.status_code, response.json()) == REFUSED


def test_whatsapp_statuses_are_produced_as_delivery_statuses(
        client: TestClient, settings: Settings, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    assert post(client, "whatsapp", broker, payloads.whatsapp_status(status="read"))[0] == 200
    [event] = events_for(settings.kafka_bootstrap_servers, settings.topics.messages, broker.broker_id)
    assert event["event_type"] == "status" and event["status"] == "read"


def test_vapi_accepts_a_bearer_token_instead_of_a_signature(
        client: TestClient, settings: Settings, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    body = json.dumps(payloads.vapi_end_of_call()).encode()
    response = client.post(f"/webhooks/{broker.slug}/vapi", content=body,
                           headers={"authorization": f"Bearer {broker.secret('vapi_secret')}",
                                    "content-type": "application/json"})
    assert response.status_code == 200
    assert len(events_for(settings.kafka_bootstrap_servers, settings.topics.messages, broker.broker_id)) == 4


def test_unknown_broker_gets_the_same_refusal_as_a_forged_signature_and_nothing_is_produced(
        client: TestClient, settings: Settings, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    ghost = Broker(broker_id=broker.broker_id, slug="no-such-broker", name="x", country="CL",
                   timezone="America/Santiago", secret_env={k: broker.secret_env_name(k) for k in FORGED_SECRETS})
    path, headers, body = signed("telegram", broker, payloads.telegram_text())
    response = client.post(path.replace(broker.slug, ghost.slug), content=body, headers=headers)
    assert (response.status_code, response.json()) == REFUSED
    assert events_for(settings.kafka_bootstrap_servers, settings.topics.messages, broker.broker_id) == []


def test_channel_without_configured_secret_is_refused_alike_and_the_log_names_the_variable(
        client: TestClient, make_broker: BrokerFactory, caplog: pytest.LogCaptureFixture) -> None:
    broker = make_broker(with_secrets=False)
    variable = broker.secret_env_name("telegram_secret_token")
    with caplog.at_level(logging.WARNING, logger="ingest_api.auth"):
        response = client.post(f"/webhooks/{broker.slug}/telegram", content=b"{}",
                               headers={"X-Telegram-Bot-Api-Secret-Token": "anything"})
    assert (response.status_code, response.json()) == REFUSED
    assert variable not in response.text
    assert variable in caplog.text and "anything" not in caplog.text


def test_a_broker_cannot_post_into_another_brokers_route(client: TestClient, settings: Settings,
                                                         make_broker: BrokerFactory) -> None:
    mine, theirs = make_broker(), make_broker()
    path, headers, body = signed("form", mine, payloads.form_lead())
    response = client.post(path.replace(mine.slug, theirs.slug), content=body, headers=headers)
    assert (response.status_code, response.json()) == REFUSED
    assert events_for(settings.kafka_bootstrap_servers, settings.topics.messages, theirs.broker_id) == []


def test_health_reports_both_services(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body == {"status": "ok", "postgres": "ok", "kafka": "ok"}


def test_kafka_outage_answers_503_so_the_provider_retries_and_nothing_is_lost(
        settings: Settings, make_broker: BrokerFactory, tmp_path: Path) -> None:
    """With the broker gone, the webhook is refused (not acknowledged); after it is back, the retry lands."""
    address, _cluster, pid = embedded_kafka.start(tmp_path, free_port())
    outage = Settings(**{**settings.__dict__, "kafka_bootstrap_servers": address})
    broker = make_broker()
    with TestClient(create_app(outage, broker_reload_interval_s=0, ack_timeout_s=2)) as flaky:
        assert post(flaky, "telegram", broker, payloads.telegram_text())[0] == 200
        os.kill(pid, signal.SIGKILL)
        status, body = post(flaky, "telegram", broker, payloads.telegram_text(update_id=9005))
        assert status == 503, body
        assert flaky.get("/health").status_code == 503
        assert flaky.get("/live").json() == {"status": "ok"}  # out of service, not a process to restart
    # The provider retries against the healthy cluster: the event is accepted and produced.
    with TestClient(create_app(settings, broker_reload_interval_s=0)) as healthy:
        assert post(healthy, "telegram", broker, payloads.telegram_text(update_id=9005))[0] == 200
    produced = events_for(settings.kafka_bootstrap_servers, settings.topics.messages, broker.broker_id)
    assert [e["provider_message_id"] for e in produced] == ["9005"]


def test_a_broker_not_cached_while_postgresql_is_away_gets_503_so_the_provider_retries(
        settings: Settings, make_broker: BrokerFactory) -> None:
    known = make_broker()
    app = create_app(settings, broker_reload_interval_s=0)
    with TestClient(app) as client:
        assert post(client, "telegram", known, payloads.telegram_text(update_id=9101))[0] == 200  # now cached
        new = make_broker()  # registered after the cache was filled
        # PostgreSQL goes away (a restart): nothing answers where the API looks for it.
        app.state.brokers._url = f"postgresql://postgres@127.0.0.1:{free_port()}/leadflow"
        status, body = post(client, "telegram", new, payloads.telegram_text(update_id=9102))
        assert status == 503 and "retry" in str(body), body
        assert post(client, "telegram", known, payloads.telegram_text(update_id=9103))[0] == 200  # from the cache
