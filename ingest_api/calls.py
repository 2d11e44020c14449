"""What the voice channels share: a finished call's transcript becomes one message per turn.

Turn ids are ``<call id>:<turn number>``, so a redelivered call report lands once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from leadflow.brokers import Broker
from leadflow.events import Channel, ChannelMessage, Contact

LEAD_ROLES = {"user", "customer", "human"}
AGENT_ROLES = {"bot", "assistant", "agent", "ai", "robot"}


def turns_to_messages(broker: Broker, channel: Channel, call_id: str, contact: Contact,
                      turns: list[tuple[str, str, datetime]], raw: dict[str, Any]) -> list[ChannelMessage]:
    """``turns`` are (role, text, time); roles other than lead or agent (system prompts, tool calls) are left out."""
    messages: list[ChannelMessage] = []
    for index, (role, text, at) in enumerate(turns):
        role = role.lower()
        if role not in LEAD_ROLES | AGENT_ROLES or not text.strip():
            continue
        messages.append(ChannelMessage.build(
            broker_id=broker.broker_id,
            broker_slug=broker.slug,
            channel=channel,
            provider_message_id=f"{call_id}:{index}",
            conversation_id=call_id,
            contact=contact,
            direction="inbound" if role in LEAD_ROLES else "outbound",
            message_type="voice_transcript",
            text=text.strip(),
            sent_at=at,
            # The full report rides on the first turn only: it can be large, and one copy is enough.
            raw=raw if not messages else {"call_id": call_id, "turn": index},
        ))
    return messages


def split_transcript(transcript: str, started: datetime) -> list[tuple[str, str, datetime]]:
    """``AI: ...\\nUser: ...`` as VAPI and Bland render a transcript, when no structured turns are sent."""
    turns = []
    for offset, line in enumerate(transcript.splitlines()):
        speaker, sep, text = line.partition(":")
        if sep and speaker.strip():
            turns.append((speaker.strip(), text, started + timedelta(seconds=offset)))
    return turns
