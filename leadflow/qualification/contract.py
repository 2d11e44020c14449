"""The `leadflow qualify` contract: conversation lines in, one flat JSON object per conversation out.

Input lines: ``{"id", "messages": [{"role": "lead"|"agent", "text", "at"?}]}`` (other keys ignored;
"user"/"customer" count as the lead, "assistant"/"bot" as the agent; ``at``, an ISO 8601 time, dates
the appointments a lead accepts: "mañana 19 hrs"). Output keys and their
meaning are fixed by ``schema.CONTRACT_KEYS``; a field not stated is null.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import orjson
import polars as pl

from leadflow.qualification.llm import LLMQualifier
from leadflow.qualification.rules import messages_frame, qualify_frame
from leadflow.qualification.schema import CONTRACT_KEYS, QUALIFICATION_SCHEMA
from leadflow.qualification.scoring import ScoringConfig, score_frame
from leadflow.qualification.turns import Turn

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
            turns.append(Turn("lead" if role in _LEAD else "agent", text, _moment(message.get("at"))))
    return turns


def _moment(value: Any) -> datetime | None:
    """A message's ``at`` (ISO 8601) as the wall-clock time it shows: "mañana 19 hrs" is read in the
    lead's own time, so an offset, when given, is dropped rather than converted."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        return None


def qualify_batch(conversations: Sequence[tuple[Any, list[Turn]]], country: str | None = None,
                  config: ScoringConfig | None = None, qualifier: LLMQualifier | None = None) -> pl.DataFrame:
    """(id, turns) per conversation → one contract row each (``CONTRACT_KEYS``), in order.

    The rules qualify the whole batch at once (vectorised); an LLM qualifier goes conversation by
    conversation (with the rules behind it). Scoring is always one vectorised pass.
    """
    if qualifier is None or qualifier.provider is None:
        facts = qualify_frame(messages_frame([(i, turns, country) for i, (_, turns) in enumerate(conversations)]))
    else:
        rows = []
        for i, (_, turns) in enumerate(conversations):
            row = qualifier.qualify(turns, country).qualification.model_dump(exclude={"version"})
            rows.append({**row, "conversation": i,
                         "lead_messages": sum(1 for t in turns if t.role == "lead" and t.text.strip())})
        facts = pl.DataFrame(rows, schema_overrides=QUALIFICATION_SCHEMA)
    scored = score_frame(facts, config, country)
    ids = [key for key, _ in conversations]  # any JSON value, so kept as Python objects
    order = scored["conversation"].cast(pl.Int64).to_list()
    return scored.with_columns(pl.Series("id", [ids[i] for i in order], dtype=pl.Object)).select(CONTRACT_KEYS)


def qualify_conversation(conversation: dict[str, Any], country: str | None = None,
                         config: ScoringConfig | None = None, qualifier: LLMQualifier | None = None) -> dict[str, Any]:
    turns = turns_of(conversation.get("messages", []))
    return qualify_batch([(conversation.get("id"), turns)], country, config, qualifier).row(0, named=True)


def qualify_lines(lines: Iterable[bytes | str], country: str | None = None, errors: list[str] | None = None,
                  qualifier: LLMQualifier | None = None, batch: int = 50_000) -> Iterator[dict[str, Any]]:
    """Each valid line qualified, in batches of ``batch`` lines; invalid lines are reported in
    ``errors`` (line number and reason)."""
    pending: list[tuple[Any, list[Turn]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            conversation = orjson.loads(line)
            if not isinstance(conversation, dict):
                raise ContractError("the line is not a JSON object")
            pending.append((conversation.get("id"), turns_of(conversation.get("messages", []))))
        except (orjson.JSONDecodeError, ContractError) as exc:
            if errors is not None:
                errors.append(f"line {number}: {exc}")
        if len(pending) >= batch:
            yield from qualify_batch(pending, country, qualifier=qualifier).iter_rows(named=True)
            pending = []
    if pending:
        yield from qualify_batch(pending, country, qualifier=qualifier).iter_rows(named=True)
