"""What a lead's message says about a visit: which offered slot, another time, yes, no, cancel, move it.

``parse`` reads one message against what the lead was shown (the open offer's slots, in the order listed)
and the lead's next visit, in the broker's timezone: "la segunda", "el martes a las 5" (5 is 17:00 when the
offer's slot that day is in the afternoon: the offer decides, not a guess), "mañana en la tarde", "no puedo,
¿el sábado?", "confirmo", "no voy a poder", "¿podemos cambiarla al jueves?". Two offered slots that both fit
("el martes" when two Tuesdays were offered) are ``Ambiguous``: the lead is asked again, never guessed for.
Spanish as written in Chile, Mexico, Argentina and Spain, and English. Pure: no database, no clock (``now``
is passed).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from leadflow.appointments.slots import Preference, Slot
from leadflow.qualification.answers import APPROVING_EMOJI, YES, folded


@dataclass(frozen=True)
class Chose:
    """The lead took offered slot ``index`` (0-based, in the order shown)."""

    index: int


@dataclass(frozen=True)
class Wants:
    """The lead wants a visit at another time (or, with an empty preference, any time: a plain yes)."""

    preference: Preference = field(default_factory=Preference)


@dataclass(frozen=True)
class Declined:
    """None of the slots, and no other time given ("no gracias", "ninguno me sirve")."""


@dataclass(frozen=True)
class Confirms:
    """The lead confirms the coming visit ("confirmo", "ahí estaré")."""


@dataclass(frozen=True)
class Cancels:
    """The lead cannot come and names no other time ("no voy a poder", "cancela la visita")."""


@dataclass(frozen=True)
class Reschedules:
    """The lead wants the coming visit at another time ("¿podemos cambiarla al jueves?")."""

    preference: Preference = field(default_factory=Preference)


@dataclass(frozen=True)
class Ambiguous:
    """Several offered slots fit what the lead said: ask which one (``indices``, 0-based)."""

    indices: tuple[int, ...]


@dataclass(frozen=True)
class Unrelated:
    """Nothing about a visit."""


Choice = Chose | Wants | Declined | Confirms | Cancels | Reschedules | Ambiguous | Unrelated

WEEKDAYS: dict[str, int] = {
    "lunes": 0, "martes": 1, "miercoles": 2, "jueves": 3, "viernes": 4, "sabado": 5, "domingo": 6,
    "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5, "sunday": 6,
    "mon": 0, "tue": 1, "tues": 1, "wed": 2, "thu": 3, "thur": 3, "thurs": 3, "fri": 4, "sat": 5, "sun": 6,
    "lun": 0, "mie": 2, "mier": 2, "jue": 3, "vie": 4, "sab": 5, "dom": 6,
}
MONTHS: dict[str, int] = {
    "enero": 1, "febrero": 2, "marzo": 3, "abril": 4, "mayo": 5, "junio": 6, "julio": 7, "agosto": 8,
    "septiembre": 9, "setiembre": 9, "octubre": 10, "noviembre": 11, "diciembre": 12,
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8,
    "september": 9, "october": 10, "november": 11, "december": 12,
}
ORDINALS: dict[str, int] = {
    "primera": 1, "primero": 1, "primer": 1, "1ra": 1, "1era": 1, "1a": 1, "1ro": 1, "1°": 1, "first": 1, "1st": 1,
    "segunda": 2, "segundo": 2, "2da": 2, "2a": 2, "2do": 2, "2°": 2, "second": 2, "2nd": 2,
    "tercera": 3, "tercero": 3, "tercer": 3, "3ra": 3, "3era": 3, "3a": 3, "3ro": 3, "3°": 3, "third": 3, "3rd": 3,
    "cuarta": 4, "cuarto": 4, "fourth": 4, "4th": 4, "quinta": 5, "quinto": 5, "fifth": 5, "5th": 5,
}
_SMALL = {"uno": 1, "una": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6, "siete": 7, "ocho": 8,
          "nueve": 9, "diez": 10, "once": 11, "doce": 12, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
          "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}
_NUM = r"(\d{1,2}|" + "|".join(sorted(_SMALL, key=len, reverse=True)) + r")"

# The choice by its place in the list: "la segunda", "the second one", "opción 3", "la 2", "#2", "la última".
_ORDINAL = re.compile(r"(?<![\w°])(" + "|".join(re.escape(k) for k in sorted(ORDINALS, key=len, reverse=True))
                      + r")(?![\w°])(?!\s+(?:de|del)\s+\w+\s+(?:semana|mes))")
_OPTION = re.compile(r"\b(?:opcion|option|alternativa|numero|number|nro|n°|no\.)\s*#?\s*" + _NUM + r"\b|#\s*(\d)\b")
_LAST = re.compile(r"\b(?:la|el) ultim[ao]\b|\bthe last(?: one)?\b")
# "la 2", "la dos" (la opción 2); "el 2" is read as a date first, if a slot falls on that day.
_BARE_LA = re.compile(r"(?:^|\s)la\s+" + _NUM + r"(?=\s*$|\s*[,.!?])")
_BARE_NUMBER = re.compile(r"\s*" + r"(\d)" + r"\s*[).]?\s*[.!]*\s*")

# Parts of the day; said before "mañana" is read as tomorrow ("mañana en la mañana").
_MORNING = re.compile(r"\b(?:en|por|de|a|durante) la manana\b|\bde manana\b|\bin the morning\b|\bmorning\b|\bam\b"
                      r"|\ben la am\b")
_AFTERNOON = re.compile(r"\b(?:en|por|de|a|durante) la tarde\b|\bafternoon\b|\btardecita\b|\bpm\b")
_EVENING = re.compile(r"\b(?:en|por|de|a) la noche\b|\bevening\b|\btonight\b|\bnight\b")
_NOON = re.compile(r"\bmedio ?dia\b|\bnoon\b")

_DAY_AFTER = re.compile(r"\bpasado manana\b|\bday after tomorrow\b")
_TOMORROW = re.compile(r"\bmanana\b|\btomorrow\b|\btmrw\b")
_TODAY = re.compile(r"\bhoy\b|\btoday\b|\besta tarde\b|\bthis afternoon\b|\besta manana\b|\bthis morning\b")
_NEXT_WEEK = re.compile(r"\b(?:la )?(?:proxima|siguiente) semana\b|\bla semana (?:que viene|proxima|entrante)\b"
                        r"|\bnext week\b")
_WEEKEND = re.compile(r"\bfin de(?: |\s*)semana\b|\bfinde\b|\bweekend\b")
_WEEKDAY = re.compile(r"\b(" + "|".join(sorted(WEEKDAYS, key=len, reverse=True)) + r")\b\.?")
# "el 12", "el día 12", "on the 12th", "12 de diciembre", "december 12", "12/12".
_DAY_OF_MONTH = re.compile(r"\b(?:el|dia|el dia|the|on the|" + "|".join(WEEKDAYS) + r")\s+(\d{1,2})(?:st|nd|rd|th)?\b"
                           r"(?!\s*(?::|h\b|hrs?\b|am\b|pm\b"
                           r"|y (?:media|cuarto)|de la|en punto|horas?\b))")
_DAY_MONTH = re.compile(r"\b(\d{1,2})\s+(?:de\s+)?(" + "|".join(MONTHS) + r")\b")
_MONTH_DAY = re.compile(r"\b(" + "|".join(MONTHS) + r")\s+(\d{1,2})(?:st|nd|rd|th)?\b")
_NUMERIC_DATE = re.compile(r"\b(\d{1,2})/(\d{1,2})(?:/\d{2,4})?\b")

# Clock times: "17:30", "5:30pm", "5pm", "a las 5", "a las 5 y media", "las 10", "at 5", "17h", "17 hrs".
_HHMM = re.compile(r"\b(\d{1,2})[:.h](\d{2})\s*(am|pm|a\.m\.|p\.m\.)?(?!\d)")
_H_AMPM = re.compile(r"\b(\d{1,2})\s*(am|pm|a\.m\.|p\.m\.)")
_H_SUFFIX = re.compile(r"\b(\d{1,2})\s*(?:h|hs|hrs|horas)\b")
_A_LAS = re.compile(r"\b(?:a las|las|a la|la de las|el de las|at|a eso de las|tipo|como a las|desde las|despues de las"
                    r"|antes de las|after|before|from|by)\s+" + _NUM
                    + r"(?:\s+y\s+(media|cuarto)|\s+menos\s+cuarto|\s+(?:de la|en la|por la)\s+(manana|tarde|noche)"
                      r"|\s+(?:o'?clock|en punto))?\b")
_HALF_PAST = re.compile(r"\bhalf past\s+" + _NUM)
_AFTER = re.compile(r"\b(?:despues de las|desde las|a partir de las|after|from|not before)\s+(?:\d|" + "|".join(_SMALL)
                    + r")")
_BEFORE = re.compile(r"\b(?:antes de las|before|no later than|by)\s+(?:\d|" + "|".join(_SMALL) + r")")

# Turning the offer down, cancelling, confirming, moving: read on folded text.
_NEGATION = re.compile(r"\bno puedo\b|\bno me (?:acomoda|sirve|queda|resulta|viene)|\bno (?:alcanzo|llego)\b"
                       r"|\bninguno\b|\bninguna\b|\bcan'?t\b|\bcannot\b|\bnot available\b|\bdoesn'?t work"
                       r"|\bdon'?t work|\bnone of\b|\bno (?:es|son) posible|\bimposible\b|\bcomplicad[oa]\b")
_DECLINE = re.compile(r"\bno,? gracias\b|\bno me interesa\b|\bya no\b|\bmejor no\b|\bno thanks\b|\bnot interested\b"
                      r"|\bno,? thank you\b|\bninguno\b|\bninguna\b|\bnone\b|\bmas adelante\b|\btodavia no\b"
                      r"|\baun no\b|\bnot (?:yet|now)\b|\bpor ahora no\b|^\s*no\s*[.!]*\s*$")
_CANCEL = re.compile(r"\bno (?:voy|vamos) a (?:poder|ir|alcanzar|llegar)\b"
                     r"|\bno (?:podre|podremos|puedo ir|puedo asistir|podre ir|podre asistir|llego|alcanzo a llegar"
                     r"|alcanzo a ir)\b|\bcancel\w*\b|\banul\w*\b"
                     r"|\bsuspend\w*\b|\bse me complico\b|\bse me cruzo\b|\btuve un imprevisto\b|\bsurgio algo\b"
                     r"|\bwon'?t (?:be able|make it)\b|\bcan'?t (?:make it|come|go|attend)\b|\bcall(?:ing)? off\b"
                     r"|\bsomething came up\b|\bme da pena pero no\b|\bno puedo\b")
_RESCHEDULE = re.compile(r"\bcambiar\w*\b|\bmover\w*\b|\bmovamos\b|\bcambiemos\b|\breagend\w*\b|\breprogram\w*\b"
                         r"|\bposterg\w*\b|\bpospon\w*\b|\bcorrer(?:la|lo)\b|\badelantar\w*\b"
                         r"|\bpasar(?:la|lo) (?:a|al|para)\b"
                         r"|\botro dia\b|\botra hora\b|\botro horario\b|\bresched\w*\b|\bmove it\b|\bmove the\b"
                         r"|\bchange (?:it|the)\b|\banother (?:day|time)\b|\bpush it\b|\bpodemos (?:verla|hacerla)\b"
                         r"|\bpodriamos\b|\bpuede ser (?:el|otro|mas)\b|\bse puede (?:el|otro|mas|cambiar)\b")
_CONFIRM = re.compile(r"\bconfirm\w*\b|\bahi estare\b|\balli estare\b|\bahi estaremos\b|\balli estaremos\b"
                      r"|\bnos vemos\b|\bahi nos vemos\b|\bcuenta conmigo\b|\bcuenten conmigo\b|\bsin falta\b"
                      r"|\bi'?ll be there\b|\bwe'?ll be there\b|\bsee you\b|\bcount me in\b|\bvoy (?:a ir|sin falta)\b"
                      r"|\bsigue en pie\b|\bva en pie\b|\blisto\b|\bperfecto\b|\bde una\b")
_YES_START = re.compile(r"^\s*(?:si|sip|claro|dale|ok|okay|bueno|perfecto|de acuerdo|va|vale|venga|sale|yes|yeah|yep"
                        r"|sure|listo|me sirve|me acomoda|me queda bien|sounds good|works for me)\b")
_QUESTION_WORDS = re.compile(r"\b(?:que|cual|como|cuando|donde|cuanto|what|which|how|when|where)\b")


@dataclass(frozen=True)
class _When:
    """What the message says about when: a day (date, weekday, or the week after this one) and a time of day."""

    day: date | None = None
    weekday: int | None = None
    weekdays: tuple[int, ...] = ()  # "el fin de semana": any of these
    day_of_month: int | None = None
    not_before: date | None = None
    clock: tuple[time, ...] = ()  # candidates: "a las 5" is 05:00 or 17:00
    after: time | None = None
    before: time | None = None
    named: int = 0  # how many days the message names ("el martes no, el jueves": two)

    @property
    def empty(self) -> bool:
        return dataclasses.replace(self, named=0) == _When()

    def fits(self, local: datetime) -> bool:
        if self.day is not None and local.date() != self.day:
            return False
        if self.weekday is not None and local.weekday() != self.weekday:
            return False
        if self.weekdays and local.weekday() not in self.weekdays:
            return False
        if self.day_of_month is not None and local.day != self.day_of_month:
            return False
        if self.not_before is not None and local.date() < self.not_before:
            return False
        if self.clock and local.time().replace(second=0, microsecond=0) not in self.clock:
            return False
        if self.after is not None and local.time() < self.after:
            return False
        return not (self.before is not None and local.time() >= self.before)

    def preference(self, today: date) -> Preference:
        """The same wish as the slot search takes it: one clock time becomes its hour, a day of the month its
        next date, an ambiguous "5" the hour a visit would be at (five in the afternoon)."""
        day = self.day
        if day is None and self.day_of_month is not None:
            day = _next_day_of_month(today, self.day_of_month)
        after, before = self.after, self.before
        if self.clock:
            start = _likely(self.clock)
            after = start
            before = (datetime.combine(today, start) + timedelta(hours=1)).time() if start < time(23) else None
        weekday = self.weekday if self.weekday is not None else (
            self.weekdays[0] if len(self.weekdays) == 1 else None)
        return Preference(day=day, weekday=weekday, after=after, before=before, not_before=self.not_before)


def _likely(candidates: tuple[time, ...]) -> time:
    """The candidate a visit would be at: between 08:00 and 20:59 if one is."""
    return next((c for c in candidates if time(8) <= c < time(21)), candidates[0])


def _next_day_of_month(today: date, day: int) -> date | None:
    year, month = today.year, today.month
    for _ in range(3):
        try:
            found = date(year, month, day)
        except ValueError:
            found = None
        if found is not None and found >= today:
            return found
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return None


def _number(token: str) -> int:
    return int(token) if token.isdigit() else _SMALL[token]


def _hour_candidates(hour: int, minute: int, meridiem: str | None) -> tuple[time, ...]:
    if hour > 23 or minute > 59:
        return ()
    if meridiem in ("pm", "tarde", "noche"):
        return (time(hour + 12 if hour < 12 else hour, minute),) if hour <= 12 else (time(hour, minute),)
    if meridiem in ("am", "manana"):
        return (time(0 if hour == 12 else hour, minute),) if hour <= 12 else ()
    if 1 <= hour <= 11:
        return (time(hour, minute), time(hour + 12, minute))
    return (time(hour, minute),)


def _meridiem(raw: str | None) -> str | None:
    if raw is None:
        return None
    return "am" if raw.startswith("a") else "pm" if raw.startswith("p") else raw


def _clock(text: str) -> tuple[tuple[time, ...], str]:
    """The clock time said, as candidates, and the text without it (so its digits are not read as a day)."""
    for pattern in (_HHMM,):
        m = pattern.search(text)
        if m:
            found = _hour_candidates(int(m.group(1)), int(m.group(2)), _meridiem(m.group(3)))
            if found:
                return found, text[:m.start()] + " " + text[m.end():]
    m = _H_AMPM.search(text)
    if m:
        return _hour_candidates(int(m.group(1)), 0, _meridiem(m.group(2))), text[:m.start()] + " " + text[m.end():]
    m = _HALF_PAST.search(text)
    if m:
        return _hour_candidates(_number(m.group(1)), 30, None), text[:m.start()] + " " + text[m.end():]
    m = _A_LAS.search(text)
    if m:
        hour = _number(m.group(1))
        extra, part = m.group(2), m.group(3)
        minute = 30 if extra == "media" else 15 if extra == "cuarto" else 0
        if "menos cuarto" in m.group(0):
            hour, minute = hour - 1 if hour > 1 else 12, 45
        found = _hour_candidates(hour, minute, part)
        if found:
            return found, text[:m.start()] + " " + text[m.end():]
    m = _H_SUFFIX.search(text)
    if m:
        found = _hour_candidates(int(m.group(1)), 0, None)
        if found and int(m.group(1)) >= 12:
            return found, text[:m.start()] + " " + text[m.end():]
        if found:
            return found, text[:m.start()] + " " + text[m.end():]
    return (), text


def _when(text: str, today: date, language: str) -> _When:
    """Everything the message says about when, read on folded text."""
    clock, rest = _clock(text)
    after = before = None
    if clock and _AFTER.search(text):
        after, clock = _likely(clock), ()
    elif clock and _BEFORE.search(text):
        before, clock = _likely(clock), ()
    # A clock time with its part of the day ("a las 5 de la tarde") was read whole; a part alone narrows.
    if _NOON.search(rest) and not clock:
        clock = (time(12),)
    part_morning = bool(_MORNING.search(rest))
    rest_days = _MORNING.sub(" ", rest)
    part_afternoon = bool(_AFTERNOON.search(rest_days))
    part_evening = bool(_EVENING.search(rest_days))
    if clock and len(clock) == 2:
        if part_morning:
            clock = (clock[0],)
        elif part_afternoon or part_evening:
            clock = (clock[1],)
    elif not clock:
        if part_morning:
            before = before or time(13)
        if part_afternoon:
            after = after or time(13)
        if part_evening:
            after = after or time(18)
    day: date | None = None
    weekday: int | None = None
    weekdays: tuple[int, ...] = ()
    day_of_month: int | None = None
    not_before: date | None = None
    if _DAY_AFTER.search(rest_days):
        day = today + timedelta(days=2)
    elif _TOMORROW.search(rest_days):
        day = today + timedelta(days=1)
    elif _TODAY.search(rest):
        day = today
    if _NEXT_WEEK.search(rest_days):
        not_before = today + timedelta(days=7 - today.weekday())
    if _WEEKEND.search(rest_days):
        weekdays = (5, 6)
    named = [m for m in _WEEKDAY.finditer(rest_days)]
    if named and day is None:
        # Two days named with a no between them ("el martes no puedo, mejor el jueves"): the one away from the no.
        negation = _NEGATION.search(rest_days)
        at = negation.start() if negation is not None else None
        pick = max(named, key=lambda m: abs(m.start() - at)) if at is not None else named[-1]
        weekday = WEEKDAYS[pick.group(1)]
    m_dm, m_md, m_num = _DAY_MONTH.search(rest), _MONTH_DAY.search(rest), _NUMERIC_DATE.search(rest)
    if m_dm or m_md:
        d, month = (int(m_dm.group(1)), MONTHS[m_dm.group(2)]) if m_dm else (int(m_md.group(2)), MONTHS[m_md.group(1)])  # type: ignore[union-attr]
        day = _date_in_year(today, month, d) or day
    elif m_num:
        first, second = int(m_num.group(1)), int(m_num.group(2))
        d, month = (second, first) if language.startswith("en") else (first, second)
        day = _date_in_year(today, month, d) or day
    else:
        m = _DAY_OF_MONTH.search(rest)
        if m and 1 <= int(m.group(1)) <= 31:
            day_of_month = int(m.group(1))
    days_named = len(named) + (day is not None) + (day_of_month is not None) + (not_before is not None)
    return _When(day, weekday, weekdays, day_of_month, not_before, clock, after, before, days_named)


def _date_in_year(today: date, month: int, day: int) -> date | None:
    """The next such date from today ("12 de enero" said in December is next year's)."""
    for year in (today.year, today.year + 1):
        try:
            found = date(year, month, day)
        except ValueError:
            return None
        if found >= today - timedelta(days=1):
            return found
    return None


def _ordinal(text: str, count: int) -> int | None:
    """The 1-based place the lead names ("la segunda", "opción 3", "la 2", "the last one"), if any."""
    if count == 0:
        return None
    m = _OPTION.search(text)
    if m:
        return _number(m.group(1) or m.group(2))
    if _LAST.search(text):
        return count
    m = _ORDINAL.search(text)
    if m:
        return ORDINALS[m.group(1)]
    m = _BARE_LA.search(text)
    if m:
        return _number(m.group(1))
    m = _BARE_NUMBER.fullmatch(text)
    if m:
        return int(m.group(1))
    return None


_THANKS = re.compile(r"(?:muchas |mil )?(?:gracias|thanks|thank you)[\s.!]*")


def _is_yes(text: str, raw: str) -> bool:
    """A yes, but not a bare thank-you (that confirms nothing)."""
    if _THANKS.fullmatch(text):
        return False
    return bool(YES.fullmatch(text)) or bool(_YES_START.search(text)) or raw.strip().startswith(APPROVING_EMOJI)


def parse(text: str, *, slots: Sequence[Slot] = (), appointment_start: datetime | None = None,
          now: datetime, timezone: str, language: str = "es-CL") -> Choice:
    """What ``text`` says about a visit, given the slots the lead was offered (in the order listed, none if no
    offer is open) and the start of the lead's next visit (None if there is none). ``now`` and ``timezone``
    place "mañana" and "el martes"; ``language`` (the broker's, e.g. "en-US") orders numeric dates."""
    zone = ZoneInfo(timezone)
    plain = folded(text).replace("ñ", "n")  # "mañana" and "manana" alike
    if not plain and not text.strip().startswith(APPROVING_EMOJI):
        return Unrelated()
    today = now.astimezone(zone).date()
    when = _when(plain, today, language)
    negated = bool(_NEGATION.search(plain))
    if negated and not when.empty and "?" not in text and when.named < 2:
        # A time the lead says it cannot make ("el martes no puedo") is no wish for that time; one asked for
        # after a no ("no puedo, ¿el sábado?") or set against another ("no puedo el martes, el jueves sí") is.
        when = _When()
    if slots:
        # "a las 5 y cuarto" names no fourth option.
        place = _ordinal(re.sub(r"\b(?:y|menos) cuarto\b", " ", plain), len(slots))
        if when.day_of_month is not None and place is None and re.search(r"\bel\s+\d", plain) and not any(
                s.start.astimezone(zone).day == when.day_of_month for s in slots) and when.day_of_month <= len(slots):
            # "el 2" with no slot on the 2nd: the second option.
            place, when = when.day_of_month, dataclasses.replace(when, day_of_month=None)
        if place is not None and 1 <= place <= len(slots) and not negated:
            if when.empty:
                return Chose(place - 1)
            fitting = [i for i, s in enumerate(slots) if when.fits(s.start.astimezone(zone))]
            return Chose(place - 1) if place - 1 in fitting or not fitting else Ambiguous(
                tuple(sorted({place - 1, *fitting})))
        if not when.empty:
            fitting = [i for i, s in enumerate(slots) if when.fits(s.start.astimezone(zone))]
            if negated or not fitting:
                return Wants(when.preference(today))
            if len(fitting) == 1:
                return Chose(fitting[0])
            return Ambiguous(tuple(fitting))
        if negated or _DECLINE.search(plain):
            return Declined()
        if _is_yes(plain, text):
            return Chose(0) if len(slots) == 1 else Ambiguous(tuple(range(len(slots))))
    if appointment_start is not None:
        cancels = bool(_CANCEL.search(plain))
        moves = bool(_RESCHEDULE.search(plain))
        if moves or ((cancels or negated) and not when.empty):
            return Reschedules(when.preference(today))
        if cancels:
            return Cancels()
        if _CONFIRM.search(plain) or _is_yes(plain, text):
            return Confirms()
        if not when.empty and _QUESTION_WORDS.search(plain) is None and "?" in text:
            return Reschedules(when.preference(today))  # "¿y el jueves?"
        return Unrelated()
    if slots:
        return Unrelated()
    if not when.empty:
        if negated and when.day is None and when.weekday is None and not when.clock and when.not_before is None \
                and when.day_of_month is None and not when.weekdays:
            return Declined()
        return Wants(when.preference(today))
    if negated or _DECLINE.search(plain):
        return Declined()
    if _is_yes(plain, text):
        return Wants()
    return Unrelated()
