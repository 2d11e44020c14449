"""The agent's vocabulary: a conversation as the agent sees it, the decision it returns, and ``Policy``.

A policy (offline rules now, an LLM later) turns a ``Conversation`` into a ``Decision``; the
guardrails (``guardrails.Guarded``) wrap every policy. The bot's own past messages carry what it
decided when it sent them (``Message.from_decision``), so the agent reads its history as data,
never by parsing its own words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from leadflow.agent.config import AgentConfig
from leadflow.appointments.dialog import Move
from leadflow.appointments.store import Appointment, Offer
from leadflow.qualification.schema import Qualification

Action = Literal["ask", "answer", "propose_visit", "handoff", "close", "confirm_opt_out", "silence"]
# What the bot can ask for: the qualification's fields as a lead answers them, plus the visit's time
# and the offer to look at rentals instead (made to a lead whose credit record rules out buying now).
Slot = Literal["operation", "location", "property_type", "bedrooms", "budget", "timeline", "financing", "dicom",
               "name", "contact", "visit_time", "switch_to_rent"]
Role = Literal["lead", "bot", "person"]
MessageType = Literal["text", "audio", "image", "sticker", "video", "document"]


@dataclass(frozen=True)
class VisitStep:
    """A write the policy asks the caller (the stream) to make before replying: book, offer, confirm, cancel.
    The stream makes it in the reply's transaction and writes the outcome after ``preface``; without a lead
    to write for, the decision's own ``reply`` is sent as it is."""

    move: Move
    preface: str = ""  # the reply's words before the outcome (greeting, acknowledgement, answers)
    follow_up: str | None = None  # after a booking: the question for what the booking still needs
    follow_up_asks: Slot | None = None


@dataclass(frozen=True)
class Decision:
    action: Action
    reply: str | None = None
    asks: Slot | None = None
    reasons: tuple[str, ...] = ()
    visit: VisitStep | None = None

    def __post_init__(self) -> None:
        if (self.reply is None) != (self.action == "silence"):
            raise ValueError(f"a {self.action!r} decision {'needs' if self.reply is None else 'has no'} reply")
        if self.asks is not None and self.reply is None:
            raise ValueError("only a reply can ask for something")

    def with_reasons(self, *reasons: str) -> Decision:
        return Decision(self.action, self.reply, self.asks, (*self.reasons, *(r for r in reasons
                                                                           if r not in self.reasons)), self.visit)


def silence(*reasons: str) -> Decision:
    return Decision("silence", reasons=reasons)


@dataclass(frozen=True)
class Message:
    role: Role
    text: str = ""
    type: MessageType = "text"
    sent_at: datetime | None = None
    # The bot's messages only: what it decided when it sent this one.
    action: Action | None = None
    asks: Slot | None = None
    reasons: tuple[str, ...] = ()

    @classmethod
    def from_decision(cls, decision: Decision, sent_at: datetime | None = None) -> Message:
        """The bot message a sent decision becomes (a silence sends nothing, so it is no message)."""
        if decision.reply is None:
            raise ValueError("a silence is not a message")
        return cls("bot", decision.reply, "text", sent_at, decision.action, decision.asks, decision.reasons)


@dataclass(frozen=True)
class Visits:
    """The lead's visit as the stream read it: the open offer (the slots in the order shown), the next visit,
    the instant and the broker's timezone "mañana" and "el martes" are read in."""

    now: datetime
    timezone: str
    offer: Offer | None = None
    appointment: Appointment | None = None


@dataclass(frozen=True)
class Conversation:
    turns: Sequence[Message]
    config: AgentConfig
    country: str | None = None  # the broker's (ISO code): which market's places, currency and words
    # The channel the lead writes on: phone-based channels already give the bot a way to reach them.
    channel: str | None = None
    # What the rules qualifier says about the lead, if the caller has it (read from
    # ``knowledge.qualifier_turns``); else computed when first needed.
    qualification: Qualification | None = None
    # A sentence the guardrails need said before the policy's own words (e.g. a refusal), so the
    # policy can place it after its greeting and still ask its question last.
    notice: str | None = None
    # The broker's own opt-out words (``broker_settings.campaigns.opt_out_words``), on top of the built-in ones.
    opt_out_words: tuple[str, ...] = ()
    # The lead's offer and visit, when the caller knows the lead (None: not resolved into a lead yet, or a
    # caller without a database; the bot then proposes a visit in words and a person books it).
    visits: Visits | None = None
    lead_messages: tuple[Message, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "turns", tuple(self.turns))
        object.__setattr__(self, "lead_messages", tuple(t for t in self.turns if t.role == "lead"))

    @property
    def last(self) -> Message | None:
        return self.turns[-1] if self.turns else None

    @property
    def bot_messages(self) -> tuple[Message, ...]:
        return tuple(t for t in self.turns if t.role == "bot")


class Policy(Protocol):
    def decide(self, conversation: Conversation) -> Decision:
        """The bot's next move, given that the conversation's last turn is the lead's."""
        ...
