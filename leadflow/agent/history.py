"""A contact's conversation as the agent reads it: what landed, what the agent sent since, what it holds.

Three sources describe one conversation, and each can be late: the landed messages
(``raw_messages``, the record of everything), the agent's own replies that were sent but have not
landed yet, and the inbound messages the agent read from Kafka that have not landed yet. They are
merged by provider id (a message known to two sources counts once) and ordered by time.

After a person hands a lead back to the bot, what came before the release stays as context (what
was asked and answered), but no longer silences the bot: a person's words become plain earlier
answers, and the bot's own handoff is no longer in force.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from leadflow.agent.decision import Action, Message, MessageType, Role, Slot

_READABLE: frozenset[str] = frozenset({"text", "audio", "image", "sticker", "video", "document"})
# How the bot refers to replies it wrote, in the payload of the outbound message it produced.
AUTHOR_KEY = "leadflow"


@dataclass(frozen=True)
class Said:
    """One message, wherever it was read from, keyed by its provider id.

    ``at`` orders the conversation: when Leadflow received an inbound message, when it sent a reply.
    A provider's own times cannot order them: Telegram dates messages to the second, so a lead's
    answer and the reply before it often share one."""

    provider_id: str
    message: Message
    at: datetime


def message_type(raw: str | None) -> MessageType:
    """The channel's message type as the agent sorts it (anything unknown is a document it cannot read)."""
    return cast(MessageType, raw) if raw in _READABLE else "document"


def authored(direction: str, kind: str | None, text: str | None, sent_at: datetime,
             meta: Mapping[str, Any] | None) -> Message:
    """A landed message as a turn: inbound is the lead's; outbound says its author in its payload (the
    agent's replies and a person's), and any other outbound (a call assistant's turn) is the bot's side."""
    if direction == "inbound":
        return Message("lead", text or "", message_type(kind), sent_at)
    meta = meta or {}
    role: Role = "person" if meta.get("author") == "person" else "bot"
    action = meta.get("action")
    asks = meta.get("asks")
    return Message(role, text or "", "text", sent_at, cast(Action | None, action), cast(Slot | None, asks),
                   tuple(str(r) for r in meta.get("reasons") or ()))


def merge(*sources: Iterable[Said]) -> list[Message]:
    """One ordered conversation; the first source that knows a provider id wins (pass the landed first)."""
    seen: dict[str, Said] = {}
    for source in sources:
        for said in source:
            seen.setdefault(said.provider_id, said)
    # Stable: messages of the same instant keep the order their sources gave.
    return [said.message for said in sorted(seen.values(), key=lambda s: s.at)]


def since_release(turns: Iterable[Message], released_at: datetime | None) -> list[Message]:
    """The conversation as the bot may act on it after a person handed the lead back at ``released_at``."""
    if released_at is None:
        return list(turns)
    out = []
    for turn in turns:
        if turn.sent_at is not None and turn.sent_at <= released_at:
            if turn.role == "person":
                turn = dataclasses.replace(turn, role="bot", action="answer")
            elif turn.role == "bot" and turn.action in ("handoff", "close"):
                turn = dataclasses.replace(turn, action="answer")
        out.append(turn)
    return out
