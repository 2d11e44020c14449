"""A call's caller is a phone number: it must reach contact_phone so calls merge with the same person's chats."""

from __future__ import annotations

from collections.abc import Sequence

from ingest_api.bland import parse_call
from ingest_api.vapi import parse_server_message
from ingest_api.whatsapp import parse_notification
from leadflow.brokers import Broker
from leadflow.config import Settings, Topics
from leadflow.events import ChannelMessage
from leadflow.kafka import make_producer, produce_all
from tests import payloads
from tests.conftest import BrokerFactory
from tests.test_leads_pipeline import rows, run

BROKER = Broker(broker_id=7, slug="acme", name="Acme", country="CL", timezone="America/Santiago")


def contacts(events: Sequence[object]) -> set[tuple[str | None, str | None]]:
    return {(e.contact.channel_user_id, e.contact.phone_e164) for e in events if isinstance(e, ChannelMessage)}


def test_vapi_report_with_the_caller_in_message_customer_keeps_their_phone() -> None:
    events = parse_server_message(BROKER, payloads.vapi_report_with_message_customer()).events
    assert len(events) == 2
    assert contacts(events) == {("+56987654321", "+56987654321")}
    assert all(isinstance(e, ChannelMessage) and e.contact.display_name == "Camila Rojas" for e in events)


def test_vapi_message_customer_and_call_customer_are_both_read() -> None:
    report = payloads.vapi_report_with_message_customer()
    report["message"]["call"]["customer"] = report["message"].pop("customer")
    assert contacts(parse_server_message(BROKER, report).events) == {("+56987654321", "+56987654321")}


def test_vapi_report_without_any_customer_falls_back_to_the_call_id() -> None:
    report = payloads.vapi_report_with_message_customer(call_id="call-x")
    report["message"]["customer"] = {"number": None}
    assert contacts(parse_server_message(BROKER, report).events) == {("call-x", None)}


def test_bland_inbound_call_as_documented_keeps_the_callers_phone() -> None:
    events = parse_call(BROKER, payloads.bland_documented_call(inbound=True)).events
    assert contacts(events) == {("+14155550100", "+14155550100")}


def test_bland_call_with_a_national_top_level_number_takes_the_e164_from_its_variables() -> None:
    inbound = parse_call(BROKER, payloads.bland_documented_call(inbound=True, short=True)).events
    outbound = parse_call(BROKER, payloads.bland_documented_call(inbound=False, short=True)).events
    assert contacts(inbound) == contacts(outbound) == {("4155550100", "+14155550100")}


def test_bland_inbound_flag_as_text_is_read_as_what_it_says() -> None:
    inbound, outbound = payloads.bland_documented_call(inbound=True), payloads.bland_documented_call(inbound=False)
    inbound["inbound"], outbound["inbound"] = "true", "false"
    assert contacts(parse_call(BROKER, inbound).events) == {("+14155550100", "+14155550100")}
    # A non-empty string is truthy: "false" must not make our own number the lead.
    assert contacts(parse_call(BROKER, outbound).events) == {("+14155550100", "+14155550100")}


def test_a_vapi_call_and_a_whatsapp_message_from_the_same_number_are_one_lead(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    call = payloads.vapi_report_with_message_customer(number="+56 9 8765 4321")
    events = [*parse_notification(broker, payloads.whatsapp_text()).events,
              *parse_server_message(broker, call).events]
    produce_all(make_producer(settings.kafka_bootstrap_servers), fresh_topics.messages,
                [(e.kafka_key(), e.model_dump_json().encode()) for e in events])
    run(settings, fresh_topics)
    assert rows(settings, "SELECT channels, phone_e164 FROM leadflow.leads "
                          "WHERE broker_id = %s AND merged_into IS NULL",
                broker.broker_id) == [(["vapi", "whatsapp"], "+56987654321")]
