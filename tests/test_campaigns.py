"""Campaign batches end to end: real PostgreSQL and Kafka, the dispatcher's real HTTP clients against
local fakes of the Telegram and WhatsApp APIs (127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from leadflow.brokers import Broker, default_secret_env
from leadflow.campaigns.store import (
    CampaignError,
    TargetResult,
    record_opt_outs,
    refresh_segments,
    save_campaign,
    save_segment,
)
from leadflow.campaigns.store import target_campaigns as target
from leadflow.config import Settings, Topics
from leadflow.events import Contact
from leadflow.kafka import make_producer, produce_all
from leadflow.outbound.dispatcher import DispatchResult, dispatch
from leadflow.outbound.senders import RateLimiter, Sender, TelegramSender, WhatsAppSender
from tests.conftest import BrokerFactory
from tests.fake_channels import FakeChannels, Reply
from tests.test_leads_pipeline import T0, rows, run, send

NOON = T0 + timedelta(hours=3)  # 12:00 in Santiago: outside quiet hours
CAMILA = Contact(channel_user_id="56911112222", phone_e164="+56911112222", display_name="Camila Rojas")
TOMAS = Contact(channel_user_id="700100", display_name="Tomás")
ANA = Contact(channel_user_id="56933334444", phone_e164="+56933334444", display_name="Ana")
HELLO = {"action": "message", "template": "Hola {{first_name}}, ¿agendamos una visita en {{location}}?",
         "whatsapp_template": {"name": "visita", "language": "es", "parameters": ["{{first_name}}"]}}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeChannels]:
    server = FakeChannels().start()
    yield server
    server.stop()


def credentials(monkeypatch: pytest.MonkeyPatch, broker: Broker) -> None:
    monkeypatch.setenv(default_secret_env(broker.slug, "telegram_bot_token"), "123:tg-token-not-a-secret")
    monkeypatch.setenv(default_secret_env(broker.slug, "whatsapp_access_token"), "wa-token-not-a-secret")
    monkeypatch.setenv(default_secret_env(broker.slug, "whatsapp_phone_number_id"), "1098765")


def batch(settings: Settings, topics: Topics, fake: FakeChannels, now: datetime) -> tuple[TargetResult, DispatchResult]:
    """One campaign batch at ``now``: consent, segments, targeting (commands to Kafka) and dispatch."""
    producer = make_producer(settings.kafka_bootstrap_servers)

    def publish(commands: list[tuple[bytes, bytes]]) -> None:
        produce_all(producer, topics.outbound, commands)

    record_opt_outs(settings.database_url)
    refresh_segments(settings.database_url, now)
    targeted = target(settings.database_url, now, publish)
    no_wait = RateLimiter(per_second=1000, key_interval_s=0)
    senders: dict[str, Sender] = {"telegram": TelegramSender(fake.url, timeout_s=2, limiter=no_wait),
                                  "whatsapp": WhatsAppSender(fake.url, timeout_s=2, clock=lambda: now)}
    dispatched = dispatch(settings.database_url, settings.kafka_bootstrap_servers, topics, senders, clock=lambda: now)
    return targeted, dispatched


def leads_of(settings: Settings, topics: Topics, broker: Broker) -> None:
    send(settings, topics, broker,
         ("whatsapp", "wamid.c1", CAMILA, "Hola, soy Camila, busco depto en Ñuñoa hasta 5.000 UF", 0),
         ("telegram", "9001", TOMAS, "Hola, busco casa en Macul para comprar", 1),
         ("whatsapp", "wamid.a1", ANA, "Hola, busco arriendo en Providencia", 2),
         ("whatsapp", "wamid.a2", ANA, "BAJA", 3))
    run(settings, topics)


def test_a_batch_sends_once_per_lead_and_step_and_never_to_who_opted_out(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory, fake: FakeChannels,
        monkeypatch: pytest.MonkeyPatch) -> None:
    broker = make_broker()
    credentials(monkeypatch, broker)
    leads_of(settings, fresh_topics, broker)
    save_segment(settings.database_url, broker.slug, "todos", {"all": [{"field": "score", "op": "gte", "value": 0}]})
    save_campaign(settings.database_url, broker.slug, "visitas", {
        "trigger": {"type": "segment", "segment": "todos"},
        "steps": [HELLO, {**HELLO, "template": "{{first_name}}, ¿pudiste ver las fotos?", "delay_hours": 72}]},
        status="active")

    targeted, dispatched = batch(settings, fresh_topics, fake, NOON)
    assert targeted.enrolled == 2 and dispatched.sent == 2
    [wa] = fake.sent("whatsapp")
    [tg] = fake.sent("telegram")
    assert (wa["to"], wa["type"], wa["text"]["body"]) == ("56911112222", "text",
                                                          "Hola Camila, ¿agendamos una visita en Ñuñoa?")
    assert (tg["chat_id"], tg["text"]) == ("700100", "Hola Tomás, ¿agendamos una visita en Macul?")
    assert all(body.get("to") != "56933334444" for _p, _path, body in fake.requests)  # Ana said BAJA

    # The same batch again: nothing is sent twice.
    targeted, dispatched = batch(settings, fresh_topics, fake, NOON)
    assert len(fake.requests) == 2 and dispatched.sent == 0

    # Three days later the WhatsApp window has closed: the approved template goes instead of text.
    later = NOON + timedelta(days=3)
    batch(settings, fresh_topics, fake, later)
    templates = [b for b in fake.sent("whatsapp") if b["type"] == "template"]
    assert len(templates) == 1 and templates[0]["template"]["name"] == "visita"
    assert templates[0]["template"]["components"][0]["parameters"] == [{"type": "text", "text": "Camila"}]
    statuses = rows(settings, "SELECT status, count(*) FROM leadflow.outbound_sends WHERE broker_id = %s "
                              "GROUP BY status ORDER BY status", broker.broker_id)
    assert statuses == [("sent", 4)]
    assert rows(settings, "SELECT count(*) FROM leadflow.lead_consent WHERE broker_id = %s", broker.broker_id) == [(1,)]


def test_a_provider_outage_leaves_sends_pending_and_a_later_batch_sends_them(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory, fake: FakeChannels,
        monkeypatch: pytest.MonkeyPatch) -> None:
    broker = make_broker()
    credentials(monkeypatch, broker)
    leads_of(settings, fresh_topics, broker)
    save_campaign(settings.database_url, broker.slug, "bienvenida",
                  {"trigger": {"type": "score_threshold", "score_min": 0}, "steps": [HELLO]}, status="active")
    fake.script("whatsapp", Reply(status=500), Reply(status=500))  # one attempt = two tries
    fake.script("telegram", Reply(status=429, retry_after=5))
    _, dispatched = batch(settings, fresh_topics, fake, NOON)
    assert dispatched.sent == 0 and sum(dispatched.retry_later.values()) == 2
    pending = rows(settings, "SELECT channel, status, attempts, reason FROM leadflow.outbound_sends "
                             "WHERE broker_id = %s ORDER BY channel", broker.broker_id)
    assert [(c, s, a) for c, s, a, _ in pending] == [("telegram", "pending", 1), ("whatsapp", "pending", 1)]
    assert "429" in pending[0][3] and "500" in pending[1][3]

    _, dispatched = batch(settings, fresh_topics, fake, NOON + timedelta(seconds=10))  # backoff (30 s) not over
    assert dispatched.sent == 0
    _, dispatched = batch(settings, fresh_topics, fake, NOON + timedelta(hours=1))
    assert dispatched.sent == 2
    assert rows(settings, "SELECT status, attempts FROM leadflow.outbound_sends WHERE broker_id = %s",
                broker.broker_id) == [("sent", 2), ("sent", 2)]


def test_missing_credentials_fail_the_send_with_the_variable_to_set(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory, fake: FakeChannels) -> None:
    broker = make_broker()
    leads_of(settings, fresh_topics, broker)
    save_campaign(settings.database_url, broker.slug, "sin-credenciales",
                  {"trigger": {"type": "score_threshold", "score_min": 0}, "steps": [HELLO]}, status="active")
    batch(settings, fresh_topics, fake, NOON)
    reasons = rows(settings, "SELECT status, reason FROM leadflow.outbound_sends WHERE broker_id = %s",
                   broker.broker_id)
    assert {status for status, _ in reasons} == {"failed"} and not fake.requests
    assert any(default_secret_env(broker.slug, "whatsapp_access_token") in reason for _, reason in reasons)


def test_a_campaign_naming_an_unknown_segment_or_variable_is_refused(
        settings: Settings, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    with pytest.raises(CampaignError, match="no segment 'vip'"):
        save_campaign(settings.database_url, broker.slug, "x",
                      {"trigger": {"type": "segment", "segment": "vip"}, "steps": [HELLO]})
    with pytest.raises(CampaignError, match="unknown variables nombre"):
        save_campaign(settings.database_url, broker.slug, "y", {"trigger": {"type": "manual"},
                                                                "steps": [{"action": "message",
                                                                           "template": "Hola {{nombre}}"}]})


def test_the_campaign_job_runs_as_dagster_assets_with_their_metadata(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory, fake: FakeChannels,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster import materialize

    from assets.campaigns import campaign_sends, lead_consent, outbound_dispatch, segment_memberships
    from pipelines.resources import ChannelSendersResource, KafkaResource, PostgresResource

    broker = make_broker()
    credentials(monkeypatch, broker)
    leads_of(settings, fresh_topics, broker)
    save_campaign(settings.database_url, broker.slug, "bienvenida",
                  {"trigger": {"type": "score_threshold", "score_min": 0}, "steps": [HELLO]}, status="active")
    as_of = {"config": {"as_of": NOON.isoformat()}}
    result = materialize([lead_consent, segment_memberships, campaign_sends, outbound_dispatch], resources={
        "postgres": PostgresResource(url=settings.database_url),
        "kafka": KafkaResource(bootstrap_servers=settings.kafka_bootstrap_servers, topic_prefix=fresh_topics.prefix),
        "channels": ChannelSendersResource(telegram_api_url=fake.url, whatsapp_api_url=fake.url, timeout_s=2)},
        run_config={"ops": {"segment_memberships": as_of, "campaign_sends": as_of, "outbound_dispatch": as_of}})
    assert result.success
    metadata: dict[str, dict[str, Any]] = {
        node: {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}
        for node in ("lead_consent", "campaign_sends", "outbound_dispatch")}
    assert metadata["lead_consent"]["opted_out_now"] >= 1
    assert metadata["campaign_sends"]["enrolled"] == 2 and metadata["campaign_sends"]["to_send"] == 2
    assert metadata["outbound_dispatch"]["sent"] == 2 and len(fake.sent("whatsapp") + fake.sent("telegram")) == 2


def test_receipts_and_replies_close_the_loop_into_campaign_figures(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory, fake: FakeChannels,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from leadflow.campaigns.outcomes import campaign_stats, close_the_loop
    from leadflow.events import DeliveryState, DeliveryStatus

    DELIVERED: DeliveryState = "delivered"
    READ: DeliveryState = "read"

    broker = make_broker()
    credentials(monkeypatch, broker)
    leads_of(settings, fresh_topics, broker)
    save_campaign(settings.database_url, broker.slug, "bienvenida",
                  {"trigger": {"type": "score_threshold", "score_min": 0},
                   "steps": [HELLO, {"action": "move_stage", "stage": "seguimiento", "delay_hours": 1}]},
                  status="active")
    batch(settings, fresh_topics, fake, NOON)
    [(wamid,)] = rows(settings, "SELECT provider_message_id FROM leadflow.outbound_sends WHERE broker_id = %s "
                                "AND channel = 'whatsapp'", broker.broker_id)
    receipts = [DeliveryStatus.build(broker_id=broker.broker_id, broker_slug=broker.slug, channel="whatsapp",
                                     provider_message_id=wamid, status=status, recipient=CAMILA,
                                     status_at=NOON + timedelta(minutes=minute))
                for status, minute in ((DELIVERED, 1), (READ, 2))]
    produce_all(make_producer(settings.kafka_bootstrap_servers), fresh_topics.messages,
                [(r.kafka_key(), r.model_dump_json().encode()) for r in receipts])
    send(settings, fresh_topics, broker, ("whatsapp", "wamid.c2", CAMILA, "¡Sí! ¿el sábado?", 185))  # 3 min after
    run(settings, fresh_topics)  # the backbone lands the receipts and the reply
    batch(settings, fresh_topics, fake, NOON + timedelta(hours=2))  # second step: both leads move a stage
    loop = close_the_loop(settings.database_url, broker.broker_id)
    assert (loop.delivered, loop.read, loop.replied) == (1, 1, 1)
    [stats] = campaign_stats(settings.database_url, broker.broker_id)
    assert {k: stats[k] for k in ("sent", "delivered", "read", "replied", "failed", "skipped")} == {
        "sent": 4, "delivered": 1, "read": 1, "replied": 1, "failed": 0, "skipped": 0}
    assert stats["success_rate"] == 1.0 and stats["reply_rate"] == 0.25
    assert stats["advanced_after_touch"] == 2  # the move_stage step moved both touched leads forward
    assert rows(settings, "SELECT status FROM leadflow.outbound_sends WHERE provider_message_id = %s "
                          "AND broker_id = %s", wamid, broker.broker_id) == [("replied",)]


def test_operators_save_segments_and_campaigns_from_the_command_line(
        settings: Settings, make_broker: BrokerFactory, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from leadflow.cli import main

    broker = make_broker()
    rules = {"all": [{"field": "temperature", "op": "eq", "value": "warm"},
                     {"field": "operation", "op": "eq", "value": "rent"}]}
    assert main(["segments", "save", "--broker", broker.slug, "--name", "arrendatarios tibios",
                 "--rules", json.dumps(rules)]) == 0
    definition = {"trigger": {"type": "inactivity", "days": 7, "segment": "arrendatarios tibios"}, "steps": [HELLO]}
    assert main(["campaigns", "save", "--broker", broker.slug, "--name", "recordatorio", "--status", "active",
                 "--definition", json.dumps(definition)]) == 0
    assert rows(settings, "SELECT status, activated_at IS NOT NULL FROM leadflow.campaigns WHERE broker_id = %s",
                broker.broker_id) == [("active", True)]
    bad = {"all": [{"field": "sueldo", "op": "gte", "value": 1}]}
    assert main(["segments", "save", "--broker", broker.slug, "--name", "x", "--rules", json.dumps(bad)]) == 1
    assert "unknown field 'sueldo'" in capsys.readouterr().err
    assert main(["campaigns", "stats"]) == 0


def test_a_call_step_places_calls_through_vapi_and_bland_with_the_leads_facts(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory, fake: FakeChannels,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from leadflow.outbound.senders import BlandCaller, VapiCaller

    vapi_broker, bland_broker = make_broker(), make_broker()
    for broker, kinds in ((vapi_broker, ("vapi_api_key", "vapi_assistant_id", "vapi_phone_number_id")),
                          (bland_broker, ("bland_api_key",))):
        for kind in kinds:
            monkeypatch.setenv(default_secret_env(broker.slug, kind), f"{kind}-not-a-secret")
        send(settings, fresh_topics, broker,
             ("whatsapp", f"wamid.call-{broker.slug}", CAMILA, "Hola, soy Camila, busco depto en Ñuñoa", 0))
        provider = "vapi" if broker is vapi_broker else "bland"
        save_campaign(settings.database_url, broker.slug, "llamada",
                      {"trigger": {"type": "score_threshold", "score_min": 0},
                       "steps": [{"action": "call", "provider": provider}]}, status="active")
    run(settings, fresh_topics)
    producer = make_producer(settings.kafka_bootstrap_servers)
    target(settings.database_url, NOON, lambda commands: produce_all(producer, fresh_topics.outbound, commands))
    result = dispatch(settings.database_url, settings.kafka_bootstrap_servers, fresh_topics,
                      {"vapi": VapiCaller(fake.url, 2), "bland": BlandCaller(fake.url, 2)}, clock=lambda: NOON)
    assert result.sent == 2
    [vapi] = fake.sent("vapi")
    [bland] = fake.sent("bland")
    assert vapi["customer"]["number"] == "+56911112222" and vapi["assistantId"] == "vapi_assistant_id-not-a-secret"
    assert bland["phone_number"] == "+56911112222" and "Ñuñoa" in bland["task"] and "Camila" in bland["task"]
    ids = rows(settings, "SELECT channel, provider_message_id FROM leadflow.outbound_sends WHERE broker_id IN (%s, %s) "
                         "ORDER BY channel", vapi_broker.broker_id, bland_broker.broker_id)
    assert [channel for channel, _ in ids] == ["bland", "vapi"] and all(i for _, i in ids)


def test_the_trigger_sensor_asks_for_a_batch_once_per_new_stage_move_or_score(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context

    from pipelines.resources import PostgresResource
    from sensors.campaign_triggers import campaign_trigger_sensor

    def tick(cursor: str | None) -> SensorResult | SkipReason:
        with DagsterInstance.ephemeral() as instance:
            context = build_sensor_context(instance=instance, cursor=cursor,
                                           resources={"postgres": PostgresResource(url=settings.database_url)})
            result = campaign_trigger_sensor(context)
        assert isinstance(result, SensorResult | SkipReason)
        return result

    broker = make_broker()
    save_campaign(settings.database_url, broker.slug, "nuevos-potenciales", {
        "trigger": {"type": "stage_change", "stage": "potencial"}, "steps": [HELLO]}, status="active")
    first = tick(None)
    assert isinstance(first, SensorResult) and first.run_requests
    assert isinstance(tick(first.cursor), SkipReason)  # nothing new: no second batch
    send(settings, fresh_topics, broker, ("whatsapp", "wamid.s1", CAMILA, "Hola, soy Camila, busco depto", 0))
    run(settings, fresh_topics)  # scores and stage moves arrive
    later = tick(first.cursor)
    assert isinstance(later, SensorResult) and later.cursor != first.cursor


def test_an_unreadable_command_is_counted_and_its_send_still_goes_out(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory, fake: FakeChannels,
        monkeypatch: pytest.MonkeyPatch) -> None:
    broker = make_broker()
    credentials(monkeypatch, broker)
    leads_of(settings, fresh_topics, broker)
    save_campaign(settings.database_url, broker.slug, "bienvenida",
                  {"trigger": {"type": "score_threshold", "score_min": 0}, "steps": [HELLO]}, status="active")
    garbled: list[tuple[bytes, bytes]] = []
    target(settings.database_url, NOON, lambda commands: garbled.extend((k, b"{not json") for k, _ in commands))
    produce_all(make_producer(settings.kafka_bootstrap_servers), fresh_topics.outbound, garbled)
    senders: dict[str, Sender] = {"telegram": TelegramSender(fake.url, 2, RateLimiter(1000, 0)),
                                  "whatsapp": WhatsAppSender(fake.url, 2, clock=lambda: NOON)}
    result = dispatch(settings.database_url, settings.kafka_bootstrap_servers, fresh_topics, senders,
                      clock=lambda: NOON)
    assert result.malformed == 2 and result.sent == 2  # the sends were owed in PostgreSQL, not only on the topic
    assert rows(settings, "SELECT DISTINCT status FROM leadflow.outbound_sends WHERE broker_id = %s",
                broker.broker_id) == [("sent",)]
