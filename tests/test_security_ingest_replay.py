"""Issue 17, finding 14: a captured, correctly signed webhook replayed later.

Where the provider signs the time it sent a delivery (VAPI's ``message.timestamp``), a delivery older
than the replay window is refused — 422 and kept in the dead-letter topic, so a legitimate late resend
is never lost. Elsewhere old times are legitimate (WhatsApp redelivers for 7 days, backfills carry
history) and replays are absorbed by the landing's provider-id dedupe; those tests hold that line.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from ingest_api.app import create_app
from ingest_api.intake import StaleDelivery
from ingest_api.vapi import REPLAY_WINDOW, parse_server_message
from leadflow.brokers import Broker
from leadflow.config import Settings
from leadflow.db.connection import connect
from leadflow.demo.webhooks import signed
from leadflow.landing import land
from tests import payloads
from tests.conftest import BrokerFactory
from tests.kafka_helpers import events_for

BROKER = Broker(broker_id=7, slug="acme", name="Acme", country="CL", timezone="America/Santiago")


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, broker_reload_interval_s=0)) as test_client:
        yield test_client


def ms_ago(age: timedelta) -> int:
    return int((datetime.now(UTC) - age).timestamp() * 1000)


def test_vapi_report_older_than_the_replay_window_is_422_and_dead_lettered(
        client: TestClient, settings: Settings, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    path, headers, body = signed("vapi", broker, payloads.vapi_end_of_call(
        sent_at_ms=ms_ago(REPLAY_WINDOW + timedelta(hours=1))))
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert "replay window" in response.json()["detail"]["reason"]
    [letter] = events_for(settings.kafka_bootstrap_servers, settings.topics.dead_letters, broker.broker_id)
    assert base64.b64decode(letter["body_b64"]) == body and "replay window" in letter["reason"]
    assert events_for(settings.kafka_bootstrap_servers, settings.topics.messages, broker.broker_id) == []


def test_vapi_report_replayed_inside_the_window_lands_once(
        client: TestClient, settings: Settings, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    path, headers, body = signed("vapi", broker, payloads.vapi_end_of_call(
        call_id="replayed-call", sent_at_ms=ms_ago(REPLAY_WINDOW - timedelta(hours=1))))
    for _ in range(2):  # the delivery, then the same signed bytes again
        assert client.post(path, content=body, headers=headers).status_code == 200
    land(settings.database_url, settings.kafka_bootstrap_servers, settings.topics)
    conn = connect(settings.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT provider_message_id FROM leadflow.raw_messages WHERE broker_id = %s ORDER BY 1",
                        (broker.broker_id,))
            landed = [row[0] for row in cur.fetchall()]
    finally:
        conn.close()
    assert landed == [f"replayed-call:{turn}" for turn in range(1, 5)]


def test_stale_vapi_report_is_refused_by_the_parser_with_its_age() -> None:
    body = payloads.vapi_end_of_call(sent_at_ms=ms_ago(timedelta(days=30)))
    with pytest.raises(StaleDelivery, match=r"720 h old, past the 48 h replay window"):
        parse_server_message(BROKER, body)


def test_vapi_messages_we_ignore_are_not_held_to_the_window() -> None:
    body = {"message": {"type": "status-update", "status": "ended", "timestamp": ms_ago(timedelta(days=30))}}
    assert parse_server_message(BROKER, body).ignored == "vapi message type 'status-update'"


def test_whatsapp_message_redelivered_days_later_is_still_accepted(
        client: TestClient, make_broker: BrokerFactory) -> None:
    """Meta retries a failed delivery for up to 7 days, stamped with when the lead wrote."""
    broker = make_broker()
    payload = payloads.whatsapp_text(message_id="wamid.SIXDAYSLATE")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = str(
        int((datetime.now(UTC) - timedelta(days=6, hours=23)).timestamp()))
    path, headers, body = signed("whatsapp", broker, payload)
    assert client.post(path, content=body, headers=headers).status_code == 200


def test_backfilled_history_without_a_delivery_time_is_still_accepted(
        client: TestClient, make_broker: BrokerFactory) -> None:
    """Telegram dates, Bland call times and VAPI call times are when things happened, not when they were sent."""
    broker = make_broker()
    year_ago = datetime.now(UTC) - timedelta(days=365)
    telegram = payloads.telegram_text(update_id=424242)
    telegram["message"]["date"] = int(year_ago.timestamp())
    bland = {**payloads.bland_call(call_id="backfilled"), "created_at": year_ago.isoformat()}
    for channel, payload in (("telegram", telegram), ("bland", bland), ("vapi", payloads.vapi_end_of_call())):
        path, headers, body = signed(channel, broker, payload)
        assert client.post(path, content=body, headers=headers).status_code == 200, channel
