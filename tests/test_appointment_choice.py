"""A lead's answer about a visit, read against what it was offered: pure, table-driven, no clock.

"Now" is Monday 7 December 2026, 09:00 in Santiago (no daylight-saving change near it); the offer lists
Tuesday 8 at 10:00, Wednesday 9 at 15:00 and Friday 11 at 17:00."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

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
    parse,
)
from leadflow.appointments.slots import Preference, Slot

SANTIAGO = "America/Santiago"
ZONE = ZoneInfo(SANTIAGO)
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=ZONE)


def _slot(day: int, hour: int, minute: int = 0, month: int = 12) -> Slot:
    start = datetime(2026, month, day, hour, minute, tzinfo=ZONE)
    return Slot(start, start + timedelta(hours=1), (None,))


OFFER = (_slot(8, 10), _slot(9, 15), _slot(11, 17))
TWO_TUESDAYS = (_slot(8, 10), _slot(15, 17), _slot(10, 12))
MORNINGS = (_slot(8, 10), _slot(9, 11), _slot(10, 9, 30))
VISIT = datetime(2026, 12, 10, 11, 0, tzinfo=ZONE)


@pytest.mark.parametrize(("text", "expected"), [
    # By place in the list.
    ("la segunda", Chose(1)), ("La primera porfa", Chose(0)), ("the second one", Chose(1)),
    ("opción 3", Chose(2)), ("Opcion 1", Chose(0)), ("option 2 please", Chose(1)), ("la 2", Chose(1)),
    ("2", Chose(1)), ("3)", Chose(2)), ("la última", Chose(2)), ("the last one", Chose(2)),
    ("dale, la segunda", Chose(1)), ("vale, la primera", Chose(0)), ("va, la tercera", Chose(2)),
    # By day and time, matched against the offer: "5" is the 17:00 slot, "3" the 15:00 one.
    ("el martes", Chose(0)), ("ya, el martes", Chose(0)), ("el viernes a las 5", Chose(2)),
    ("el miércoles a las 3", Chose(1)), ("la de las 10", Chose(0)), ("el de las 5", Chose(2)),
    ("17:00", Chose(2)), ("5pm", Chose(2)), ("a las 5 de la tarde", Chose(2)), ("el 11 a las 17", Chose(2)),
    ("el 9", Chose(1)), ("mañana a las 10", Chose(0)), ("pasado mañana", Chose(1)),
    ("mañana en la mañana", Chose(0)), ("el viernes en la tarde", Chose(2)), ("Friday at 5", Chose(2)),
    ("wednesday afternoon works", Chose(1)), ("on the 11th", Chose(2)), ("11 de diciembre", Chose(2)),
    ("el vie. a las 17 hrs", Chose(2)), ("me sirve el miercoles", Chose(1)),
    # Something else.
    ("no puedo, ¿el sábado?", Wants(Preference(weekday=5))),
    ("mañana en la tarde", Wants(Preference(day=date(2026, 12, 8), after=time(13)))),
    ("la próxima semana", Wants(Preference(not_before=date(2026, 12, 14)))),
    ("la semana que viene mejor", Wants(Preference(not_before=date(2026, 12, 14)))),
    ("¿y el jueves a las 5 y media?", Wants(Preference(weekday=3, after=time(17, 30), before=time(18, 30)))),
    ("el martes a las 5", Wants(Preference(weekday=1, after=time(17), before=time(18)))),
    ("after 7pm", Wants(Preference(after=time(19)))),
    ("el 12 a las 11", Wants(Preference(day=date(2026, 12, 12), after=time(11), before=time(12)))),
    ("none of those work, next week?", Wants(Preference(not_before=date(2026, 12, 14)))),
    ("el martes no puedo, mejor el jueves a las 5", Wants(Preference(weekday=3, after=time(17), before=time(18)))),
    ("no puedo el martes, ¿el viernes?", Wants(Preference(weekday=4))),
    # No, and nothing else (a time the lead cannot make is no wish for it).
    ("el martes no puedo", Declined()), ("el viernes no me sirve", Declined()),
    ("no gracias", Declined()), ("ninguno me sirve", Declined()), ("no thanks", Declined()), ("no", Declined()),
    ("por ahora no", Declined()),
    # Unclear: asked again.
    ("sí", Ambiguous((0, 1, 2))), ("ok", Ambiguous((0, 1, 2))),
    # Not about the visit.
    ("¿el depto tiene estacionamiento?", Unrelated()), ("gracias", Unrelated()), ("", Unrelated()),
])
def test_an_answer_to_an_offer_is_read_against_the_slots_shown(text: str, expected: Choice) -> None:
    assert parse(text, slots=OFFER, now=NOW, timezone=SANTIAGO) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("el martes", Ambiguous((0, 1))),
    ("el martes a las 5", Chose(1)),
    ("el martes en la mañana", Chose(0)),
    ("el martes 15", Chose(1)),
    ("la segunda", Chose(1)),
    ("el de las 12", Chose(2)),
])
def test_two_offered_slots_that_fit_are_asked_about_never_guessed(text: str, expected: Choice) -> None:
    assert parse(text, slots=TWO_TUESDAYS, now=NOW, timezone=SANTIAGO) == expected


def test_an_hour_that_fits_two_ways_is_taken_as_the_offer_reads_it() -> None:
    # With only morning slots, "a las 10" is the 10:00 one; "a las 9 y media" the 09:30 one.
    assert parse("a las 10", slots=MORNINGS, now=NOW, timezone=SANTIAGO) == Chose(0)
    assert parse("a las 9 y media", slots=MORNINGS, now=NOW, timezone=SANTIAGO) == Chose(2)
    assert parse("a las 11 y cuarto", slots=MORNINGS, now=NOW, timezone=SANTIAGO) == Wants(
        Preference(after=time(11, 15), before=time(12, 15)))


@pytest.mark.parametrize(("text", "expected"), [
    ("confirmo", Confirms()), ("Confirmado!", Confirms()), ("ahí estaré", Confirms()), ("sí, nos vemos", Confirms()),
    ("sí", Confirms()), ("👍", Confirms()), ("I'll be there", Confirms()), ("confirmed, see you", Confirms()),
    ("no voy a poder", Cancels()), ("cancela la visita", Cancels()), ("Lo siento, no podré ir", Cancels()),
    ("I can't make it", Cancels()), ("tuve un imprevisto", Cancels()), ("please cancel", Cancels()),
    ("¿podemos cambiarla al jueves?", Reschedules(Preference(weekday=3))),
    ("no voy a poder, ¿el sábado?", Reschedules(Preference(weekday=5))),
    ("¿la podemos mover para la próxima semana?", Reschedules(Preference(not_before=date(2026, 12, 14)))),
    ("can we move it to friday afternoon?", Reschedules(Preference(weekday=4, after=time(13)))),
    ("quiero reagendar", Reschedules(Preference())),
    ("el jueves no puedo", Cancels()),
    ("gracias", Unrelated()), ("¿cuál es la dirección?", Unrelated()),
])
def test_an_answer_about_the_coming_visit(text: str, expected: Choice) -> None:
    assert parse(text, appointment_start=VISIT, now=NOW, timezone=SANTIAGO) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("sí", Wants()), ("dale", Wants()), ("va, me late", Wants()), ("yes please", Wants()),
    ("sí, el sábado me sirve", Wants(Preference(weekday=5))),
    ("mañana en la tarde", Wants(Preference(day=date(2026, 12, 8), after=time(13)))),
    ("after 5pm", Wants(Preference(after=time(17)))),
    ("no gracias", Declined()), ("esta semana no puedo", Declined()),
    ("hola", Unrelated()),
])
def test_an_answer_to_a_proposal_without_slots(text: str, expected: Choice) -> None:
    assert parse(text, now=NOW, timezone=SANTIAGO) == expected


def test_a_numeric_date_follows_the_broker_s_language() -> None:
    offer = (_slot(11, 10), _slot(12, 10))
    assert parse("el 11/12", slots=offer, now=NOW, timezone=SANTIAGO, language="es-CL") == Chose(0)
    assert parse("12/11 at 10", slots=offer, now=NOW, timezone=SANTIAGO, language="en-US") == Chose(0)


def test_weekdays_are_read_in_the_broker_s_timezone_across_a_daylight_saving_change() -> None:
    # Offered on Friday 2 April 2027 (UTC-3); Chile goes back to UTC-4 on Sunday 4 April. Monday 5 April at
    # 10:00 is the slot the lead read, whichever offset it falls under.
    madrid_now = datetime(2027, 4, 2, 12, 0, tzinfo=ZONE)
    monday = Slot(datetime(2027, 4, 5, 10, 0, tzinfo=ZONE), datetime(2027, 4, 5, 11, 0, tzinfo=ZONE), (None,))
    saturday = Slot(datetime(2027, 4, 3, 10, 0, tzinfo=ZONE), datetime(2027, 4, 3, 11, 0, tzinfo=ZONE), (None,))
    assert parse("el lunes a las 10", slots=(saturday, monday), now=madrid_now + timedelta(days=2),
                 timezone=SANTIAGO) == Chose(1)
