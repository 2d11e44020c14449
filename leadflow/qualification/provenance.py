"""Where each fact of a stored qualification came from: the message that stated it, in the lead's words.

Pure: the conversation's messages (in the order the qualifier read them) and the stored qualification
in, one ``Source`` per non-empty fact out. The messages are made explicit by the same ``in_context`` the
batch qualification uses (a bare "3" after the bot asked for bedrooms is "3 dormitorios"), and each
lead message is qualified on its own by the same rules, all of them in one vectorised pass: a fact's
source is the latest message whose own reading gives the stored value (the latest statement is the one
that stuck). A value no single message gives (the rules combined messages, or an LLM read the
conversation as a whole) says so instead of pointing at a message that does not say it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from leadflow.qualification.answers import in_context
from leadflow.qualification.numbers import fold
from leadflow.qualification.rules import GATES, messages_frame, qualify_frame
from leadflow.qualification.turns import Turn

Kind = Literal["message", "answer", "conversation"]
RULES = "rules"
EXCERPT_CHARS = 160
# Facts in the order the lead page shows them; "budget" stands for its four columns together.
SCALAR_FIELDS = ("operation", "property_type", "bedrooms_min", "timeline_months", "financing", "down_payment",
                 "monthly_income", "dicom_status", "arrears_amount", "opted_out", "name", "phone", "email")
_BUY_FINANCING = ("mortgage_preapproved", "mortgage_needed", "subsidy")
# Where a clause ends: a sentence's end, a semicolon, a line break, or a comma before a space (not the
# one in "4,5 millones" or "5.200").
_CLAUSE_END = re.compile(r"(?<=[.!?;,])\s+|\n+")


@dataclass(frozen=True)
class Said:
    """One message of the conversation: its id, who wrote it (lead or agent), its text, and what the bot
    asked in it (``asks``, as the lead agent records it)."""

    id: Hashable
    role: Literal["lead", "agent"]
    text: str
    asks: str | None = None


@dataclass(frozen=True)
class Source:
    """Where one fact came from.

    ``kind``: "message" (a message states it; ``excerpt`` is its words), "answer" (a bare reply made
    explicit by the bot's ``question`` before it), "conversation" (no single message states it).
    ``model``: the LLM that gave the value, None for the rules.
    """

    field: str  # a qualification column; "budget" for its four columns; "locations" once per place
    value: str
    kind: Kind
    message_id: Hashable | None = None
    index: int | None = None  # the message's position in the input
    excerpt: str | None = None
    question: str | None = None
    model: str | None = None


def provenance(messages: Sequence[Said], qualification: Mapping[str, Any], country: str | None = None,
               english: bool = False) -> list[Source]:
    """The source of each non-empty fact of ``qualification`` (a stored row: its columns, and
    ``qualifier``), given ``messages`` in the order the qualifier read them and the broker's
    ``country`` and language as the qualification used them."""
    qualifier = qualification.get("qualifier")
    model = None if qualifier in (None, RULES) else str(qualifier)
    turns = in_context([(m.role, m.text or "", m.asks) for m in messages], english)
    lead = [i for i, m in enumerate(messages) if m.role == "lead" and (m.text or "").strip()]
    rewritten = [i for i in lead if turns[i].text != messages[i].text]
    # Each lead message as the qualifier read it; a reply that in_context rewrote, also in its own words
    # (keyed after the others), to tell a bare answer from a message that says the fact itself.
    texts = {i: turns[i].text for i in lead} | {len(messages) + i: messages[i].text for i in rewritten}
    readings = _read(texts, country)
    questions = _questions(messages)

    sources = []
    for field, shown in _facts(qualification):
        # The latest statement is the one that stuck; the very words (an LLM's copy of a name) else.
        at = next((i for i in reversed(lead) if _gives(field, shown, readings[i], qualification)
                   and not (field == "operation" and _implied_operation(readings[i], texts[i]))), None)
        if at is None and field == "operation":
            # The rules infer "buy" from a mortgage or a subsidy only when no message names an operation.
            at = next((i for i in reversed(lead) if _gives(field, shown, readings[i], qualification)), None)
        if at is None:
            at = next((i for i in reversed(lead) if _written(field, shown, messages[i].text, qualification)), None)
        if at is None:
            sources.append(Source(field, shown, "conversation", model=model))
            continue
        text = messages[at].text
        answered = at in rewritten and not (_gives(field, shown, readings[len(messages) + at], qualification)
                                            or _written(field, shown, text, qualification))
        sources.append(Source(field, shown, "answer" if answered else "message", messages[at].id, at,
                              _short(text) if answered else None, questions.get(at) if answered else None, model))
    return _with_excerpts(sources, messages, qualification, country)


def _facts(q: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, value as shown) of each non-empty fact, in the page's order."""
    facts = []
    for field in SCALAR_FIELDS:
        value = q.get(field)
        if value is not None and value is not False and value != "":
            facts.append((field, _shown(value)))
    if q.get("budget_min") is not None or q.get("budget_max") is not None:
        facts.append(("budget", _budget_shown(q)))
    facts += [("locations", str(place)) for place in q.get("locations") or []]
    return facts


def _gives(field: str, shown: str, reading: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    """Whether a text's own qualification gives the stored fact."""
    if field == "budget":
        return _same_budget(reading, stored)
    if field == "locations":
        return shown in (reading.get("locations") or [])
    return _same(reading.get(field), stored.get(field))


def _implied_operation(reading: Mapping[str, Any], text: str) -> bool:
    """Whether a text's operation is only the rules' inference from its financing (no word of an operation)."""
    return reading.get("financing") in _BUY_FINANCING and re.search(GATES["operation"][0], fold(text)) is None


def _written(field: str, shown: str, text: str, stored: Mapping[str, Any]) -> bool:
    """Whether a text has the fact's very words: a place, a name, an email or phone an LLM copied."""
    if field == "locations":
        return _literally(text, shown)
    if field in ("name", "email", "phone"):
        return _literally(text, str(stored.get(field)))
    return False


def _read(texts: Mapping[int, str], country: str | None) -> dict[int, dict[str, Any]]:
    """Each text qualified on its own, all in one vectorised pass (one conversation per text)."""
    if not texts:
        return {}
    facts = qualify_frame(messages_frame([(key, [Turn("lead", text)], country) for key, text in texts.items()]))
    return {row["conversation"]: row for row in facts.iter_rows(named=True)}


def _questions(messages: Sequence[Said]) -> dict[int, str]:
    """The bot's question each lead message answers: the agent's latest message that asked something,
    until the lead says something (as ``in_context`` reads it)."""
    questions: dict[int, str] = {}
    asked: str | None = None
    for i, m in enumerate(messages):
        if m.role == "lead":
            if asked is not None:
                questions[i] = asked
            if (m.text or "").strip():
                asked = None
        else:
            asked = m.text if m.asks else None
    return questions


def _same(found: Any, stored: Any) -> bool:
    if found is None or stored is None:
        return False
    if isinstance(stored, bool) or isinstance(found, bool):
        return found is stored or found == stored
    if isinstance(stored, int | float) and isinstance(found, int | float):
        return math.isclose(float(found), float(stored), rel_tol=1e-9, abs_tol=1e-6)
    return str(found) == str(stored)


def _same_budget(reading: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    """The amounts as stored; the currency too, unless the message names none (the qualifier then takes
    the currency an earlier budget named)."""
    low, high = reading.get("budget_min"), reading.get("budget_max")
    if low is None and high is None:
        return False
    amounts = all((r is None and s is None) or _same(r, s)
                  for r, s in ((low, stored.get("budget_min")), (high, stored.get("budget_max"))))
    currency = reading.get("budget_currency")
    return amounts and (currency is None or currency == stored.get("budget_currency"))


def _literally(text: str, value: str) -> bool:
    """The value written in the message as it is (names, places, emails), or a phone's last eight digits."""
    if value.startswith("+") and value[1:].isdigit():
        return value[-8:] in re.sub(r"\D", "", text)
    needle = fold(value).strip()
    return bool(needle) and re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", fold(text)) is not None


def _with_excerpts(sources: list[Source], messages: Sequence[Said], stored: Mapping[str, Any],
                   country: str | None) -> list[Source]:
    """Each stating message's words for its fact: the latest clause of the message that, read alone,
    still gives the stored value; the message itself (shortened) when no clause does on its own. One
    vectorised pass over the clauses of the few messages that are sources."""
    stating = sorted({s.index for s in sources if s.kind == "message" and s.index is not None})
    clauses: list[tuple[int, str]] = []
    for at in stating:
        parts = [p.strip().rstrip(",;") for p in _CLAUSE_END.split(messages[at].text) if p.strip()]
        if len(parts) > 1:
            clauses += [(at, part) for part in parts]
    readings = _read({n: text for n, (_, text) in enumerate(clauses)}, country)
    out = []
    for source in sources:
        if source.kind != "message" or source.index is None:
            out.append(source)
            continue
        excerpt = _short(messages[source.index].text)
        for n in reversed(range(len(clauses))):
            at, text = clauses[n]
            if at == source.index and (_gives(source.field, source.value, readings[n], stored)
                                       or _written(source.field, source.value, text, stored)):
                excerpt = _short(text)
                break
        out.append(replace(source, excerpt=excerpt))
    return out


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS - 1].rstrip() + "…"


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _number(value)


def _budget_shown(q: Mapping[str, Any]) -> str:
    low, high = q.get("budget_min"), q.get("budget_max")
    amount = (f"{_number(low)}–{_number(high)}" if low is not None and high is not None and low != high
              else _number(high if high is not None else low))
    if low is not None and high is None:
        amount = f"≥ {amount}"
    unit = " ".join(str(x) for x in (q.get("budget_currency"), "/ mes" if q.get("budget_period") == "month" else None)
                    if x)
    return f"{amount} {unit}".strip()
