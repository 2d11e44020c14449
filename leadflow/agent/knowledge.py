"""What the agent knows about a lead: the rules qualifier over the lead's messages, read in context.

A short reply means something only next to the question it answered: "3" after "¿cuántos
dormitorios?" is three bedrooms, "no" after the DICOM question is a clean record, "Camila" after
"¿cómo te llamas?" is a name. ``qualifier_turns`` makes such replies explicit before the rules
qualifier reads them (a caller qualifying conversations in bulk uses it too), so an answered
question is known and never asked again. Qualifications are cached by the lead's turns: the same
turns are qualified once per process, however many decisions read them; turns not seen yet are read
together with whatever other workers are qualifying at that moment (``qualification/batcher.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import lru_cache

from leadflow.agent import words
from leadflow.agent.decision import Conversation, Message, Slot
from leadflow.agent.voice import voice_of
from leadflow.qualification import answers
from leadflow.qualification.batcher import qualify_batched
from leadflow.qualification.schema import Qualification
from leadflow.qualification.turns import Turn

_explicit = answers.explicit
_short_answer = answers.short_answer


def _answers(turns: Sequence[Message]) -> list[tuple[Message, Slot | None]]:
    """Each readable lead message with the question it answers (the first reply after a bot question)."""
    out: list[tuple[Message, Slot | None]] = []
    asked: Slot | None = None
    for message in turns:
        if message.role != "lead":
            asked = message.asks if message.role == "bot" else None
        elif message.type == "text" and message.text.strip():
            out.append((message, asked))
            asked = None
    return out


def qualifier_turns(turns: Sequence[Message], english: bool = False) -> tuple[Turn, ...]:
    """The lead's text messages as the rules qualifier should read them (bare answers made explicit)."""
    return tuple(Turn("lead", _explicit(m.text, asked, english)) for m, asked in _answers(turns))


@lru_cache(maxsize=2048)
def _qualified(turns: tuple[Turn, ...], country: str | None) -> Qualification:
    # Batched: the agent's workers qualify at the same moment, and one pass for many costs what one costs.
    return qualify_batched(turns, country)


def _qualify(turns: tuple[Turn, ...], country: str | None) -> Qualification:
    return _qualified(turns, country).model_copy(deep=True)  # the cached one is shared: never hand it out


def known(conversation: Conversation) -> Qualification:
    """What the lead has said so far: the caller's qualification if given, else the rules'; then what
    only the questions explain (a place the rules do not know, a purchase budget that no longer applies)."""
    english = voice_of(conversation).language == "en"
    q = conversation.qualification
    if q is None:
        q = _qualify(qualifier_turns(conversation.turns, english), conversation.country)
    else:
        q = q.model_copy(deep=True)
    answers = _answers(conversation.turns)
    if not q.locations:
        # "¿En qué comuna?" — "Lo Espejo": a place the rules' list lacks is still the lead's answer.
        place = next((_short_answer(m.text) for m, asked in reversed(answers) if asked == "location"), None)
        if place:
            q.locations = [place.lower()]
    switch = next((i for i, (m, asked) in enumerate(answers) if asked == "switch_to_rent" and words.is_yes(m.text)),
                  None)
    if switch is not None:
        # A buyer who accepted to look at rentals: the purchase budget is not a rent.
        after = _qualify(tuple(Turn("lead", _explicit(m.text, asked, english)) for m, asked in answers[switch + 1:]),
                         conversation.country)
        q.operation = "rent"
        q.budget_min, q.budget_max = after.budget_min, after.budget_max
        q.budget_currency, q.budget_period = after.budget_currency, after.budget_period
    return q


def known_before(conversation: Conversation) -> Qualification:
    """What was known before the lead's latest message (to tell a new fact, or a changed one)."""
    lead = [i for i, m in enumerate(conversation.turns) if m.role == "lead"]
    if len(lead) < 2:
        return Qualification()
    return known(dataclasses.replace(conversation, turns=conversation.turns[:lead[-1]], qualification=None,
                                     notice=None))


def asked(conversation: Conversation) -> set[Slot]:
    """The slots the bot has asked for; a purchase budget asked before the lead switched to renting
    does not count (the rent is a new question)."""
    slots: set[Slot] = set()
    answered: Slot | None = None
    for message in conversation.turns:
        if message.role == "bot":
            if message.asks is not None:
                slots.add(message.asks)
            answered = message.asks
        elif message.role == "lead" and message.type == "text" and message.text.strip():
            if answered == "switch_to_rent" and words.is_yes(message.text):
                slots.discard("budget")
            answered = None
    return slots


def credit_blocked(q: Qualification) -> bool:
    """A record that rules out a mortgage now: DICOM (or the local bureau) or arrears stated."""
    return q.dicom_status == "dirty" or (q.arrears_amount or 0) > 0
