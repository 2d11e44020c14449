"""The agent's replies in PostgreSQL: what a contact said before, who answers it, and each reply's fate.

A reply is claimed (a row of ``agent_replies`` keyed by the newest inbound message it answers) in
the same transaction as its decision, before the provider is called: a burst read twice — after a
restart, or by two processes during a hand-over of partitions — finds its row and is not answered
twice. The row then moves ``claimed`` → ``sending`` (committed just before the provider call) →
``sent`` / ``retry`` / ``failed`` / ``dropped``; a silence is stored as ``silent`` so the reason is kept.
A crash between ``sending`` and the provider's answer cannot know whether the lead got the message;
the row stays ``sending`` and is reported (``leadflow agent status``), never resent blindly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg2.extensions

from leadflow.agent.decision import Decision
from leadflow.agent.history import Said, authored

HISTORY_LIMIT = 200  # the newest messages of a conversation the agent reads; older ones rarely matter


@dataclass(frozen=True)
class Inbound:
    """One inbound chat message the agent read from Kafka."""

    provider_id: str
    text: str
    type: str
    sent_at: datetime
    received_at: datetime
    partition: int
    offset: int


@dataclass
class Burst:
    """A contact's messages read since its last reply, answered together."""

    broker_id: int
    broker_slug: str
    channel: str
    contact_key: str
    chat_id: str  # where a reply goes: Telegram's chat, WhatsApp's number
    phone: str | None
    display_name: str | None
    contact: dict[str, Any]
    messages: list[Inbound] = field(default_factory=list)

    @property
    def last(self) -> Inbound:
        return self.messages[-1]

    def pending(self) -> list[Said]:
        return [Said(m.provider_id, authored("inbound", m.type, m.text, m.sent_at, None), m.received_at)
                for m in self.messages]


@dataclass(frozen=True)
class Claim:
    """The burst's reply as recorded (by this decision, or by an earlier one when ``new`` is false)."""

    reply_id: int
    status: str
    body: str | None
    action: str
    asks: str | None
    reasons: tuple[str, ...]
    policy: str
    lead_id: int | None
    new: bool

    def meta(self, reply_to: str) -> dict[str, Any]:
        return payload_meta(self.action, self.asks, self.reasons, reply_to, self.policy)


def lead_of(cur: psycopg2.extensions.cursor, broker_id: int, channel: str, contact_key: str) -> int | None:
    """The lead identity resolution made of this contact, following merges; None before it ran."""
    cur.execute("""SELECT coalesce(l.merged_into, l.lead_id) FROM leadflow.lead_identities i
                   JOIN leadflow.leads l USING (lead_id)
                   WHERE i.broker_id = %s AND i.identity_kind = %s AND i.identity_value = %s""",
                (broker_id, channel, contact_key))
    row = cur.fetchone()
    return int(row[0]) if row else None


def landed(cur: psycopg2.extensions.cursor, burst: Burst, lead_id: int | None) -> list[Said]:
    """The conversation's landed messages: this contact's on this channel and, once it is a lead, the
    lead's on every channel (an opt-out on WhatsApp silences the bot on Telegram too)."""
    cur.execute("""
        SELECT provider_message_id, direction, message_type, body, sent_at, payload -> 'leadflow', at FROM (
            SELECT m.provider_message_id, m.direction, m.message_type, m.body, m.sent_at, m.payload,
                   CASE WHEN m.direction = 'inbound' THEN m.received_at ELSE m.sent_at END AS at
            FROM leadflow.raw_messages m
            WHERE m.broker_id = %(broker)s AND m.channel = %(channel)s AND m.contact_channel_id = %(contact)s
            UNION
            SELECT m.provider_message_id, m.direction, m.message_type, m.body, m.sent_at, m.payload,
                   CASE WHEN m.direction = 'inbound' THEN m.received_at ELSE m.sent_at END
            FROM leadflow.message_leads ml JOIN leadflow.raw_messages m USING (message_id)
            WHERE ml.lead_id = %(lead)s
        ) AS conversation ORDER BY at DESC LIMIT %(limit)s""",
                {"broker": burst.broker_id, "channel": burst.channel, "contact": burst.contact_key,
                 "lead": lead_id if lead_id is not None else -1, "limit": HISTORY_LIMIT})
    rows = cur.fetchall()[::-1]
    return [Said(pid, authored(direction, kind, body, sent_at, meta), at)
            for pid, direction, kind, body, sent_at, meta, at in rows]


def reply_provider_id(reply_id: int) -> str:
    """The id an agent reply lands under: ours, since Telegram's message ids repeat across chats."""
    return f"reply:{reply_id}"


def remembered(cur: psycopg2.extensions.cursor, burst: Burst) -> list[Said]:
    """What the agent heard from this contact and the replies it sent, landed or not yet."""
    cur.execute("""SELECT reply_id, status, body, sent_at, action, asks, reasons, heard FROM leadflow.agent_replies
                   WHERE broker_id = %s AND channel = %s AND contact_key = %s
                   ORDER BY reply_id DESC LIMIT %s""",
                (burst.broker_id, burst.channel, burst.contact_key, HISTORY_LIMIT))
    out: list[Said] = []
    for rid, status, body, at, action, asks, reasons, heard in cur.fetchall():
        for m in heard or ():
            sent_at = datetime.fromisoformat(m["sent_at"])
            out.append(Said(m["id"], authored("inbound", m["type"], m["text"], sent_at, None),
                            datetime.fromisoformat(m["received_at"])))
        if status == "sent":
            out.append(Said(reply_provider_id(rid), authored("outbound", "text", body, at, {
                "author": "bot", "action": action, "asks": asks, "reasons": reasons}), at))
    return out


def heard(burst: Burst) -> list[dict[str, Any]]:
    return [{"id": m.provider_id, "text": m.text, "type": m.type, "sent_at": m.sent_at.isoformat(),
             "received_at": m.received_at.isoformat()} for m in burst.messages if m.offset >= 0]


@dataclass(frozen=True)
class HandlerNow:
    handler: str
    by_person: bool
    switched_at: datetime


def handler_now(cur: psycopg2.extensions.cursor, burst: Burst, lead_id: int | None) -> HandlerNow | None:
    """The newest switch between bot and person for this lead or contact; None: never switched (the bot's)."""
    cur.execute("""SELECT handler, user_id IS NOT NULL, switched_at FROM leadflow.lead_handlers
                   WHERE broker_id = %s AND (lead_id = %s OR (channel = %s AND contact_key = %s))
                   ORDER BY switch_id DESC LIMIT 1""",
                (burst.broker_id, lead_id if lead_id is not None else -1, burst.channel, burst.contact_key))
    row = cur.fetchone()
    return HandlerNow(row[0], bool(row[1]), row[2]) if row else None


def claim(cur: psycopg2.extensions.cursor, burst: Burst, lead_id: int | None, decision: Decision,
          policy: str, destination: dict[str, Any]) -> Claim:
    """Record the decision for this burst, or find the one recorded before (``new`` tells which).

    A new claim supersedes the contact's older claims still waiting to be sent (a crash can leave one
    for a burst that has grown since): the lead gets the reply to everything it said, once."""
    status = "silent" if decision.reply is None else "claimed"
    cur.execute("""
        INSERT INTO leadflow.agent_replies (broker_id, channel, contact_key, reply_to, lead_id, status, policy, action,
                                            asks, reasons, body, destination, heard, inbound_at, next_attempt_at)
        -- A claim the worker does not get to send (a crash) is picked up by the retry round after this.
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now() + interval '30 seconds')
        ON CONFLICT (broker_id, channel, reply_to) DO NOTHING
        RETURNING reply_id""",
                (burst.broker_id, burst.channel, burst.contact_key, burst.last.provider_id, lead_id, status, policy,
                 decision.action, decision.asks, list(decision.reasons), decision.reply, dumps(destination),
                 dumps(heard(burst)), burst.last.sent_at))
    row = cur.fetchone()
    if row is not None:
        cur.execute("""UPDATE leadflow.agent_replies SET status = 'dropped', reason = 'superseded by a later burst'
                       WHERE broker_id = %s AND channel = %s AND contact_key = %s AND reply_id < %s
                         AND status IN ('claimed', 'retry')""",
                    (burst.broker_id, burst.channel, burst.contact_key, row[0]))
        return Claim(int(row[0]), status, decision.reply, decision.action, decision.asks, decision.reasons, policy,
                     lead_id, True)
    cur.execute("""SELECT reply_id, status, body, action, asks, reasons, policy, lead_id FROM leadflow.agent_replies
                   WHERE broker_id = %s AND channel = %s AND reply_to = %s""",
                (burst.broker_id, burst.channel, burst.last.provider_id))
    found = cur.fetchone()
    assert found is not None
    return Claim(int(found[0]), found[1], found[2], found[3], found[4], tuple(found[5] or ()), found[6], found[7],
                 False)


def hand_off(cur: psycopg2.extensions.cursor, burst: Burst, lead_id: int | None, reason: str) -> None:
    """The bot hands the conversation to a person (recorded with no user: the bot made the switch)."""
    cur.execute("""INSERT INTO leadflow.lead_handlers (broker_id, lead_id, handler, user_id, reason, channel,
                                                       contact_key)
                   VALUES (%s, %s, 'person', NULL, %s, %s, %s)""",
                (burst.broker_id, lead_id, reason, burst.channel, burst.contact_key))


def mark_sending(cur: psycopg2.extensions.cursor, reply_id: int) -> int | None:
    """Take the reply for one attempt; the attempt's number, or None if it is not waiting to be sent."""
    cur.execute("""UPDATE leadflow.agent_replies SET status = 'sending', attempts = attempts + 1
                   WHERE reply_id = %s AND status IN ('claimed', 'retry') RETURNING attempts""", (reply_id,))
    row = cur.fetchone()
    return int(row[0]) if row else None


def settle(cur: psycopg2.extensions.cursor, reply_id: int, status: str, reason: str | None = None,
           provider_id: str | None = None, retry_at: datetime | None = None, sent_at: datetime | None = None) -> None:
    cur.execute("""UPDATE leadflow.agent_replies SET status = %s, reason = %s, next_attempt_at = %s,
                       provider_message_id = coalesce(%s, provider_message_id), sent_at = coalesce(%s, sent_at)
                   WHERE reply_id = %s""", (status, reason, retry_at, provider_id, sent_at, reply_id))


def newer_inbound(cur: psycopg2.extensions.cursor, reply_id: int) -> bool:
    """Whether the lead wrote again after the messages this reply answers (then the reply is stale)."""
    cur.execute("""SELECT EXISTS (
                       SELECT 1 FROM leadflow.agent_replies r JOIN leadflow.raw_messages m
                         ON m.broker_id = r.broker_id AND m.channel = r.channel AND m.contact_channel_id = r.contact_key
                       WHERE r.reply_id = %s AND m.direction = 'inbound' AND m.sent_at > r.inbound_at)""",
                (reply_id,))
    row = cur.fetchone()
    return bool(row and row[0])


def notification_row(cur: psycopg2.extensions.cursor, reply_id: int, burst: Burst, lead_id: int | None,
                     target: str | None, body: str) -> int | None:
    """Who is told about a handoff: the lead's assigned person, else the broker's active admins."""
    cur.execute("""SELECT array_agg(u.email ORDER BY u.email) FROM leadflow.users u
                   WHERE u.user_id = (SELECT assigned_user_id FROM leadflow.leads WHERE lead_id = %s)
                     AND NOT u.disabled""", (lead_id if lead_id is not None else -1,))
    row = cur.fetchone()
    recipients = row[0] if row and row[0] else None
    if not recipients:
        cur.execute("""SELECT coalesce(array_agg(email ORDER BY email), '{}') FROM leadflow.users
                       WHERE broker_id = %s AND role = 'ADMIN' AND NOT disabled""", (burst.broker_id,))
        row = cur.fetchone()
        recipients = row[0] if row else []
    cur.execute("""INSERT INTO leadflow.agent_notifications (broker_id, reply_id, lead_id, recipients, target,
                                                            status, body)
                   VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (reply_id) DO NOTHING RETURNING notification_id""",
                (burst.broker_id, reply_id, lead_id, recipients, target, "pending" if target else "no_target", body))
    found = cur.fetchone()
    return int(found[0]) if found and target else None


def payload_meta(decision_action: str, asks: str | None, reasons: list[str] | tuple[str, ...],
                 reply_to: str, policy: str) -> dict[str, Any]:
    """What an agent reply's landed message says about itself (read back by ``history.authored``)."""
    return {"author": "bot", "action": decision_action, "asks": asks, "reasons": list(reasons),
            "reply_to": reply_to, "policy": policy}


def status_counts(cur: psycopg2.extensions.cursor) -> dict[str, int]:
    cur.execute("SELECT status, count(*) FROM leadflow.agent_replies GROUP BY status ORDER BY status")
    return {status: int(n) for status, n in cur.fetchall()}


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
