"""Issue 17, finding 8: authentic payloads that used to crash the parsers (500, nothing kept) are
answered 422 and kept byte for byte in the dead-letter topic, like every other malformed payload."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from ingest_api.app import create_app
from ingest_api.intake import MAX_JSON_DEPTH, MalformedPayload, check_depth, epoch_to_utc
from leadflow.brokers import Broker
from leadflow.config import Settings
from leadflow.demo.webhooks import signed
from tests import payloads
from tests.conftest import BrokerFactory
from tests.kafka_helpers import events_for


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, broker_reload_interval_s=0)) as test_client:
        yield test_client


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def assert_dead_lettered(client: TestClient, settings: Settings, broker: Broker, channel: str, raw: bytes,
                         reason: str) -> None:
    path, headers, body = signed(channel, broker, raw)
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]["dead_lettered"] is True
    assert reason in response.json()["detail"]["reason"]
    [letter] = events_for(settings.kafka_bootstrap_servers, settings.topics.dead_letters, broker.broker_id)
    assert (letter["channel"], base64.b64decode(letter["body_b64"])) == (channel, raw)
    assert reason in letter["reason"]
    assert events_for(settings.kafka_bootstrap_servers, settings.topics.messages, broker.broker_id) == []


@pytest.mark.parametrize("levels", [900, 5000, MAX_JSON_DEPTH + 1])
def test_deeply_nested_form_is_422_and_dead_lettered(
        client: TestClient, settings: Settings, make_broker: BrokerFactory, levels: int) -> None:
    """A form without submission_id is hashed with json.dumps, which recursed into the nesting."""
    raw = ('{"phone": "987654321", "extra": ' + nested(levels) + "}").encode()
    assert_dead_lettered(client, settings, make_broker(), "form", raw, f"nested deeper than {MAX_JSON_DEPTH}")


@pytest.mark.parametrize("channel", ["telegram", "whatsapp", "vapi", "bland"])
def test_deeply_nested_body_of_every_channel_is_422_and_dead_lettered(
        client: TestClient, settings: Settings, make_broker: BrokerFactory, channel: str) -> None:
    raw = json.dumps(payloads.VALID[channel]())[:-1].encode() + b', "deep": ' + nested(900).encode() + b"}"
    assert_dead_lettered(client, settings, make_broker(), channel, raw, "nested deeper")


def test_nesting_at_the_limit_is_still_accepted(client: TestClient, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    deep = json.loads(nested(MAX_JSON_DEPTH - 1))  # one level is the form object itself
    path, headers, body = signed("form", broker, {**payloads.form_lead(), "extra": deep})
    assert client.post(path, content=body, headers=headers).status_code == 200


@pytest.mark.parametrize(("date", "why"), [
    ("Infinity", "finite"),    # json.loads reads it as float('inf'): OverflowError in fromtimestamp
    ("-Infinity", "finite"),
    ("NaN", "finite"),         # ValueError in fromtimestamp
    ("1e20", "1970-9999"),     # OSError / OverflowError: year out of the platform's range
    ("-1e20", "1970-9999"),
    ("1" + "0" * 400, "not a number"),  # an int too large for a float: OverflowError
])
def test_telegram_impossible_date_is_422_and_dead_lettered(
        client: TestClient, settings: Settings, make_broker: BrokerFactory, date: str, why: str) -> None:
    text = json.dumps(payloads.telegram_text())
    raw = text.replace('"date": 1764100000', f'"date": {date}').encode()
    assert raw != text.encode()
    assert_dead_lettered(client, settings, make_broker(), "telegram", raw, why)


def test_whatsapp_and_vapi_impossible_timestamps_are_422_and_dead_lettered(
        client: TestClient, settings: Settings, make_broker: BrokerFactory) -> None:
    whatsapp = json.dumps(payloads.whatsapp_text()).replace('"timestamp": "1764100000"', '"timestamp": "1e300"')
    assert_dead_lettered(client, settings, make_broker(), "whatsapp", whatsapp.encode(), "1970-9999")
    vapi = json.dumps(payloads.vapi_end_of_call()).replace('"time": 1763650805000', '"time": Infinity')
    assert_dead_lettered(client, settings, make_broker(), "vapi", vapi.encode(), "finite")


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), 1e20, -1e20, -1, 10**400, True,
                                   "1e300", "Infinity"])
def test_epoch_to_utc_refuses_impossible_times_with_a_reason(value: object) -> None:
    with pytest.raises(MalformedPayload, match="timestamp"):
        epoch_to_utc(value)


def test_epoch_to_utc_still_reads_seconds_and_milliseconds() -> None:
    assert epoch_to_utc("1764100000").isoformat() == "2025-11-25T19:46:40+00:00"
    assert epoch_to_utc(1763650805000).isoformat() == "2025-11-20T15:00:05+00:00"


def test_depth_check_ignores_brackets_inside_strings() -> None:
    check_depth(json.dumps({"text": "[" * 10_000 + "{" * 10_000, "escaped": '\\"[[[' * 500}))
    with pytest.raises(MalformedPayload, match="nested deeper"):
        check_depth(json.dumps({"text": "]]]]"}) + nested(MAX_JSON_DEPTH + 1))
