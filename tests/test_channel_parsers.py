"""Provider payload → canonical event, without any service: the edge of the system, tested fast."""

from __future__ import annotations

import pytest

from ingest_api.bland import parse_call
from ingest_api.form import parse_submission
from ingest_api.intake import MalformedPayload
from ingest_api.telegram import parse_update
from ingest_api.vapi import parse_server_message
from ingest_api.whatsapp import parse_notification
from leadflow.brokers import Broker
from leadflow.events import ChannelMessage, DeliveryStatus
from tests import payloads

BROKER = Broker(broker_id=7, slug="acme", name="Acme", country="CL", timezone="America/Santiago")


def test_telegram_text_update_becomes_one_inbound_message_keyed_by_update_id() -> None:
    [event] = parse_update(BROKER, payloads.telegram_text(update_id=555)).events
    assert isinstance(event, ChannelMessage)
    assert (event.channel, event.provider_message_id, event.direction) == ("telegram", "555", "inbound")
    assert event.contact.channel_user_id == "123456789"
    assert event.contact.display_name == "Camila Rojas"
    assert event.text is not None and "5.200 UF" in event.text
    assert event.broker_id == 7


def test_telegram_voice_update_keeps_its_type_without_text() -> None:
    [event] = parse_update(BROKER, payloads.telegram_voice()).events
    assert isinstance(event, ChannelMessage)
    assert event.message_type == "voice" and event.text is None
    assert event.raw["message"]["voice"]["file_id"] == "AwACAgEAAxkBAAIB"


def test_telegram_update_of_another_kind_is_acknowledged_as_ignored() -> None:
    parsed = parse_update(BROKER, {"update_id": 1, "callback_query": {"id": "1"}})
    assert parsed.events == [] and parsed.ignored is not None and "callback_query" in parsed.ignored


def test_same_provider_message_gets_the_same_event_id() -> None:
    first = parse_update(BROKER, payloads.telegram_text(update_id=77)).events[0]
    again = parse_update(BROKER, payloads.telegram_text(update_id=77)).events[0]
    assert first.event_id == again.event_id


def test_whatsapp_message_carries_wa_id_and_e164_phone() -> None:
    [event] = parse_notification(BROKER, payloads.whatsapp_text()).events
    assert isinstance(event, ChannelMessage)
    assert event.contact.channel_user_id == "56987654321"
    assert event.contact.phone_e164 == "+56987654321"
    assert event.contact.display_name == "Matías Soto"


def test_whatsapp_status_becomes_a_delivery_status() -> None:
    [event] = parse_notification(BROKER, payloads.whatsapp_status(status="read")).events
    assert isinstance(event, DeliveryStatus)
    assert (event.status, event.provider_message_id) == ("read", "wamid.OUTBOUND1")


def test_whatsapp_unknown_status_is_malformed() -> None:
    with pytest.raises(MalformedPayload, match="status 'teleported'"):
        parse_notification(BROKER, payloads.whatsapp_status(status="teleported"))


def test_vapi_report_becomes_one_message_per_lead_or_agent_turn() -> None:
    events = parse_server_message(BROKER, payloads.vapi_end_of_call(call_id="call-1")).events
    assert [e.provider_message_id for e in events] == ["call-1:1", "call-1:2", "call-1:3", "call-1:4"]
    assert [e.direction for e in events if isinstance(e, ChannelMessage)] == [
        "outbound", "inbound", "outbound", "inbound"]
    assert all(isinstance(e, ChannelMessage) and e.contact.phone_e164 == "+56987654321" for e in events)


def test_vapi_status_update_is_ignored_not_an_error() -> None:
    parsed = parse_server_message(BROKER, {"message": {"type": "status-update", "status": "in-progress"}})
    assert parsed.events == [] and parsed.ignored == "vapi message type 'status-update'"


def test_vapi_report_with_only_a_flat_transcript_is_split_into_turns() -> None:
    body = {"message": {"type": "end-of-call-report", "startedAt": "2026-11-20T15:00:00Z", "call": {"id": "c2"},
                        "transcript": "AI: Hola\nUser: Busco casa en Maipú\nUser: con patio"}}
    events = parse_server_message(BROKER, body).events
    assert [e.text for e in events if isinstance(e, ChannelMessage)] == ["Hola", "Busco casa en Maipú", "con patio"]


def test_bland_inbound_call_uses_the_caller_and_leaves_out_agent_actions() -> None:
    events = parse_call(BROKER, payloads.bland_call()).events
    assert len(events) == 2
    assert all(isinstance(e, ChannelMessage) and e.contact.phone_e164 == "+525512345678" for e in events)


def test_form_lead_normalises_phone_with_broker_country_and_lowercases_email() -> None:
    [event] = parse_submission(BROKER, payloads.form_lead()).events
    assert isinstance(event, ChannelMessage)
    assert event.contact.phone_e164 == "+56987654321"
    assert event.contact.email == "javiera.munoz@gmail.com"


def test_form_without_submission_id_gets_a_content_hash_so_resubmission_dedupes() -> None:
    a = parse_submission(BROKER, payloads.form_lead(submission_id=None)).events[0]
    b = parse_submission(BROKER, payloads.form_lead(submission_id=None)).events[0]
    assert a.provider_message_id == b.provider_message_id


@pytest.mark.parametrize("channel", sorted(payloads.MALFORMED))
def test_malformed_payload_of_each_channel_is_rejected_with_a_reason(channel: str) -> None:
    parser = {"telegram": parse_update, "whatsapp": parse_notification, "vapi": parse_server_message,
              "bland": parse_call, "form": parse_submission}[channel]
    with pytest.raises(MalformedPayload) as info:
        parser(BROKER, payloads.MALFORMED[channel])
    assert str(info.value)


@pytest.mark.parametrize("date", [float("inf"), float("nan"), 1e20, -1e20, 10**400])
def test_telegram_update_with_an_impossible_date_is_malformed_not_a_crash(date: object) -> None:
    update = payloads.telegram_text()
    update["message"]["date"] = date
    with pytest.raises(MalformedPayload, match="timestamp"):
        parse_update(BROKER, update)
