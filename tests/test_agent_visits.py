"""Visits booked in the chat, through the real agent: the ingest API, Kafka, PostgreSQL, the agent process and
a fake Telegram. The lead is offered free slots, answers in words, gets the booking confirmed back, cancels
by writing and books again; two leads choosing one slot at once get one visit and one new offer; an answer
that fits two offered slots is asked about and nothing is booked.

The agent runs on the real clock (its replies and the leads' messages must order as they happened), so the
tests read the offer the agent made and answer it in words built from it: nothing depends on today's date.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from ingest_api.app import create_app
from leadflow.agent.broker_llms import BrokerLLMs
from leadflow.agent.replies import Burst, Inbound
from leadflow.agent.stream import Database, Directory, LeadAgent
from leadflow.agent.voice import Voice
from leadflow.appointments import store
from leadflow.appointments.slots import Slot
from leadflow.appointments.texts import when
from leadflow.config import Settings
from leadflow.db.connection import transaction
from leadflow.demo.run import BackgroundServer
from leadflow.kafka import make_producer
from leadflow.landing import land
from leadflow.outbound.senders import RateLimiter, TelegramSender
from tests.agent_world import AgentWorld, Lead, world_settings
from tests.conftest import BrokerFactory
from tests.fake_channels import FakeChannels
from tests.fake_llm import FakeLLM, ok
from tests.lead_rows import lead_with_a_message

pytestmark = pytest.mark.services
SANTIAGO = ZoneInfo("America/Santiago")
ADDRESS = "Av. Providencia 1234, Providencia"
READY = "Hola, busco arrendar un depto de 2 dormitorios en Providencia, hasta 600 lucas"
DAYS = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")
SPANISH = Voice("es", "CL")


@pytest.fixture
def world(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[AgentWorld]:
    ws = world_settings(settings)
    fake = FakeChannels().start()
    with BackgroundServer(create_app(ws, broker_reload_interval_s=0)) as ingest, httpx.Client(timeout=10) as http:
        w = AgentWorld(ws, fake, ingest, http, monkeypatch)
        try:
            yield w
        finally:
            w.stop_agents()
            fake.stop()
            # The agents' replies landed, as the landing would: an agent started by a later test produces again
            # every sent reply it finds unlanded (``LeadAgent._republish_unlanded``), into its own topics.
            land(ws.database_url, ws.kafka_bootstrap_servers, ws.topics)


def _visiting_rules(world: AgentWorld, broker_id: int, **rules: object) -> None:
    with transaction(world.settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.broker_settings (broker_id, appointments) VALUES (%s, %s)
                       ON CONFLICT (broker_id) DO UPDATE SET appointments = EXCLUDED.appointments""",
                    (broker_id, json.dumps({"address": ADDRESS, **rules})))


def _offer(world: AgentWorld, broker_id: int, lead_id: int) -> store.Offer:
    with transaction(world.settings.database_url) as conn, conn.cursor() as cur:
        offer = store.open_offer(cur, broker_id, lead_id)
    assert offer is not None, "no open offer"
    return offer


def _visits(world: AgentWorld, lead_id: int) -> list[tuple[str, datetime, str, str | None]]:
    with transaction(world.settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("""SELECT status, starts_at, source, address FROM leadflow.appointments WHERE lead_id = %s
                       ORDER BY appointment_id""", (lead_id,))
        return list(cur.fetchall())


def _in_words(slot: Slot) -> str:
    """How a lead in Chile names a slot: "el martes 8 a las 5" (five in the afternoon said as 5)."""
    local = slot.start.astimezone(SANTIAGO)
    hour = local.hour - 12 if local.hour > 12 else local.hour
    minutes = " y media" if local.minute == 30 else ""
    return f"el {DAYS[local.weekday()]} {local.day} a las {hour}{minutes}"


def _make_lead(world: AgentWorld, broker_id: int, contact: str) -> int:
    return lead_with_a_message(world.settings.database_url, broker_id, "telegram", contact)


def _ready_lead(world: AgentWorld, make_broker: BrokerFactory, name: str = "Camila") -> tuple[Lead, int]:
    broker = make_broker()
    world.enable(broker, persona_name="Vale")
    _visiting_rules(world, broker.broker_id)
    lead = world.lead(broker, name=name)
    return lead, _make_lead(world, broker.broker_id, lead.user)


def test_offer_choice_in_words_confirmation_cancellation_and_a_new_booking(
        world: AgentWorld, make_broker: BrokerFactory) -> None:
    lead, lead_id = _ready_lead(world, make_broker)
    broker_id = lead.broker.broker_id
    world.start_agent()
    lead.say(READY)
    offered = lead.next_reply()
    offer = _offer(world, broker_id, lead_id)
    assert len(offer.slots) == 3
    for place, slot in enumerate(offer.slots, start=1):
        assert f"{place}) {when(slot.start, 'America/Santiago', SPANISH)}" in offered
    # The afternoon slot if there is one: "a las 5" must be read as 17:00 from the offer.
    chosen = next((s for s in offer.slots if s.start.astimezone(SANTIAGO).hour >= 13), offer.slots[-1])

    lead.say(_in_words(chosen))
    booked = lead.next_reply()
    print(offered, booked, sep="\n---\n")
    assert "agendada" in booked and when(chosen.start, "America/Santiago", SPANISH) in booked and ADDRESS in booked
    assert _visits(world, lead_id) == [("confirmed", chosen.start, "agent", ADDRESS)]

    lead.say("Lo siento, no voy a poder")
    cancelled = lead.next_reply()
    print(cancelled)
    assert "cancelé" in cancelled.lower() and "1)" in cancelled
    assert [v[0] for v in _visits(world, lead_id)] == ["cancelled"]
    again = _offer(world, broker_id, lead_id)

    lead.say("la segunda")
    rebooked = lead.next_reply()
    assert when(again.slots[1].start, "America/Santiago", SPANISH) in rebooked
    assert [(v[0], v[1]) for v in _visits(world, lead_id)] == [("cancelled", chosen.start),
                                                               ("confirmed", again.slots[1].start)]
    with transaction(world.settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("""SELECT from_status, to_status, actor FROM leadflow.appointment_events WHERE lead_id = %s
                       ORDER BY event_id""", (lead_id,))
        assert cur.fetchall() == [(None, "confirmed", "lead"), ("confirmed", "cancelled", "lead"),
                                  (None, "confirmed", "lead")]


def test_two_leads_choosing_one_slot_at_once_one_is_booked_the_other_offered_others(
        world: AgentWorld, make_broker: BrokerFactory) -> None:
    first, first_id = _ready_lead(world, make_broker, "Ana")
    broker = first.broker
    second = world.lead(broker, name="Bea")
    second_id = _make_lead(world, broker.broker_id, second.user)
    for lead in (first, second):
        lead.say(READY)
    world.start_agent()
    first.next_reply(), second.next_reply()
    # Nobody booked yet: both were offered the same slots (the earliest, unless the clock crossed the slot grid
    # between the two offers); each names the first they share in words.
    offers = [_offer(world, broker.broker_id, lead) for lead in (first_id, second_id)]
    slot = next(s for s in offers[0].slots if s in offers[1].slots)

    gate = threading.Barrier(2)

    def choose(lead: Lead) -> None:
        gate.wait()
        lead.say(_in_words(slot))

    threads = [threading.Thread(target=choose, args=(lead,)) for lead in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    answers = {first.name: first.next_reply(), second.name: second.next_reply()}
    booked = [(name, _visits(world, lead_id)) for name, lead_id in (("Ana", first_id), ("Bea", second_id))]
    winners = [name for name, visits in booked if visits == [("confirmed", slot.start, "agent", ADDRESS)]]
    losers = [name for name, visits in booked if visits == []]
    assert len(winners) == 1 and len(losers) == 1, booked
    assert "agendada" in answers[winners[0]]
    assert "se acaba de ocupar" in answers[losers[0]]
    loser_id = first_id if losers[0] == "Ana" else second_id
    assert slot not in _offer(world, broker.broker_id, loser_id).slots


def test_an_answer_that_fits_two_offered_slots_is_asked_about_and_nothing_is_booked(
        world: AgentWorld, make_broker: BrokerFactory) -> None:
    lead, lead_id = _ready_lead(world, make_broker)
    broker_id = lead.broker.broker_id
    world.start_agent()
    lead.say(READY)
    lead.next_reply()
    # The agent's offer, replaced by one listing the same weekday twice (a broker with few visiting days).
    first = datetime.now(SANTIAGO).date() + timedelta(days=3)
    with transaction(world.settings.database_url) as conn, conn.cursor() as cur:
        free = [s for s in store.available(cur, broker_id, datetime.now(SANTIAGO))
                if s.start.astimezone(SANTIAGO).date() >= first]
        same_day = next(s for s in free if any(o.start - s.start == timedelta(days=7) for o in free))
        week_later = next(o for o in free if o.start - same_day.start == timedelta(days=7))
        cur.execute("""UPDATE leadflow.appointment_offers SET slots = %s WHERE lead_id = %s AND status = 'open'""",
                    (json.dumps([same_day.to_json(), week_later.to_json()]), lead_id))
    weekday = DAYS[same_day.start.astimezone(SANTIAGO).weekday()]
    lead.say(f"el {weekday}")
    asked = lead.next_reply()
    assert "¿Cuál de estos" in asked and "1)" in asked and "2)" in asked
    assert _visits(world, lead_id) == []
    lead.say("la segunda")
    assert "agendada" in lead.next_reply()
    assert [(v[0], v[1]) for v in _visits(world, lead_id)] == [("confirmed", week_later.start)]


def test_nobody_free_hands_the_lead_to_a_person(world: AgentWorld, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    world.enable(broker)
    _visiting_rules(world, broker.broker_id, hours={})  # nobody takes visits on any day
    lead = world.lead(broker)
    lead_id = _make_lead(world, broker.broker_id, lead.user)
    world.start_agent()
    lead.say(READY)
    assert "le paso tu caso a un ejecutivo" in lead.next_reply()
    with transaction(world.settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT handler, reason FROM leadflow.lead_handlers WHERE lead_id = %s", (lead_id,))
        [(handler, reason)] = cur.fetchall()
        assert handler == "person" and "visit_nobody_free" in reason
        cur.execute("SELECT count(*) FROM leadflow.appointment_offers WHERE lead_id = %s", (lead_id,))
        assert cur.fetchone() == (0,)


def test_an_llm_broker_s_proposal_is_a_real_offer_and_the_choice_is_booked_by_the_rules(
        world: AgentWorld, make_broker: BrokerFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    llm = FakeLLM().start()
    try:
        monkeypatch.setenv("LEADFLOW_OPENAI_API_KEY", "test-key-not-a-secret")
        monkeypatch.setenv("LEADFLOW_OPENAI_BASE_URL", llm.url + "/v1")
        lead, lead_id = _ready_lead(world, make_broker)
        broker_id = lead.broker.broker_id
        world.enable(lead.broker, policy="llm", persona_name="Vale")
        with transaction(world.settings.database_url) as conn, conn.cursor() as cur:
            cur.execute("""UPDATE leadflow.broker_settings SET llm = '{"provider": "openai", "model": "gpt-4o-mini"}'
                           WHERE broker_id = %s""", (broker_id,))
        # The model proposes a time of its own: the lead is shown the free slots instead.
        llm.script("openai", ok(reply="¿Te parece visitar el sábado a las 11?", action="propose_visit", asks=None))
        world.start_agent(llm=BrokerLLMs(deadline_s=2.0))
        lead.say(READY)
        offered = lead.next_reply()
        offer = _offer(world, broker_id, lead_id)
        assert "sábado a las 11" not in offered and f"2) {when(offer.slots[1].start, 'America/Santiago', SPANISH)}" \
            in offered
        lead.say("la segunda")
        assert "agendada" in lead.next_reply()
        assert [(v[0], v[1]) for v in _visits(world, lead_id)] == [("confirmed", offer.slots[1].start)]
    finally:
        llm.stop()


def test_a_burst_read_again_before_its_reply_was_sent_writes_nothing_again(world: AgentWorld,
                                                                          make_broker: BrokerFactory) -> None:
    """A crash between the claim and the send leaves the claim; the burst read again decides the same move,
    whose write is undone with the claim's savepoint: the offer the lead is sent is the one first recorded."""
    lead, lead_id = _ready_lead(world, make_broker)
    broker = lead.broker
    now = datetime.now(UTC)
    with transaction(world.settings.database_url) as conn, conn.cursor() as cur:
        assert store.make_offer(cur, broker.broker_id, lead_id, now, source="agent", channel="telegram") is not None
    agent = LeadAgent(world.settings, {"telegram": TelegramSender(world.fake.url, 2, RateLimiter(1000, 0))},
                      workers=1)
    agent.db = Database(world.settings.database_url, 2)
    agent.directory = Directory(agent.db)
    agent.producer = make_producer(world.settings.kafka_bootstrap_servers)
    said = Inbound("tg-wish-1", "no puedo, ¿el sábado?", "text", now, now, 0, 0)

    def answer() -> None:
        agent._answer(Burst(broker.broker_id, broker.slug, "telegram", lead.user, lead.user, None, "Camila",
                            {"channel_user_id": lead.user}, [said]))

    def offers() -> list[tuple[int, str]]:
        with transaction(world.settings.database_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT offer_id, status FROM leadflow.appointment_offers WHERE lead_id = %s "
                        "ORDER BY offer_id", (lead_id,))
            return list(cur.fetchall())

    try:
        answer()
        first = offers()
        assert [status for _, status in first] == ["superseded", "open"]
        with transaction(world.settings.database_url) as conn, conn.cursor() as cur:
            cur.execute("UPDATE leadflow.agent_replies SET status = 'claimed' WHERE broker_id = %s",
                        (broker.broker_id,))  # as if the process died before the provider answered
        answer()
    finally:
        agent.db.close()
    assert offers() == first
    sent = lead.replies()
    assert len(sent) == 2 and sent[0] == sent[1] and "sábado" in sent[0]
