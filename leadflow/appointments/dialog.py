"""What a lead's answer about a visit does in the database: offer, book, confirm, cancel, move.

The lead agent (``leadflow.agent.stream``) and the batch that reads the answers of leads without the bot
(``assets/appointment_answers.py``) both read a message with ``choice.parse`` and hand the result here, with
the caller's cursor, so the write commits with the reply that tells the lead about it. The ``Outcome`` says
what happened; the words are the caller's (``leadflow.appointments.texts``).

A choice is booked on the offer the lead was shown (re-read here, under the transaction): a slot taken by
another lead meanwhile is answered with the next free ones (``note`` "taken"); a time asked for that nobody
has is answered with what there is (``note`` "none_fitting"); nobody free over the whole horizon is
``nobody_free``, and the caller hands the lead to a person.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from leadflow.appointments import store
from leadflow.appointments.choice import (
    Ambiguous,
    Cancels,
    Choice,
    Chose,
    Confirms,
    Declined,
    Reschedules,
    Unrelated,
    Wants,
)
from leadflow.appointments.slots import Preference, Slot
from leadflow.appointments.store import Appointment, Cursor, Offer, Taken

OutcomeKind = Literal["offered", "booked", "confirmed", "cancelled", "rescheduled", "declined", "ambiguous",
                      "nobody_free", "unchanged"]


@dataclass(frozen=True)
class Move:
    """What the lead's message asks for, and what it was read against (so a stale read is noticed)."""

    choice: Choice
    offer_id: int | None = None
    appointment_id: int | None = None


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    timezone: str
    offer: Offer | None = None  # slots to list (offered; cancelled with others proposed)
    appointment: Appointment | None = None  # booked, confirmed, cancelled, rescheduled
    note: Literal["taken", "none_fitting", "reschedule"] | None = None
    options: tuple[tuple[int, Slot], ...] = ()  # ambiguous: (place in the offer, slot)
    # The broker's rules may say where in-person visits meet; the appointment's own address comes first.
    address: str | None = None


def carry_out(cur: Cursor, broker_id: int, lead_id: int, move: Move, now: datetime, *,
              source: Literal["agent", "campaign"], channel: str | None) -> Outcome:
    """Do what ``move`` asks, as the lead (actor "lead"), in the caller's transaction."""
    rules, timezone = store.broker_rules(cur, broker_id)
    choice = move.choice
    offer = store.open_offer(cur, broker_id, lead_id)
    upcoming = store.upcoming(cur, broker_id, lead_id, now)

    def offered(preference: Preference | None, *, note: Literal["taken", "reschedule"] | None = None,
                reschedules: int | None = None, exclude: tuple[datetime, ...] = ()) -> Outcome:
        made = store.make_offer(cur, broker_id, lead_id, now, source=source, channel=channel, preference=preference,
                                reschedules=reschedules, exclude=exclude)
        if made is None:
            return Outcome("nobody_free", timezone, address=rules.address)
        zone = ZoneInfo(timezone)
        fits = preference is None or preference.empty or any(
            preference.accepts(s.start.astimezone(zone)) for s in made.slots)
        return Outcome("offered", timezone, made, note=note if fits else "none_fitting", address=rules.address)

    if isinstance(choice, Chose):
        if offer is None or (move.offer_id is not None and offer.offer_id != move.offer_id) \
                or not 0 <= choice.index < len(offer.slots):
            # The offer the lead answered is gone (taken by a page, replaced by a campaign): show the current one.
            return offered(None, reschedules=upcoming.appointment_id if upcoming is not None and offer is not None
                           and offer.reschedules == upcoming.appointment_id else None)
        slot = offer.slots[choice.index]
        booked: Appointment | Taken
        if offer.reschedules is not None and upcoming is not None and upcoming.appointment_id == offer.reschedules:
            booked = store.reschedule(cur, broker_id, offer.reschedules, slot, now, actor="lead",
                                      offer_id=offer.offer_id)
        else:
            booked = store.book(cur, broker_id, lead_id, slot, now, source=source, actor="lead", status="confirmed",
                                kind=offer.kind, channel=channel, offer_id=offer.offer_id)
        if isinstance(booked, Taken):
            others = tuple(s.start for s in offer.slots if s.start == slot.start)
            return offered(None, note="taken", reschedules=offer.reschedules, exclude=others)
        kind: OutcomeKind = "rescheduled" if booked.rescheduled_from is not None else "booked"
        return Outcome(kind, timezone, appointment=booked, address=rules.address)
    if isinstance(choice, Ambiguous):
        if offer is None:
            return offered(None)
        return Outcome("ambiguous", timezone, offer,
                       options=tuple((i, offer.slots[i]) for i in choice.indices if i < len(offer.slots)),
                       address=rules.address)
    if isinstance(choice, Reschedules) and upcoming is not None:
        return offered(choice.preference, note="reschedule", reschedules=upcoming.appointment_id)
    if isinstance(choice, Wants | Reschedules):
        return offered(choice.preference)
    if isinstance(choice, Declined):
        if offer is not None:
            store.close_offer(cur, offer.offer_id, "declined", now)
        return Outcome("declined", timezone, address=rules.address)
    if isinstance(choice, Confirms):
        if upcoming is None:
            return Outcome("unchanged", timezone, address=rules.address)
        confirmed = store.change_status(cur, broker_id, upcoming.appointment_id, "confirmed", now, actor="lead")
        return Outcome("confirmed", timezone, appointment=confirmed, address=rules.address)
    if isinstance(choice, Cancels):
        if upcoming is None:
            if offer is not None:
                store.close_offer(cur, offer.offer_id, "declined", now)
                return Outcome("declined", timezone, address=rules.address)
            return Outcome("unchanged", timezone, address=rules.address)
        cancelled = store.change_status(cur, broker_id, upcoming.appointment_id, "cancelled", now, actor="lead",
                                        note="the lead wrote that it cannot come")
        # Not the time the lead just said it cannot make.
        again = store.make_offer(cur, broker_id, lead_id, now, source=source, channel=channel,
                                 exclude=(cancelled.starts_at,))
        return Outcome("cancelled", timezone, again, cancelled, address=rules.address)
    assert isinstance(choice, Unrelated)
    return Outcome("unchanged", timezone, address=rules.address)
