"""The canonical events that cross Kafka: one shape for every channel, versioned.

Every channel adapter in ``ingest_api/`` maps its provider payload into a ``ChannelMessage``
(or a ``DeliveryStatus`` for WhatsApp receipts). Nothing downstream of Kafka knows what a
Telegram update looks like. Bump ``SCHEMA_VERSION`` on an incompatible change and keep the
landing able to read the previous version.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

# "import": a row of a CSV a broker uploaded; "manual": a lead a person typed in (reports_api imports).
Channel = Literal["telegram", "whatsapp", "vapi", "bland", "form", "import", "manual"]
Direction = Literal["inbound", "outbound"]
DeliveryState = Literal["sent", "delivered", "read", "failed"]

# Event ids are derived, not random: the same provider message always gets the same id, so a
# redelivered webhook produces an identical event that the landing absorbs.
_EVENT_NAMESPACE = uuid.UUID("8f5d3c1e-6a0b-4c55-9a43-2f6f1b7f0d11")


def event_id_for(broker_id: int, channel: str, kind: str, provider_id: str) -> str:
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{broker_id}/{channel}/{kind}/{provider_id}"))


def utcnow() -> datetime:
    return datetime.now(UTC)


class Contact(BaseModel):
    """Who is on the other side, as far as this channel tells."""

    model_config = ConfigDict(frozen=True)

    channel_user_id: str | None = None
    phone_e164: str | None = None
    display_name: str | None = None
    email: str | None = None

    def key(self) -> str:
        """A stable per-channel identity, used to key Kafka records so one person's messages stay ordered."""
        return self.channel_user_id or self.phone_e164 or self.email or "anonymous"


class ChannelMessage(BaseModel):
    """One message of a conversation: a chat message, a form submission or one turn of a call."""

    model_config = ConfigDict(frozen=True)

    event_type: Literal["message"] = "message"
    schema_version: int = SCHEMA_VERSION
    event_id: str
    broker_id: int
    broker_slug: str
    channel: Channel
    provider_message_id: str = Field(min_length=1)
    conversation_id: str | None = None
    contact: Contact
    direction: Direction = "inbound"
    message_type: str = "text"
    text: str | None = None
    sent_at: datetime
    received_at: datetime = Field(default_factory=utcnow)
    raw: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def build(cls, *, broker_id: int, broker_slug: str, channel: Channel, provider_message_id: str,
              **fields: Any) -> ChannelMessage:
        return cls(
            event_id=event_id_for(broker_id, channel, "message", provider_message_id),
            broker_id=broker_id,
            broker_slug=broker_slug,
            channel=channel,
            provider_message_id=provider_message_id,
            **fields,
        )

    def kafka_key(self) -> bytes:
        return f"{self.broker_id}:{self.channel}:{self.contact.key()}".encode()


class DeliveryStatus(BaseModel):
    """A provider receipt for a message we sent (WhatsApp: sent, delivered, read, failed)."""

    model_config = ConfigDict(frozen=True)

    event_type: Literal["status"] = "status"
    schema_version: int = SCHEMA_VERSION
    event_id: str
    broker_id: int
    broker_slug: str
    channel: Channel
    provider_message_id: str = Field(min_length=1)
    status: DeliveryState
    recipient: Contact
    status_at: datetime
    error: str | None = None
    received_at: datetime = Field(default_factory=utcnow)
    raw: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def build(cls, *, broker_id: int, broker_slug: str, channel: Channel, provider_message_id: str,
              status: DeliveryState, **fields: Any) -> DeliveryStatus:
        return cls(
            event_id=event_id_for(broker_id, channel, f"status:{status}", provider_message_id),
            broker_id=broker_id,
            broker_slug=broker_slug,
            channel=channel,
            provider_message_id=provider_message_id,
            status=status,
            **fields,
        )

    def kafka_key(self) -> bytes:
        return f"{self.broker_id}:{self.channel}:{self.recipient.key()}".encode()


Event = ChannelMessage | DeliveryStatus


class DeadLetter(BaseModel):
    """An authentic request we could not turn into events: kept whole, with the reason."""

    schema_version: int = SCHEMA_VERSION
    broker_id: int
    broker_slug: str
    channel: str
    reason: str
    content_type: str | None = None
    body_b64: str
    received_at: datetime = Field(default_factory=utcnow)


OutboundChannel = Literal["telegram", "whatsapp", "vapi", "bland", "pipeline"]


class OutboundCommand(BaseModel):
    """Something a campaign step asks the dispatcher to do: send a message, place a call, propose a
    visit, move a stage. ``send_id`` is the row in ``outbound_sends`` that records its fate."""

    model_config = ConfigDict(frozen=True)

    event_type: Literal["outbound"] = "outbound"
    schema_version: int = SCHEMA_VERSION
    event_id: str
    send_id: int
    broker_id: int
    broker_slug: str
    campaign_id: int
    lead_id: int
    step: int
    action: Literal["message", "call", "visit", "move_stage"]
    channel: OutboundChannel
    payload: dict[str, Any]
    created_at: datetime

    @classmethod
    def build(cls, *, send_id: int, broker_id: int, campaign_id: int, lead_id: int, step: int,
              **fields: Any) -> OutboundCommand:
        return cls(event_id=event_id_for(broker_id, "outbound", f"{campaign_id}/{step}", str(lead_id)),
                   send_id=send_id, broker_id=broker_id, campaign_id=campaign_id, lead_id=lead_id, step=step, **fields)

    def kafka_key(self) -> bytes:
        # One lead's commands stay in order on one partition.
        return f"{self.broker_id}:{self.lead_id}".encode()
