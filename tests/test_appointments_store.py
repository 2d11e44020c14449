"""Appointments in PostgreSQL: the database keeps one person from being booked twice; statuses, stage moves,
rescheduling and offers as the agent, campaigns and pages use them."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from leadflow.appointments import store
from leadflow.appointments.slots import Preference, Slot
from leadflow.db.connection import transaction
from leadflow.users import add_user
from tests.conftest import BrokerFactory
from tests.lead_rows import give_first_messages

pytestmark = pytest.mark.services
SANTIAGO = ZoneInfo("America/Santiago")
# A Monday well clear of any daylight-saving change; "now" is passed, never read from the clock.
NOW = datetime(2027, 3, 1, 8, 0, tzinfo=SANTIAGO)


def _leads(database_url: str, broker_id: int, count: int) -> list[int]:
    with transaction(database_url) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.leads (lead_id, broker_id) SELECT nextval('leadflow.lead_id_seq'), %s
                       FROM generate_series(1, %s) RETURNING lead_id""", (broker_id, count))
        leads = [row[0] for row in cur.fetchall()]
        give_first_messages(cur, broker_id, leads, NOW)
        return leads


def _slot(hour: int, day: int = 2, minutes: int = 60) -> Slot:
    start = datetime(2027, 3, day, hour, 0, tzinfo=SANTIAGO)
    return Slot(start, start + timedelta(minutes=minutes), (None,))


def test_two_leads_choosing_one_slot_at_once_one_wins_the_other_is_told(database_url: str,
                                                                        make_broker: BrokerFactory) -> None:
    broker = make_broker()
    leads = _leads(database_url, broker.broker_id, 2)
    barrier = threading.Barrier(2)
    results: dict[int, object] = {}

    def choose(lead_id: int) -> None:
        with transaction(database_url) as conn, conn.cursor() as cur:
            store.broker_rules(cur, broker.broker_id)
            barrier.wait()
            results[lead_id] = store.book(cur, broker.broker_id, lead_id, _slot(11), NOW, source="agent",
                                          actor="lead")

    threads = [threading.Thread(target=choose, args=(lead,)) for lead in leads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kinds = sorted(type(r).__name__ for r in results.values())
    assert kinds == ["Appointment", "Taken"]
    with transaction(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM leadflow.appointments WHERE broker_id = %s", (broker.broker_id,))
        assert cur.fetchone() == (1,)
        # Within the buffer after it (60-minute visit + 30 minutes): refused too; after it: booked.
        loser = next(lead for lead, r in results.items() if isinstance(r, store.Taken))
        assert isinstance(store.book(cur, broker.broker_id, loser, _slot(12), NOW, source="agent", actor="lead",
                                     check_free=False), store.Taken)
        assert isinstance(store.book(cur, broker.broker_id, loser, _slot(13), NOW, source="agent", actor="lead"),
                          store.Appointment)


def test_the_second_person_free_at_a_time_takes_the_visit_the_first_cannot(
        database_url: str, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    ana, ben = (add_user(database_url, f"{name.lower()}-{broker.slug}@example.com", "a-long-password-1",
                         role="AGENT", broker_slug=broker.slug, display_name=name).user_id for name in ("Ana", "Ben"))
    leads = _leads(database_url, broker.broker_id, 3)
    with transaction(database_url) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO leadflow.agent_schedules (user_id, broker_id) VALUES (%s, %s), (%s, %s)",
                    (ana, broker.broker_id, ben, broker.broker_id))
        slot = next(s for s in store.available(cur, broker.broker_id, NOW) if s.start == _slot(11).start)
        assert set(slot.agents) == {ana, ben}
        first = store.book(cur, broker.broker_id, leads[0], slot, NOW, source="agent", actor="lead")
        second = store.book(cur, broker.broker_id, leads[1], slot, NOW, source="agent", actor="lead")
        third = store.book(cur, broker.broker_id, leads[2], slot, NOW, source="agent", actor="lead")
        assert isinstance(first, store.Appointment) and isinstance(second, store.Appointment)
        assert {first.agent_id, second.agent_id} == {ana, ben}
        assert isinstance(third, store.Taken)
        # Both are busy at 11:00 now: the slot is no longer offered.
        assert _slot(11).start not in {s.start for s in store.available(cur, broker.broker_id, NOW)}


def test_statuses_move_the_lead_and_record_who_changed_them(database_url: str, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    (lead,) = _leads(database_url, broker.broker_id, 1)
    with transaction(database_url) as conn, conn.cursor() as cur:
        booked = store.book(cur, broker.broker_id, lead, _slot(11), NOW, source="person", actor="system",
                            status="proposed")
        assert isinstance(booked, store.Appointment) and booked.status == "proposed"
        confirmed = store.change_status(cur, broker.broker_id, booked.appointment_id, "confirmed", NOW, actor="lead")
        assert confirmed.calendar_state == "pending"
        with pytest.raises(store.AppointmentError, match="not started"):
            store.change_status(cur, broker.broker_id, booked.appointment_id, "completed", NOW, actor="system")
        later = NOW + timedelta(days=2)
        store.change_status(cur, broker.broker_id, booked.appointment_id, "completed", later, actor="system")
        with pytest.raises(store.AppointmentError, match="cannot become cancelled"):
            store.change_status(cur, broker.broker_id, booked.appointment_id, "cancelled", later, actor="system")
        cur.execute("SELECT from_status, to_status, actor FROM leadflow.appointment_events WHERE appointment_id = %s "
                    "ORDER BY event_id", (booked.appointment_id,))
        assert cur.fetchall() == [(None, "proposed", "system"), ("proposed", "confirmed", "lead"),
                                  ("confirmed", "completed", "system")]
        cur.execute("SELECT from_stage, to_stage FROM leadflow.stage_events WHERE lead_id = %s ORDER BY occurred_at",
                    (lead,))
        assert cur.fetchall() == [(None, "agendado"), ("agendado", "seguimiento")]


def test_a_reschedule_books_the_new_time_before_it_lets_go_of_the_old(database_url: str,
                                                                      make_broker: BrokerFactory) -> None:
    broker = make_broker()
    lead, other = _leads(database_url, broker.broker_id, 2)
    with transaction(database_url) as conn, conn.cursor() as cur:
        booked = store.book(cur, broker.broker_id, lead, _slot(11), NOW, source="agent", actor="lead")
        blocker = store.book(cur, broker.broker_id, other, _slot(15), NOW, source="agent", actor="lead")
        assert isinstance(booked, store.Appointment) and isinstance(blocker, store.Appointment)
        # Moving into a taken time leaves the visit where it was.
        assert isinstance(store.reschedule(cur, broker.broker_id, booked.appointment_id, _slot(15), NOW,
                                           actor="lead"), store.Taken)
        assert store.get(cur, broker.broker_id, booked.appointment_id).status == "confirmed"  # type: ignore[union-attr]
        # Half an hour later overlaps only the visit being moved: allowed.
        moved = store.reschedule(cur, broker.broker_id, booked.appointment_id,
                                 Slot(_slot(11).start + timedelta(minutes=30), _slot(11).end + timedelta(minutes=30),
                                      (None,)), NOW, actor="lead")
        assert isinstance(moved, store.Appointment) and moved.rescheduled_from == booked.appointment_id
        assert store.get(cur, broker.broker_id, booked.appointment_id).status == "rescheduled"  # type: ignore[union-attr]
        assert store.upcoming(cur, broker.broker_id, lead, NOW) == moved


def test_an_offer_replaces_the_last_and_follows_the_lead_s_preference(database_url: str,
                                                                     make_broker: BrokerFactory) -> None:
    broker = make_broker()
    (lead,) = _leads(database_url, broker.broker_id, 1)
    with transaction(database_url) as conn, conn.cursor() as cur:
        first = store.make_offer(cur, broker.broker_id, lead, NOW, source="agent", channel="telegram")
        assert first is not None and len(first.slots) == 3
        saturday = store.make_offer(cur, broker.broker_id, lead, NOW, source="agent", channel="telegram",
                                    preference=Preference(weekday=5))
        assert saturday is not None
        assert {s.start.astimezone(SANTIAGO).weekday() for s in saturday.slots} == {5}
        assert store.open_offer(cur, broker.broker_id, lead) == saturday
        cur.execute("SELECT status FROM leadflow.appointment_offers WHERE lead_id = %s ORDER BY offer_id", (lead,))
        assert [r[0] for r in cur.fetchall()] == ["superseded", "open"]
        chosen = store.book(cur, broker.broker_id, lead, saturday.slots[1], NOW, source="agent", actor="lead",
                            offer_id=saturday.offer_id)
        assert isinstance(chosen, store.Appointment)
        assert store.open_offer(cur, broker.broker_id, lead) is None


def test_the_next_free_slot_after_a_visit_is_its_end_plus_the_buffer_as_the_database_allows(
        database_url: str, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    lead, other = _leads(database_url, broker.broker_id, 2)
    with transaction(database_url) as conn, conn.cursor() as cur:
        assert isinstance(store.book(cur, broker.broker_id, lead, _slot(11), NOW, source="agent", actor="lead"),
                          store.Appointment)
        free = {s.start.astimezone(SANTIAGO).strftime("%H:%M") for s in store.available(cur, broker.broker_id, NOW)
                if s.start.astimezone(SANTIAGO).day == 2}
        # A 60-minute visit at 11:00 and a 30-minute buffer: 12:30 is the first start after it, 09:30 the last
        # before it (ending 10:30, 30 minutes clear of 11:00).
        assert {"09:30", "12:30"} <= free and not free & {"10:00", "10:30", "11:00", "11:30", "12:00"}
        half_past_twelve = Slot(_slot(11).start + timedelta(minutes=90), _slot(11).end + timedelta(minutes=90),
                                (None,))
        assert isinstance(store.book(cur, broker.broker_id, other, half_past_twelve, NOW, source="agent",
                                     actor="lead"), store.Appointment)
