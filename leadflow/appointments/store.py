"""Appointments in PostgreSQL: availability read, slots offered, visits booked and moved through their states.

Every function takes the caller's cursor, so it runs inside the caller's transaction: the lead agent's, a
campaign batch's, or the reports API's scoped write cursor (row security then keeps a person to the leads
it may see). ``book`` relies on the table's exclusion constraint, not on a read before the write: of two
leads choosing one slot at once, the second insert fails inside a savepoint and that lead is answered
with ``Taken`` (and offered others by the caller).

Statuses: ``proposed`` (booked, the lead has not said yes: a person booked it by hand, or a campaign
proposed it) → ``confirmed`` → ``completed`` / ``no_show``; ``proposed`` or ``confirmed`` → ``cancelled``
or ``rescheduled`` (a new appointment points back with ``rescheduled_from``). Each change is an
``appointment_events`` row naming who made it, marks the calendar event for the sync, and moves the lead's
stage where the pipeline has one for it (confirmed → agendado, completed → seguimiento).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from leadflow.appointments.rules import AgentSchedule, Kind, ScheduleRules, parse_hours
from leadflow.appointments.slots import AgentKey, Interval, Preference, Slot, choose_offer, free_slots
from leadflow.leads.stages import DEFAULT_PIPELINE, Pipeline
from leadflow.leads.store.stages import move_lead_forward

Status = Literal["proposed", "confirmed", "completed", "no_show", "cancelled", "rescheduled"]
Actor = Literal["lead", "bot", "campaign", "person", "system"]
Source = Literal["agent", "campaign", "person", "lead"]
ACTIVE: tuple[Status, ...] = ("proposed", "confirmed")
TRANSITIONS: dict[str, frozenset[str]] = {
    "proposed": frozenset({"confirmed", "cancelled", "rescheduled"}),
    "confirmed": frozenset({"completed", "no_show", "cancelled", "rescheduled"}),
    # A visit marked the wrong way is corrected by a person.
    "completed": frozenset({"no_show"}),
    "no_show": frozenset({"completed"}),
    "cancelled": frozenset(),
    "rescheduled": frozenset(),
}
_LOCK_SPACE = 15_000  # pg_advisory_xact_lock's first key: bookings (the second is the person)
# The pipeline stage a status puts the lead in, when the broker's pipeline has it.
STAGE_OF: dict[str, str] = {"confirmed": "agendado", "completed": "seguimiento"}
Cursor = psycopg2.extensions.cursor
# Moves a lead forward to a stage (``leads.store.stages.move_lead_forward`` by default; the workspace passes
# its own, which signs the move with the person acting).
StageMover = Callable[[Cursor, int, int, str, Pipeline, datetime, str], object]


class AppointmentError(ValueError):
    """The change cannot be made as asked; the message says why and nothing was written."""


@dataclass(frozen=True)
class Appointment:
    appointment_id: int
    broker_id: int
    lead_id: int
    agent_id: int | None
    kind: Kind
    address: str | None
    starts_at: datetime
    ends_at: datetime
    timezone: str
    status: Status
    source: Source
    channel: str | None
    meet_link: str | None
    calendar_state: str
    rescheduled_from: int | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


@dataclass(frozen=True)
class Offer:
    offer_id: int
    lead_id: int
    kind: Kind
    slots: tuple[Slot, ...]
    offered_at: datetime
    reschedules: int | None = None


@dataclass(frozen=True)
class Taken:
    """The slot was booked by someone else, or is no longer free, between the offer and the choice."""

    slot: Slot


_APPOINTMENT = """appointment_id, broker_id, lead_id, agent_id, kind, address, starts_at, ends_at, timezone, status,
                  source, channel, meet_link, calendar_state, rescheduled_from"""


def _appointment(row: Sequence[Any]) -> Appointment:
    return Appointment(*row)


# --- availability -----------------------------------------------------------------------------------------

def broker_rules(cur: Cursor, broker_id: int) -> tuple[ScheduleRules, str]:
    """The broker's visiting rules and timezone."""
    cur.execute("""SELECT b.timezone, bs.appointments FROM leadflow.brokers b
                   LEFT JOIN leadflow.broker_settings bs USING (broker_id) WHERE b.broker_id = %s""", (broker_id,))
    row = cur.fetchone()
    if row is None:
        raise AppointmentError(f"broker {broker_id} not found")
    return ScheduleRules.from_settings(row[1]), row[0]


def schedules(cur: Cursor, broker_id: int) -> list[AgentSchedule]:
    """The people who take visits (active users listed in ``agent_schedules``); nobody: the broker's calendar."""
    cur.execute("""SELECT s.user_id, u.display_name, s.hours, s.blocked FROM leadflow.agent_schedules s
                   JOIN leadflow.users u USING (user_id)
                   WHERE s.broker_id = %s AND s.takes_visits AND NOT u.disabled ORDER BY s.user_id""", (broker_id,))
    people = [AgentSchedule(user_id, name, parse_hours(hours) if hours is not None else None,
                            frozenset(blocked or ()))
              for user_id, name, hours, blocked in cur.fetchall()]
    return people or [AgentSchedule(None, "")]


def busy_times(cur: Cursor, broker_id: int, start: datetime, end: datetime,
               ignore: int | None = None) -> dict[AgentKey, list[Interval]]:
    """What keeps each person busy between ``start`` and ``end``: their active visits and
    their calendar's busy times. ``ignore``: an appointment being moved does not block its own new time."""
    busy: dict[AgentKey, list[Interval]] = defaultdict(list)
    # The visit itself, not its held_until: ``free_slots`` pads every busy interval by the buffer on both sides,
    # which is what the exclusion constraint asks (the end plus the buffer free before the next start).
    # The second part is for the reports role, whose row security may hide visits of leads it cannot see (an
    # AGENT's colleagues'): the function gives their times only. The owner sees everything in the first.
    cur.execute("""SELECT agent_key, starts_at, ends_at FROM leadflow.appointments
                   WHERE broker_id = %(b)s AND status IN ('proposed', 'confirmed') AND starts_at < %(e)s
                     AND held_until > %(s)s AND appointment_id IS DISTINCT FROM %(i)s
                   UNION
                   SELECT agent_key, starts_at, ends_at FROM leadflow.appointment_busy(%(b)s, %(s)s, %(e)s, %(i)s)""",
                {"b": broker_id, "e": end, "s": start, "i": ignore})
    for key, s, e in cur.fetchall():
        busy[key].append((s, e))
    cur.execute("""SELECT agent_key, starts_at, ends_at FROM leadflow.calendar_busy
                   WHERE broker_id = %s AND starts_at < %s AND ends_at > %s""", (broker_id, end, start))
    for key, s, e in cur.fetchall():
        busy[key].append((s, e))
    return busy


def available(cur: Cursor, broker_id: int, now: datetime, *, days: int | None = None,
              first_day: date | None = None, ignore: int | None = None) -> list[Slot]:
    """Every free slot of the broker's people over the rules' horizon (or ``days`` from ``first_day``)."""
    rules, timezone = broker_rules(cur, broker_id)
    horizon = days if days is not None else rules.horizon_days
    start = now - timedelta(days=1) if first_day is None else datetime.combine(first_day, datetime.min.time(), UTC)
    busy = busy_times(cur, broker_id, start - timedelta(days=1), start + timedelta(days=horizon + 2), ignore)
    return free_slots(rules, timezone, schedules(cur, broker_id), busy, now, days=horizon, first_day=first_day)


# --- offers -----------------------------------------------------------------------------------------------

def open_offer(cur: Cursor, broker_id: int, lead_id: int) -> Offer | None:
    cur.execute("""SELECT offer_id, lead_id, kind, slots, offered_at, reschedules FROM leadflow.appointment_offers
                   WHERE broker_id = %s AND lead_id = %s AND status = 'open'""", (broker_id, lead_id))
    row = cur.fetchone()
    if row is None:
        return None
    return Offer(row[0], row[1], row[2], tuple(Slot.from_json(s) for s in row[3]), row[4], row[5])


def make_offer(cur: Cursor, broker_id: int, lead_id: int, now: datetime, *, source: Literal["agent", "campaign",
               "person"], channel: str | None = None, preference: Preference | None = None,
               kind: Kind | None = None, send_id: int | None = None, reschedules: int | None = None,
               exclude: Sequence[datetime] = (), count: int | None = None) -> Offer | None:
    """Choose the slots to write to a lead and record them (replacing the lead's open offer). None: nobody is
    free over the whole horizon, and the caller hands the lead to a person."""
    rules, timezone = broker_rules(cur, broker_id)
    cur.execute("SELECT assigned_user_id FROM leadflow.leads WHERE lead_id = %s AND broker_id = %s",
                (lead_id, broker_id))
    row = cur.fetchone()
    if row is None:
        raise AppointmentError(f"lead {lead_id} not found")
    slots = choose_offer(available(cur, broker_id, now, ignore=reschedules), timezone, count or rules.offer_count,
                         preference, prefer_agent=row[0], exclude=exclude)
    if not slots:
        return None
    cur.execute("""UPDATE leadflow.appointment_offers SET status = 'superseded', closed_at = %s
                   WHERE lead_id = %s AND status = 'open'""", (now, lead_id))
    cur.execute("""INSERT INTO leadflow.appointment_offers (broker_id, lead_id, channel, source, send_id, kind, slots,
                                                            reschedules, offered_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING offer_id""",
                (broker_id, lead_id, channel, source, send_id, kind or rules.default_kind,
                 json.dumps([s.to_json() for s in slots]), reschedules, now))
    offer_id = cur.fetchone()[0]  # type: ignore[index]
    return Offer(offer_id, lead_id, kind or rules.default_kind, tuple(slots), now, reschedules)


def close_offer(cur: Cursor, offer_id: int, status: Literal["taken", "declined", "expired"], now: datetime) -> None:
    cur.execute("""UPDATE leadflow.appointment_offers SET status = %s, closed_at = %s
                   WHERE offer_id = %s AND status = 'open'""", (status, now, offer_id))


# --- booking ----------------------------------------------------------------------------------------------

def _person_lock(broker_id: int, agent_id: int | None) -> int:
    """The advisory lock's second key for one person of one broker (int4: collisions only serialize more)."""
    return (broker_id * 1_000_003 + (agent_id or 0)) % 2_147_483_647


def _still_free(cur: Cursor, broker_id: int, slot: Slot, agent_id: int | None, now: datetime,
                ignore: int | None) -> bool:
    """The slot is still on the grid for this person: within hours, not in a calendar busy time (our own
    visits are the constraint's to refuse)."""
    rules, timezone = broker_rules(cur, broker_id)
    people = [p for p in schedules(cur, broker_id) if p.agent_id == agent_id]
    if not people:
        return False
    busy = busy_times(cur, broker_id, slot.start - timedelta(days=1), slot.end + timedelta(days=1), ignore)
    day = slot.start.astimezone(ZoneInfo(timezone)).date()
    return any(s.start == slot.start for s in free_slots(rules, timezone, people, busy, now, days=1, first_day=day))


def book(cur: Cursor, broker_id: int, lead_id: int, slot: Slot, now: datetime, *, source: Source, actor: Actor,
         user_id: int | None = None, status: Literal["proposed", "confirmed"] = "confirmed",
         kind: Kind | None = None, address: str | None = None, channel: str | None = None,
         offer_id: int | None = None, agent_id: int | None = None, check_free: bool = True,
         rescheduled_from: int | None = None, mover: StageMover | None = None) -> Appointment | Taken:
    """Book ``slot`` for the lead with the first of its people still free (or ``agent_id``). ``Taken`` when none
    is: another lead got there first, or their calendar filled meanwhile. ``check_free`` False: a person booking
    by hand outside the hours (the constraint still refuses a double booking)."""
    rules, timezone = broker_rules(cur, broker_id)
    candidates: tuple[int | None, ...] = (agent_id,) if agent_id is not None else (slot.agents or (None,))
    held_until = slot.end + timedelta(minutes=rules.buffer_minutes)
    for candidate in candidates:
        cur.execute("SAVEPOINT booking")
        try:
            # One booking per person at a time: a second one waits for the first to commit and then meets its
            # row in the constraint, instead of both waiting on each other's uncommitted rows (a deadlock
            # PostgreSQL would break only after deadlock_timeout).
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_SPACE, _person_lock(broker_id, candidate)))
            if check_free and not _still_free(cur, broker_id, slot, candidate, now, rescheduled_from):
                cur.execute("ROLLBACK TO SAVEPOINT booking")
                continue
            cur.execute(f"""INSERT INTO leadflow.appointments (broker_id, lead_id, agent_id, kind, address, starts_at,
                                ends_at, held_until, timezone, status, source, channel, offer_id, rescheduled_from,
                                created_at, updated_at)
                            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                            RETURNING {_APPOINTMENT}""",
                        (broker_id, lead_id, candidate, kind or rules.default_kind,
                         address if address is not None else rules.address, slot.start, slot.end, held_until,
                         timezone, status, source, channel, offer_id, rescheduled_from, now, now))
        except (psycopg2.errors.ExclusionViolation, psycopg2.errors.DeadlockDetected):
            # Taken meanwhile (or two bookers each holding a person the other wanted): this person is not free.
            cur.execute("ROLLBACK TO SAVEPOINT booking")
            continue
        appointment = _appointment(cur.fetchone())  # type: ignore[arg-type]
        cur.execute("RELEASE SAVEPOINT booking")
        _event(cur, appointment, None, status, actor, user_id, None, now)
        if offer_id is not None:
            close_offer(cur, offer_id, "taken", now)
        _move_stage(cur, appointment, status, now, mover)
        return appointment
    return Taken(slot)


def get(cur: Cursor, broker_id: int, appointment_id: int, *, lock: bool = False) -> Appointment | None:
    cur.execute(f"""SELECT {_APPOINTMENT} FROM leadflow.appointments WHERE broker_id = %s AND appointment_id = %s
                    {'FOR UPDATE' if lock else ''}""", (broker_id, appointment_id))
    row = cur.fetchone()
    return _appointment(row) if row else None


def upcoming(cur: Cursor, broker_id: int, lead_id: int, now: datetime) -> Appointment | None:
    """The lead's next active visit (the one a "no voy a poder" is about)."""
    cur.execute(f"""SELECT {_APPOINTMENT} FROM leadflow.appointments
                    WHERE broker_id = %s AND lead_id = %s AND status IN ('proposed', 'confirmed') AND ends_at > %s
                    ORDER BY starts_at LIMIT 1""", (broker_id, lead_id, now))
    row = cur.fetchone()
    return _appointment(row) if row else None


def change_status(cur: Cursor, broker_id: int, appointment_id: int, to: Status, now: datetime, *, actor: Actor,
                  user_id: int | None = None, note: str | None = None,
                  mover: StageMover | None = None) -> Appointment:
    """Move a visit to ``to`` (an ``AppointmentError`` names a change its status does not allow); the same
    status again changes nothing and records nothing."""
    current = get(cur, broker_id, appointment_id, lock=True)
    if current is None:
        raise AppointmentError(f"appointment {appointment_id} not found")
    if current.status == to:
        return current
    if to not in TRANSITIONS[current.status]:
        raise AppointmentError(f"a {current.status} visit cannot become {to}")
    if to in ("completed", "no_show") and current.starts_at > now:
        raise AppointmentError("a visit that has not started yet cannot be marked held or missed")
    cur.execute(f"""UPDATE leadflow.appointments SET status = %s, updated_at = %s, calendar_state = 'pending'
                    WHERE appointment_id = %s RETURNING {_APPOINTMENT}""", (to, now, appointment_id))
    changed = _appointment(cur.fetchone())  # type: ignore[arg-type]
    _event(cur, changed, current.status, to, actor, user_id, note, now)
    _move_stage(cur, changed, to, now, mover)
    return changed


def reschedule(cur: Cursor, broker_id: int, appointment_id: int, slot: Slot, now: datetime, *, actor: Actor,
               user_id: int | None = None, offer_id: int | None = None, check_free: bool = True,
               mover: StageMover | None = None) -> Appointment | Taken:
    """The visit moved to ``slot``: the new one is booked first (so a taken slot leaves the old one in place),
    then the old one is marked rescheduled. The new one keeps the old one's status, kind and place."""
    old = get(cur, broker_id, appointment_id, lock=True)
    if old is None:
        raise AppointmentError(f"appointment {appointment_id} not found")
    if not old.active:
        raise AppointmentError(f"a {old.status} visit cannot be rescheduled")
    # The old visit still holds its time: release it inside a savepoint so its own slot neighbourhood is free.
    cur.execute("SAVEPOINT moving")
    cur.execute("UPDATE leadflow.appointments SET status = 'rescheduled', updated_at = %s, calendar_state = 'pending' "
                "WHERE appointment_id = %s", (now, appointment_id))
    source: Source = {"lead": "lead", "bot": "agent", "campaign": "campaign"}.get(actor, "person")  # type: ignore[assignment]
    booked = book(cur, broker_id, old.lead_id, slot, now, source=source, actor=actor, user_id=user_id,
                  status="confirmed" if old.status == "confirmed" else "proposed", kind=old.kind, address=old.address,
                  channel=old.channel, offer_id=offer_id, agent_id=None if slot.agents else old.agent_id,
                  check_free=check_free, rescheduled_from=appointment_id, mover=mover)
    if isinstance(booked, Taken):
        cur.execute("ROLLBACK TO SAVEPOINT moving")
        return booked
    cur.execute("RELEASE SAVEPOINT moving")
    _event(cur, old, old.status, "rescheduled", actor, user_id, f"moved to appointment {booked.appointment_id}", now)
    return booked


def _event(cur: Cursor, appointment: Appointment, before: str | None, after: str, actor: Actor,
           user_id: int | None, note: str | None, now: datetime) -> None:
    cur.execute("""INSERT INTO leadflow.appointment_events (appointment_id, broker_id, lead_id, from_status, to_status,
                                                            actor, user_id, note, at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (appointment.appointment_id, appointment.broker_id, appointment.lead_id, before, after, actor,
                 user_id, note, now))


def _move_stage(cur: Cursor, appointment: Appointment, status: str, now: datetime, mover: StageMover | None) -> None:
    target = STAGE_OF.get(status)
    if target is None:
        return
    cur.execute("SELECT pipeline FROM leadflow.broker_settings WHERE broker_id = %s", (appointment.broker_id,))
    row = cur.fetchone()
    pipeline = Pipeline.from_settings(row[0]) if row and row[0] else DEFAULT_PIPELINE
    if target not in {s.code for s in pipeline.stages}:
        return
    reason = f"visit {status} (appointment {appointment.appointment_id})"
    if mover is not None:
        mover(cur, appointment.broker_id, appointment.lead_id, target, pipeline, now, reason)
    else:
        move_lead_forward(cur, appointment.broker_id, appointment.lead_id, target, pipeline, now, reason,
                          automatic=True)
