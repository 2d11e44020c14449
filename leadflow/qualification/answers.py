"""A bare answer read next to the question it answers: "3" after "¿cuántos dormitorios?" is three bedrooms.

The lead agent asks one thing at a time and records what it asked (``asks``) with each message it
sends. Its own reading (``leadflow.agent.knowledge``) and the batch qualification of landed
conversations rewrite such replies the same way (``in_context``) before the rules qualifier reads
them, so both understand "3", "no", "ya" or "Camila" as the answer they were.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from leadflow.qualification.numbers import WORD_VALUES, fold
from leadflow.qualification.turns import Turn

# --- bare answers: what a short reply means given the question it answers ------------------------
# Regional yeses: "va, me late" (MX), "vale" (ES), "dale" (AR, CL), "sale" (MX).
_YES_WORDS = (r"si|sip|claro|obvio|dale|ok|okay|bueno|correcto|afirmativo|por supuesto|de acuerdo|perfecto|genial"
              r"|me parece|me interesa|va|sale|orale|me late|vale|venga|yes|yeah|yep|sure|of course|sounds good"
              r"|works for me|let'?s do it|please|gracias|thanks")
YES = re.compile(rf"(?:{_YES_WORDS})(?:[\s,.!]+(?:{_YES_WORDS}))*[\s.!]*")
NO = re.compile(r"(?:no|nop|nope|nunca|para nada|nada|ninguna|ninguno|no tengo|none|not really|nah)"
                r"(?:[\s,.!]+(?:no|nada|gracias|ninguna|thanks))*[\s.!]*")
NOW = re.compile(r"(?:ya|ahora|ahora mismo|ahorita|ya mismo|now|right now|asap)[\s.!]*")
NUMBER = re.compile(r"\d{1,2}|" + "|".join(w for w in WORD_VALUES if WORD_VALUES[w] <= 20))
# Short replies that are not a name or a place, whatever was asked.
# (A reply that already says "me llamo …" is read by the rules as it is.)
NOT_AN_ANSWER = re.compile(r"(?:hola|hi|hello|gracias|thanks|no se|idk|da igual|cualquiera|depende|no importa"
                           r"|whatever|anywhere|si|no|ok|dale|bueno|yes|me llamo|mi nombre|soy|my name|i'm|i am"
                           r"|this is)\b")
WORDS_ONLY = re.compile(r"[^\W\d_]+(?:[\s'-]+[^\W\d_]+){0,3}")
# A thumbs-up answers "shall we book a visit?" as well as "sí" does.
APPROVING_EMOJI = ("👍", "👌", "✅", "🙌", "🤝", "👏")


def folded(text: str) -> str:
    return fold(text).strip()


def is_yes(text: str) -> bool:
    return bool(YES.fullmatch(folded(text))) or text.strip().startswith(APPROVING_EMOJI)


def is_no(text: str) -> bool:
    return bool(NO.fullmatch(folded(text)))


def explicit(text: str, asked: str | None, english: bool) -> str:
    """The reply as the qualifier should read it, given the question it answers."""
    plain = folded(text)
    if asked == "bedrooms" and NUMBER.fullmatch(plain):
        return f"{text} {'bedrooms' if english else 'dormitorios'}"
    if asked == "budget" and any(ch.isdigit() for ch in plain):
        return f"{'budget' if english else 'presupuesto'} {text}"
    if asked == "timeline":
        if NOW.fullmatch(plain):
            return "asap" if english else "lo antes posible"
        if NUMBER.fullmatch(plain):
            return f"in {text} months" if english else f"en {text} meses"
    if asked == "dicom":
        if is_yes(text):
            return "bad credit" if english else "estoy en dicom"
        if is_no(text):
            return "clean credit" if english else "no estoy en dicom"
    if asked == "financing" and "hipoteca" in plain and "hipotecari" not in plain:
        return f"{text} (credito hipotecario)"  # Spain says "hipoteca"; the rules know "hipotecario"
    if asked == "name" and short_answer(text):
        return f"{'my name is' if english else 'me llamo'} {text.strip()}"
    if asked == "switch_to_rent" and is_yes(text):
        return "I want to rent" if english else "quiero arrendar"
    return text


def short_answer(text: str) -> str | None:
    """A reply of one to four words and nothing else (a name, a place), or None."""
    stripped = text.strip().strip(".!")
    if not WORDS_ONLY.fullmatch(stripped) or NOT_AN_ANSWER.match(folded(stripped)):
        return None
    return stripped


def in_context(turns: Sequence[tuple[str, str, str | None]], english: bool = False,
               times: Sequence[datetime | None] | None = None) -> list[Turn]:
    """(role, text, asks) turns, in order → the qualifier's turns, each lead reply made explicit by the
    question the agent asked just before it ("agent" or "bot" turns carry what they asked). ``times``
    (the lead's local time of each turn) date what the lead accepts ("mañana 19 hrs")."""
    out: list[Turn] = []
    asked: str | None = None
    moments = list(times) if times is not None else [None] * len(turns)
    for (role, text, asks), at in zip(turns, moments, strict=True):
        if role == "lead":
            out.append(Turn("lead", explicit(text, asked, english) if asked and text.strip() else text, at))
            if text.strip():
                asked = None
        else:
            out.append(Turn("agent", text, at))
            asked = asks
    return out
