"""How visits are worded to a lead: the slots offered, the booking confirmed back, a cancellation, a question.

Times are written in the broker's timezone, as the lead will live them ("martes 8 de diciembre a las
17:00"; "Tuesday, December 8 at 5:00 PM"). ``Wording`` is the language and the register's words: the agent
passes its conversation's (``agent.voice.Voice``: usted, vos, vosotros…); a campaign or the batch that
answers leads of brokers without the bot uses the broker's language with tú (``Wording.of``). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from leadflow.appointments.dialog import Outcome
from leadflow.appointments.slots import Slot
from leadflow.appointments.store import Appointment

_DAYS = {"es": ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
         "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")}
_MONTHS = {"es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
                  "noviembre", "diciembre"),
           "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
                  "November", "December")}

SPANISH: dict[str, str] = {
    "offer": "Tengo estos horarios para la visita:",
    "offer.virtual": "Tengo estos horarios para la visita por videollamada:",
    "offer.taken": "Ese horario se acaba de ocupar, lo siento. Tengo estos otros:",
    "offer.none_fitting": "Para lo que {me} {dices} no me queda nada libre; lo más cercano que tengo es:",
    "offer.reschedule": "Claro, la cambiamos. Tengo estos horarios:",
    "which": "¿Cuál {te} acomoda? Basta con el número o el día.",
    "ambiguous": "¿Cuál de estos {prefieres}?",
    "booked": "¡Listo! Visita agendada para el {when}{where}.",
    "rescheduled": "¡Listo! Cambié la visita al {when}{where}.",
    "confirmed": "¡Gracias por confirmar! {te} esperamos el {when}{where}.",
    "cancelled": "Listo, cancelé la visita del {when}.",
    "cancelled.offer": "Si {quieres} reagendarla, tengo estos horarios:",
    "cancelled.none": "Si {quieres} agendar otra, me {dices}.",
    "declined": "Sin problema. Si más adelante {quieres} agendar una visita, me {dices} qué día {te} acomoda.",
    "nobody_free": "No me quedan horarios libres en los próximos días, así que le paso {tu} caso a un ejecutivo "
                   "para coordinar la visita {contigo}.",
    "still_open": "¿{te} acomoda alguno de los horarios que {te} envié? Basta con el número o el día.",
    "coming": "{te} esperamos el {when}{where}.",
    "where": " en {address}",
    "where.virtual": " por videollamada",
    "link": " Enlace de Google Meet: {link}",
    "link.later": " {te} enviaremos el enlace de Google Meet antes de la visita.",
    "address.later": " Un ejecutivo {te} confirmará la dirección.",
    "at": "{day} a las {clock}",
}
ENGLISH: dict[str, str] = {
    "offer": "I have these times for the visit:",
    "offer.virtual": "I have these times for the video visit:",
    "offer.taken": "Sorry, that time was just taken. I have these others:",
    "offer.none_fitting": "Nothing is free for what you asked; the closest I have is:",
    "offer.reschedule": "Sure, let's move it. I have these times:",
    "which": "Which one works for you? Just reply with the number or the day.",
    "ambiguous": "Which of these did you mean?",
    "booked": "All set! Your visit is booked for {when}{where}.",
    "rescheduled": "All set! I moved your visit to {when}{where}.",
    "confirmed": "Thanks for confirming! See you on {when}{where}.",
    "cancelled": "Done, I cancelled the visit on {when}.",
    "cancelled.offer": "If you'd like another time, I have these:",
    "cancelled.none": "Whenever you want to book another, just tell me.",
    "declined": "No problem. If you'd like to book a visit later, just tell me which day suits you.",
    "nobody_free": "I have no free times in the next few days, so I'm passing your case to an agent to arrange "
                   "the visit with you.",
    "still_open": "Does any of the times I sent work for you? Just reply with the number or the day.",
    "coming": "See you on {when}{where}.",
    "where": " at {address}",
    "where.virtual": " by video call",
    "link": " Google Meet link: {link}",
    "link.later": " We'll send you the Google Meet link before the visit.",
    "address.later": " An agent will confirm the address with you.",
    "at": "{day} at {clock}",
}


# The tú form of the words the phrases below take from a register (``agent.voice.CONJUGATION``).
TU: dict[str, str] = {"te": "te", "tu": "tu", "contigo": "contigo", "quieres": "quieres", "dices": "dices",
                      "prefieres": "prefieres"}


@dataclass(frozen=True)
class Wording:
    spanish: bool = True
    register: dict[str, str] = field(default_factory=lambda: dict(TU))

    @classmethod
    def of(cls, language: str) -> Wording:
        """A broker's language ("es-CL", "en-US"), tú in Spanish."""
        return cls(spanish=not language.startswith("en"))

    def words(self) -> dict[str, str]:
        return {**TU, **self.register}


class Voice(Protocol):
    """What the phrases need of a voice (``Wording``, or the agent's ``Voice``)."""

    @property
    def spanish(self) -> bool: ...

    def words(self) -> dict[str, str]: ...

_SENTENCE_START = re.compile(r"(^|[.!?]\s+)([¿¡]?)(\w)")


def _phrase(voice: Voice, key: str, **values: str) -> str:
    book = SPANISH if voice.spanish else ENGLISH
    text = book[key].format_map({**voice.words(), "me": "me", **values})
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2) + m.group(3).upper(), text)


def when(start: datetime, timezone: str, voice: Voice) -> str:
    """"martes 8 de diciembre a las 17:00" / "Tuesday, December 8 at 5:00 PM", in the broker's timezone."""
    local = start.astimezone(ZoneInfo(timezone))
    lang = "es" if voice.spanish else "en"
    weekday, month = _DAYS[lang][local.weekday()], _MONTHS[lang][local.month - 1]
    if voice.spanish:
        day, clock = f"{weekday} {local.day} de {month}", f"{local:%H:%M}"
        if local.hour == 1:
            return f"{day} a la {clock}"
    else:
        meridiem = "AM" if local.hour < 12 else "PM"
        day, clock = f"{weekday}, {month} {local.day}", f"{local.hour % 12 or 12}:{local:%M} {meridiem}"
    # Not sentence-cased: a time sits inside a sentence or after a list number ("1) martes …").
    return (SPANISH if voice.spanish else ENGLISH)["at"].format(day=day, clock=clock)


def listing(options: Sequence[tuple[int, Slot]], timezone: str, voice: Voice) -> str:
    """One line per slot, numbered as first offered: "1) martes 8 de diciembre a las 10:00"."""
    return "\n".join(f"{place + 1}) {when(slot.start, timezone, voice)}" for place, slot in options)


def _where(appointment: Appointment, voice: Voice, fallback_address: str | None) -> tuple[str, str]:
    """The place after the time, and a sentence after it (the Meet link, or who will confirm the address)."""
    if appointment.kind == "virtual":
        extra = _phrase(voice, "link", link=appointment.meet_link) if appointment.meet_link \
            else _phrase(voice, "link.later")
        return _phrase(voice, "where.virtual"), extra
    address = appointment.address or fallback_address
    if address:
        return _phrase(voice, "where", address=address), ""
    return "", _phrase(voice, "address.later")


def about(appointment: Appointment, key: str, voice: Voice, fallback_address: str | None = None) -> str:
    """A sentence about one visit: booked, rescheduled, confirmed, coming."""
    where, extra = _where(appointment, voice, fallback_address)
    return _phrase(voice, key, when=when(appointment.starts_at, appointment.timezone, voice), where=where) + extra


def render(outcome: Outcome, voice: Voice) -> str:
    """What the bot writes after ``outcome``."""
    tz = outcome.timezone
    if outcome.kind == "offered" and outcome.offer is not None:
        key = f"offer.{outcome.note}" if outcome.note else "offer.virtual" if outcome.offer.kind == "virtual" \
            else "offer"
        lines = listing(list(enumerate(outcome.offer.slots)), tz, voice)
        return f"{_phrase(voice, key)}\n{lines}\n{_phrase(voice, 'which')}"
    if outcome.kind == "ambiguous":
        return f"{_phrase(voice, 'ambiguous')}\n{listing(outcome.options, tz, voice)}"
    if outcome.kind in ("booked", "rescheduled", "confirmed") and outcome.appointment is not None:
        return about(outcome.appointment, outcome.kind, voice, outcome.address)
    if outcome.kind == "cancelled" and outcome.appointment is not None:
        said = _phrase(voice, "cancelled", when=when(outcome.appointment.starts_at, outcome.appointment.timezone,
                                                     voice))
        if outcome.offer is not None:
            lines = listing(list(enumerate(outcome.offer.slots)), tz, voice)
            return f"{said} {_phrase(voice, 'cancelled.offer')}\n{lines}\n{_phrase(voice, 'which')}"
        return f"{said} {_phrase(voice, 'cancelled.none')}"
    if outcome.kind == "declined":
        return _phrase(voice, "declined")
    if outcome.kind == "nobody_free":
        return _phrase(voice, "nobody_free")
    return ""


def still_open(voice: Voice) -> str:
    return _phrase(voice, "still_open")
