"""The `leadflow qualify` contract: conversation lines in, one flat JSON object per conversation out.

Input lines: ``{"id", "messages": [{"role": "lead"|"agent", "text"}]}`` (other keys ignored;
"user"/"customer" count as the lead, "assistant"/"bot" as the agent). Output keys and their
meaning are fixed by ``schema.CONTRACT_KEYS``; a field not stated is null.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from leadflow.qualification.llm import LLMQualifier
from leadflow.qualification.rules import Turn
from leadflow.qualification.schema import CONTRACT_KEYS
from leadflow.qualification.scoring import Engagement, ScoringConfig, score

_LEAD = {"lead", "user", "customer", "human", "cliente"}
_AGENT = {"agent", "assistant", "bot", "ai", "broker", "agente"}


class ContractError(ValueError):
    """An input line that is not a conversation; the message says which and why."""


def turns_of(messages: Any) -> list[Turn]:
    if not isinstance(messages, list):
        raise ContractError("'messages' is not a list")
    turns = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = str(message.get("role", "")).lower()
        text = message.get("text")
        if role in _LEAD | _AGENT and isinstance(text, str):
            turns.append(Turn("lead" if role in _LEAD else "agent", text))
    return turns


_RULES = LLMQualifier(None)


def qualify_conversation(conversation: dict[str, Any], country: str | None = None,
                         config: ScoringConfig | None = None, qualifier: LLMQualifier | None = None) -> dict[str, Any]:
    turns = turns_of(conversation.get("messages", []))
    qualification = (qualifier or _RULES).qualify(turns, country).qualification
    lead_messages = sum(1 for t in turns if t.role == "lead" and t.text.strip())
    result = score(qualification, Engagement(lead_messages=lead_messages), config)
    row = qualification.model_dump()
    row.update(id=conversation.get("id"), score=result.score, temperature=result.temperature)
    return {key: row[key] for key in CONTRACT_KEYS}


def qualify_lines(lines: Iterable[bytes | str], country: str | None = None, errors: list[str] | None = None,
                  qualifier: LLMQualifier | None = None) -> Iterator[dict[str, Any]]:
    """Each valid line qualified; invalid lines are reported in ``errors`` (line number and reason)."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            conversation = orjson.loads(line)
            if not isinstance(conversation, dict):
                raise ContractError("the line is not a JSON object")
            yield qualify_conversation(conversation, country, qualifier=qualifier)
        except (orjson.JSONDecodeError, ContractError) as exc:
            if errors is not None:
                errors.append(f"line {number}: {exc}")
