"""A campaign's visit step with the broker's bot off: the message lists the free slots of an offer made for the
lead, the lead answers in words, the batch (``appointments.answers``) books the visit and queues the reply,
which the dispatcher sends. Real PostgreSQL and Kafka; WhatsApp and Telegram are local fakes."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

import psycopg2
import pytest

from leadflow.appointments import store
from leadflow.appointments.answers import answer_replies
from leadflow.appointments.slots import Slot
from leadflow.appointments.texts import Wording, when
from leadflow.campaigns.store import save_campaign
from leadflow.config import Settings, Topics, with_database
from leadflow.db.connection import transaction
from leadflow.db.migrate import downgrade, upgrade
from leadflow.kafka import make_producer, produce_all
from leadflow.outbound.dispatcher import dispatch
from leadflow.outbound.senders import RateLimiter, Sender, TelegramSender, WhatsAppSender
from leadflow.services import postgres as embedded_postgres
from tests.conftest import BrokerFactory
from tests.fake_channels import FakeChannels
from tests.test_campaigns import CAMILA, NOON, TOMAS, batch, credentials, fake  # noqa: F401  (the fake fixture)
from tests.test_leads_pipeline import rows, run, send

pytestmark = pytest.mark.services
ADDRESS = "Av. Irarrázaval 2401, Ñuñoa"
SPANISH = Wording.of("es-CL")


def _lead(settings: Settings, broker_id: int, contact: str | None) -> int:
    [(lead_id,)] = rows(settings, "SELECT lead_id FROM leadflow.lead_identities WHERE broker_id = %s "
                                  "AND identity_value = %s", broker_id, contact)
    return int(lead_id)


def test_a_visit_step_offers_free_slots_and_the_answer_books_one_through_the_batch(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory, fake: FakeChannels,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    broker = make_broker()
    credentials(monkeypatch, broker)
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.broker_settings (broker_id, appointments) VALUES (%s, %s)
                       ON CONFLICT (broker_id) DO UPDATE SET appointments = EXCLUDED.appointments""",
                    (broker.broker_id, json.dumps({"address": ADDRESS})))
    send(settings, fresh_topics, broker,
         ("whatsapp", "wamid.v1", CAMILA, "Hola, soy Camila, busco depto en Ñuñoa", 0),
         ("telegram", "9101", TOMAS, "Hola, busco casa en Macul", 1))
    run(settings, fresh_topics)
    save_campaign(settings.database_url, broker.slug, "visita", {
        "trigger": {"type": "score_threshold", "score_min": 0},
        "steps": [{"action": "visit", "template": "{{first_name}}, ¿visitamos un depto? Tengo estos horarios:\n"
                                                  "{{visit_options}}\nResponde con el número o el día.",
                   "whatsapp_template": {"name": "visita", "language": "es",
                                         "parameters": ["{{first_name}}", "{{visit_options}}"]}}]},
        status="active")
    batch(settings, fresh_topics, fake, NOON)
    camila = _lead(settings, broker.broker_id, CAMILA.channel_user_id)
    tomas = _lead(settings, broker.broker_id, TOMAS.channel_user_id)
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        offer = store.open_offer(cur, broker.broker_id, camila)
        assert offer is not None and store.open_offer(cur, broker.broker_id, tomas) is not None
    [proposal] = fake.sent("whatsapp")
    listed = "\n".join(f"{i}) {when(s.start, 'America/Santiago', SPANISH)}" for i, s in enumerate(offer.slots, 1))
    assert proposal["text"]["body"] == (f"Camila, ¿visitamos un depto? Tengo estos horarios:\n{listed}\n"
                                        "Responde con el número o el día.")
    # Outside the 24-hour window the template would go instead: its parameters on one line (WhatsApp's rule).
    [(parameters,)] = rows(settings, """SELECT payload -> 'template' -> 'parameters' FROM leadflow.outbound_sends
                                       WHERE lead_id = %s AND action = 'visit'""", camila)
    assert parameters == ["Camila", listed.replace("\n", "; ")]

    send(settings, fresh_topics, broker, ("whatsapp", "wamid.v2", CAMILA, "la segunda porfa", 190),
         ("telegram", "9102", TOMAS, "no gracias", 191))
    # The same person writing to another broker: never read against this broker's offer.
    other = make_broker()
    send(settings, fresh_topics, other, ("whatsapp", "wamid.o1", CAMILA, "la primera", 192))
    run(settings, fresh_topics)
    later = NOON + timedelta(hours=1)
    producer = make_producer(settings.kafka_bootstrap_servers)

    def publish(commands: list[tuple[bytes, bytes]]) -> None:
        produce_all(producer, fresh_topics.outbound, commands)

    answered = answer_replies(settings.database_url, later, publish, [broker.broker_id, other.broker_id])
    assert (answered.read, answered.queued, answered.outcomes) == (2, 2, {"booked": 1, "declined": 1})
    senders: dict[str, Sender] = {
        "telegram": TelegramSender(fake.url, timeout_s=2, limiter=RateLimiter(per_second=1000, key_interval_s=0)),
        "whatsapp": WhatsAppSender(fake.url, timeout_s=2, clock=lambda: later)}
    assert dispatch(settings.database_url, settings.kafka_bootstrap_servers, fresh_topics, senders,
                    clock=lambda: later).sent == 2

    visits = rows(settings, "SELECT lead_id, status, starts_at, source, address FROM leadflow.appointments "
                            "WHERE broker_id = %s", broker.broker_id)
    assert visits == [(camila, "confirmed", offer.slots[1].start, "campaign", ADDRESS)]
    confirmation = fake.sent("whatsapp")[-1]["text"]["body"]
    local = offer.slots[1].start.astimezone(ZoneInfo("America/Santiago"))
    assert confirmation == f"¡Listo! Visita agendada para el {when(local, 'America/Santiago', SPANISH)} en {ADDRESS}."
    assert fake.sent("telegram")[-1]["text"].startswith("Sin problema")
    assert rows(settings, "SELECT status FROM leadflow.appointment_offers WHERE lead_id = %s", tomas) == [("declined",)]
    # Read once: a second batch answers nothing again.
    again = answer_replies(settings.database_url, later + timedelta(minutes=5), publish,
                           [broker.broker_id, other.broker_id])
    assert (again.read, again.queued) == (0, 0)


def test_a_broker_with_the_bot_on_leaves_the_answers_to_the_agent(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory, fake: FakeChannels,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    broker = make_broker()
    credentials(monkeypatch, broker)
    send(settings, fresh_topics, broker, ("whatsapp", "wamid.b1", CAMILA, "Hola, soy Camila, busco depto en Ñuñoa", 0))
    run(settings, fresh_topics)
    save_campaign(settings.database_url, broker.slug, "visita", {
        "trigger": {"type": "score_threshold", "score_min": 0},
        "steps": [{"action": "visit", "template": "{{first_name}}, ¿te acomoda {{visit_time}}?"}]}, status="active")
    batch(settings, fresh_topics, fake, NOON)
    [proposal] = fake.sent("whatsapp")
    assert "pronto" not in proposal["text"]["body"] and " a las " in proposal["text"]["body"]
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.broker_settings (broker_id, agent) VALUES (%s, '{"enabled": true}')
                       ON CONFLICT (broker_id) DO UPDATE SET agent = EXCLUDED.agent""", (broker.broker_id,))
    send(settings, fresh_topics, broker, ("whatsapp", "wamid.b2", CAMILA, "la segunda", 190))
    run(settings, fresh_topics)
    answered = answer_replies(settings.database_url, NOON + timedelta(hours=1), lambda commands: None,
                              [broker.broker_id])
    assert answered.read == 0
    assert rows(settings, "SELECT count(*) FROM leadflow.appointments WHERE broker_id = %s", broker.broker_id) == [(0,)]


def test_a_visit_step_nobody_can_take_is_skipped_with_the_reason_and_not_sent(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory, fake: FakeChannels,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    broker = make_broker()
    credentials(monkeypatch, broker)
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.broker_settings (broker_id, appointments) VALUES (%s, '{"hours": {}}')
                       ON CONFLICT (broker_id) DO UPDATE SET appointments = EXCLUDED.appointments""",
                    (broker.broker_id,))
    send(settings, fresh_topics, broker, ("whatsapp", "wamid.n1", CAMILA, "Hola, soy Camila, busco depto en Ñuñoa", 0))
    run(settings, fresh_topics)
    save_campaign(settings.database_url, broker.slug, "visita", {
        "trigger": {"type": "score_threshold", "score_min": 0},
        "steps": [{"action": "visit", "template": "{{first_name}}: {{visit_options}}"}]}, status="active")
    targeted, dispatched = batch(settings, fresh_topics, fake, NOON)
    assert targeted.sent == 0 and targeted.skipped == {"nobody free to take a visit over the booking horizon": 1}
    assert dispatched.sent == 0 and fake.sent("whatsapp") == []
    assert rows(settings, "SELECT status FROM leadflow.outbound_sends WHERE broker_id = %s",
                broker.broker_id) == [("skipped",)]


def test_the_answers_migration_goes_down_and_up_again(pg_admin_url: str) -> None:
    name = f"leadflow_aa_{uuid.uuid4().hex[:8]}"
    embedded_postgres.create_database(pg_admin_url, name)
    url = with_database(pg_admin_url, name)
    try:
        upgrade(url, "0031_appointment_conversation")
        downgrade(url, "0028_appointments")
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('leadflow.appointment_answers'), to_regclass('leadflow.appointments')")
            assert cur.fetchone() == (None, "leadflow.appointments")
        conn.close()
        upgrade(url)
    finally:
        embedded_postgres.drop_database(pg_admin_url, name)


def test_with_the_bot_off_a_hand_booked_visit_is_confirmed_or_cancelled_by_the_leads_words_and_left_to_people(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    send(settings, fresh_topics, broker, ("whatsapp", "wamid.h1", CAMILA, "Hola, busco depto en Ñuñoa", 0))
    run(settings, fresh_topics)
    camila = _lead(settings, broker.broker_id, CAMILA.channel_user_id)
    start = (NOON + timedelta(days=2)).replace(minute=0)
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        booked = store.book(cur, broker.broker_id, camila, Slot(start, start + timedelta(hours=1), (None,)), NOON,
                            source="person", actor="person", status="proposed", check_free=False)
    assert isinstance(booked, store.Appointment)
    # The reminder asked for a CONFIRMO; the lead answers, then changes their mind.
    send(settings, fresh_topics, broker, ("whatsapp", "wamid.h2", CAMILA, "Confirmo, ahí estaré", 200))
    run(settings, fresh_topics)
    nothing_sent: list[tuple[bytes, bytes]] = []
    first = answer_replies(settings.database_url, NOON + timedelta(hours=1), nothing_sent.extend, [broker.broker_id])
    assert (first.read, first.queued, first.outcomes) == (1, 0, {"confirmed": 1})
    send(settings, fresh_topics, broker, ("whatsapp", "wamid.h3", CAMILA, "Perdón, al final no voy a poder ir", 260))
    run(settings, fresh_topics)
    second = answer_replies(settings.database_url, NOON + timedelta(hours=2), nothing_sent.extend, [broker.broker_id])
    assert (second.read, second.queued, second.outcomes) == (1, 0, {"cancelled": 1})
    assert nothing_sent == []  # no campaign to answer from: the broker's people answer in the workspace
    assert rows(settings, """SELECT from_status, to_status, actor FROM leadflow.appointment_events
                             WHERE appointment_id = %s ORDER BY event_id""", booked.appointment_id) == [
        (None, "proposed", "person"), ("proposed", "confirmed", "lead"), ("confirmed", "cancelled", "lead")]
    assert rows(settings, "SELECT outcome, appointment_id FROM leadflow.appointment_answers WHERE lead_id = %s "
                          "ORDER BY answered_at", camila) == [("confirmed", booked.appointment_id),
                                                              ("cancelled", booked.appointment_id)]
