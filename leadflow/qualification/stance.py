"""What the lead said yes or no to: a visit, valuation or call accepted, an offer declined or put off,
and the reason a move is urgent (a lease ending, a moving date).

A reply is read against the agent's last message before it: "sí", "dale" or "ok" accept the visit,
valuation or call the agent proposed there (and mean nothing after "¿tienes mascotas?"); "no puedo
el martes, ¿el jueves?" still accepts, at another time; a lead who asks "¿la puedo ver mañana a las
5?" commits without being asked. Each lead message gets a stance and the latest one wins. The time
of a commitment ("mañana 19 hrs") is dated against the timestamp of the message that accepts it,
never against today's clock. Vectorised (polars); only the accepted messages go through Python to
date their time.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

import polars as pl

# --- what was proposed or asked for (folded text: lowercase, no accents, ñ kept) --------------------

_VALUATION = r"tasaci|\btasar|avaluo|valuaci|\bvalorar|valoraci|valuation|apprais"
_VISIT = (r"visita|visitar|\bver(?:l[oa]s?)?\b|\bl[oa]s? (?:vemos|ves|ve|quiere ver|queres ver|quieres ver)\b"
          r"|conocer(?:l[oa]s?)?\b|\bmuestr|mostrar|recorr|showing|\btour\b|\bviewing\b"
          r"|\bsee (?:it|the|them|this|that)\b|come (?:by|see|and see)")
# "le llamo de la corredora" introduces the call being made: only "te llamo mañana", "¿le llamo?" propose one.
_CALL = (r"\bllam(?:ar|ada|adas|arte|arle|arlo|arla|ame|eme)\b|\b(?:te|le|lo|la|les) llamo(?:\s*[?¿,.!]|\s*$"
         r"|\s+(?:hoy|mañana|pasado|el|la|a las|en|despues|luego|mas|ahora|ahorita))|videollamada"
         r"|\bcall\b|\bzoom\b|\bmeet\b")
KINDS = [("valuation", _VALUATION), ("visit", _VISIT), ("call", _CALL)]
# A lead asking for one themself, with a time: "¿la puedo ver mañana a las 5?", "can I see it Saturday at 10?"
_REQUEST = (r"(?:puedo|podemos|podria|podriamos|quiero|quisiera|queremos|me gustaria|nos gustaria|ir a) ver"
            r"|agendar (?:una )?visita|visitarl|tasarl|avaluo|valorarl|llamame|llameme|call me"
            r"|(?:can|could) (?:i|we) see|like to see|schedule a (?:showing|visit|viewing)")

# --- when -----------------------------------------------------------------------------------------

_DAY = (r"\b(?:hoy|pasado mañana|mañana|lunes|martes|miercoles|jueves|viernes|sabado|domingo|today|tonight"
        r"|tomorrow|monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b")
_HOUR = (r"\ba las? \d{1,2}(?::\d{2})?(?:\s*(?:hrs?|horas|h)\b)?"
         r"|\b\d{1,2}(?::\d{2})?\s*(?:hrs?|horas|h|am|pm|a\.m\.?|p\.m\.?)(?:\W|$)"
         r"|\b\d{1,2}:\d{2}\b|misma hora|same time")
TIME_CUE = f"{_DAY}|{_HOUR}"

# --- the lead's answer ----------------------------------------------------------------------------

# "ya" alone is "ok" only as the whole reply or before another yes ("ya dale"): "ya no" is its opposite.
_YES_START = (r"^\W*(?:si|sip|claro|dale|ya (?:dale|listo|bueno|ok|perfecto|va)|ya\W*$|ok|okay|okey|oka|bueno"
              r"|perfecto|de acuerdo|va|sale|orale|vale|venga|listo|genial|excelente|por supuesto|obvio|yes|yeah"
              r"|yep|sure|absolutely|great|perfect|sounds good)\b")
_ACCEPT = (r"me sirve|nos sirve|me acomoda|nos acomoda|me queda bien|nos queda bien|me viene bien|nos viene bien"
           r"|me va bien|nos va bien|esta bien|me parece bien|perfecto|ahi (?:estare|estaremos|nos vemos)"
           r"|estoy ahi|estamos ahi|nos vemos|agend(?:emos|amos|ame|elo|ala)|\bconfirm(?:o|ado|amos)\b"
           r"|\bworks\b|sounds good|see you|i'?ll be there|we'?ll be there|let'?s do|book (?:it|me|us)")
_NO_START = r"^\W*(?:no|nop|nope|nah|ni modo)\b"
_REFUSAL = (r"no (?:puedo|podemos|alcanzo|me sirve|nos sirve|me acomoda|me queda|me viene)|imposible"
            r"|can'?t|cannot|won'?t work|doesn'?t work")
# "no puedo el miércoles, ¿el jueves a la misma hora?": a refused slot, then another one offered.
COUNTER = rf"(?:{_REFUSAL})[^,.;?¿!]*[,.;?¿!]+.*?(?:{TIME_CUE})"
_POSTPONED = (r"\b(?:te|le|les) aviso\b|ya (?:te|le) (?:dire|digo|aviso|escribo|confirmo)"
              r"|(?:te|le) escribo (?:la semana|el mes|mas adelante|despues|luego|mas tarde|otro dia)"
              r"|mas adelante|despues (?:veo|vemos|te escribo|te aviso|hablamos)"
              r"|\blo (?:converso|platico|hablo|pienso|consulto|conversamos|platicamos|pensamos|voy a pensar"
              r"|tengo que pensar)\b|lo tengo que (?:conversar|hablar|platicar|pensar|consultar)"
              r"|tengo que (?:conversarlo|hablarlo|platicarlo|pensarlo|consultarlo)"
              r"|(?:todavia|aun|por ahora|de momento|not yet|not right now)\s*(?:no\s*)?(?:[,.!]|$)"
              r"|\bno por ahora|dejame pensarlo|dejeme pensarlo|al final no (?:voy a )?(?:puedo|poder)|no voy a poder"
              r"|i'?ll let you know|let (?:me|us) think|maybe later|get back to you|need to think"
              r"|talk (?:it over )?(?:to|with) my (?:wife|husband|partner)")
_DECLINED = (r"no me interesa|no estoy interesad|no estamos interesad|\bno,? gracias|solo (?:estoy |estamos )?"
             r"(?:mirando|viendo|averiguando|cotizando|preguntando)|(?:estoy|estamos) solo (?:mirando|viendo"
             r"|averiguando|cotizando|preguntando)|ya (?:compre|arrende|encontre|alquile|rente)\b"
             r"|not interested|no thanks|no,? thank you|just (?:looking|browsing|checking)"
             r"|already (?:found|bought|rented)")

# --- why it is urgent -----------------------------------------------------------------------------

_URGENCY = [
    ("contract_ending", r"(?:se me|se nos|me|nos)\s+(?:vence|vencen|termina|terminan|acaba)\s+(?:el |mi |nuestro )?"
                        r"(?:contrato|arriendo|alquiler)|(?:vence|termina|acaba)\s+(?:mi|el|nuestro)\s+(?:contrato"
                        r"|arriendo|alquiler)|fin (?:de|del) contrato|(?:me|nos) piden (?:el|la) (?:depto|dpto"
                        r"|departamento|casa|piso|depa)|tengo que (?:entregar|desocupar)|desalojo"
                        r"|(?:my|our|the) lease (?:ends|is up|expires|runs out|is ending)|lease (?:ending|expir)"),
    ("moving", r"\bme (?:mudo|cambio de ciudad|voy a vivir|voy del pais)|\bnos (?:mudamos|cambiamos|vamos a vivir)\b"
               r"|\b(?:me|nos) trasladan\b|\btraslado (?:laboral|de trabajo|por trabajo)|\b(?:cambiarnos|cambiarme"
               r"|mudarme|mudarnos)\b|\bmoving\b|\bwe'?re moving|relocat|job transfer|transferred"),
]
URGENCY_GATE = ("contrato|arriendo|alquiler|piden|entregar|desocupar|desalojo|lease|mud|cambi|traslad|vivir"
                "|moving|relocat|transfer")


def _first(text: pl.Expr, rules: list[tuple[str, str]]) -> pl.Expr:
    expr: pl.Expr = pl.lit(None, pl.String)
    for value, pattern in reversed(rules):
        expr = pl.when(text.str.contains(pattern)).then(pl.lit(value)).otherwise(expr)
    return expr


def urgency(folded: pl.Expr) -> pl.Expr:
    return _first(folded, _URGENCY)


def proposals(folded: pl.Expr, role: pl.Expr, conversation: pl.Expr) -> pl.Expr:
    """Over a conversation's messages in order: for each, what the agent's last message before it (or
    itself) proposes. "¿Y el domingo a las 11?" after "¿visitamos el sábado?" proposes the visit again:
    a new time without a new kind keeps the kind proposed last."""
    agent = role != "lead"
    named = pl.when(agent).then(_first(folded, KINDS))
    again = pl.when(agent & folded.str.contains(TIME_CUE)).then(named.forward_fill().over(conversation))
    return (pl.when(agent).then(pl.coalesce(named, again, pl.lit(""))).forward_fill().over(conversation)
            .replace("", None))


def stance(folded: pl.Expr, proposed: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(stance, kind) of each lead message: "accepted" (with the visit, valuation or call it accepts),
    "postponed", "declined" or null; ``proposed`` is what the agent's last message before it proposed."""
    asked = pl.when(folded.str.contains(_REQUEST) & folded.str.contains(TIME_CUE)).then(_first(folded, KINDS))
    counter = folded.str.contains(COUNTER)
    explicit = (folded.str.contains(_ACCEPT) | counter) & proposed.is_not_null()
    value = (pl.when(asked.is_not_null() | explicit).then(pl.lit("accepted"))
             .when(folded.str.contains(_POSTPONED)).then(pl.lit("postponed"))
             .when(folded.str.contains(_DECLINED)).then(pl.lit("declined"))
             .when(proposed.is_not_null() & folded.str.contains(_YES_START)).then(pl.lit("accepted"))
             .when(proposed.is_not_null() & (folded.str.contains(_NO_START) | folded.str.contains(_REFUSAL)))
             .then(pl.lit("declined")))
    kind = pl.when(value == "accepted").then(pl.coalesce(asked, proposed))
    return value, kind


# --- dating the commitment (Python, for the few accepted messages) ---------------------------------

_WEEKDAYS = {"lunes": 0, "martes": 1, "miercoles": 2, "jueves": 3, "viernes": 4, "sabado": 5, "domingo": 6,
             "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5, "sunday": 6}
_DAY_RE = re.compile(_DAY)
_MORNING = re.compile(r"(?:de|por|en) la mañana")
_HOUR_RE = re.compile(r"(?:\ba las? |\b)(\d{1,2})(?::(\d{2}))?\s*(hrs?|horas|h|am|pm|a\.m\.?|p\.m\.?)?(?=\W|$)")
_EVENING = re.compile(r"\bpm\b|p\.m|de la tarde|de la noche|por la tarde|por la noche|tonight|evening")
_SAME_TIME = re.compile(r"misma hora|same time")
_TIME_CUE_RE = re.compile(TIME_CUE)
_COUNTER_RE = re.compile(rf"(?:{_REFUSAL})[^,.;?¿!]*[,.;?¿!]+")


def _day(text: str, reference: date) -> date | None:
    for m in _DAY_RE.finditer(_MORNING.sub(" ", text)):
        word = m.group(0)
        if word in ("hoy", "today", "tonight"):
            return reference
        if word in ("mañana", "tomorrow"):
            return reference + timedelta(days=1)
        if word == "pasado mañana":
            return reference + timedelta(days=2)
        ahead = (_WEEKDAYS[word] - reference.weekday()) % 7
        return reference + timedelta(days=ahead or 7)  # "el jueves" said on a Thursday is next week's
    return None


def _hour(text: str) -> time | None:
    for m in _HOUR_RE.finditer(text):
        if not (m.group(0).startswith("a la") or m.group(2) or m.group(3)):
            continue  # a bare number is not a time
        hour, minute, marker = int(m.group(1)), int(m.group(2) or 0), (m.group(3) or "")
        if marker.startswith("a"):
            hour = 0 if hour == 12 else hour
        elif marker.startswith("p") or _EVENING.search(text[m.end():m.end() + 20]):
            hour = hour + 12 if hour < 12 else hour
        elif 1 <= hour <= 7 and not _MORNING.search(text[m.end():m.end() + 20]):
            hour += 12  # nobody books a showing at five in the morning: "a las 5" is 17:00
        if hour < 24 and minute < 60:
            return time(hour, minute)
    return None


def _span(text: str) -> str | None:
    found = list(_TIME_CUE_RE.finditer(text))
    if not found:
        return None
    return text[found[0].start():found[-1].end()].strip(" ,.¿?!") or None


def when(lead: str, agent: str | None, reference: datetime | None) -> tuple[str | None, datetime | None]:
    """The accepted time in the conversation's words, and dated (local time) when a reference is known.

    The lead's own words win ("sí, el domingo a las 12"); what they leave out ("dale") is the agent's
    proposal, and "¿el jueves a la misma hora?" takes the day from the lead and the hour from the agent.
    """
    counter = _COUNTER_RE.search(lead)
    own = lead[counter.end():] if counter else lead
    agent = agent or ""
    words = _span(own) or _span(agent)
    if reference is None:
        return words, None
    own_hour = None if _SAME_TIME.search(own) else _hour(own)
    hour = own_hour or _hour(agent)
    if hour is None:
        return words, None
    day = _day(own, reference.date()) or (None if counter else _day(agent, reference.date()))
    if day is None:
        day = reference.date() if hour > reference.time() else reference.date() + timedelta(days=1)
    return words, datetime.combine(day, hour)
