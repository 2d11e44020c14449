"""A person answers a lead from the workspace: through the lead agent's senders, taking the lead from the bot.

``send_person_reply`` writes to where the lead last wrote from (its newest inbound Telegram or WhatsApp
message), inside the WhatsApp 24-hour window as text and outside it only as an approved template. The
reply is claimed in ``leadflow.person_replies`` under the form's idempotency key and committed BEFORE the
provider is called, so a double click or a retried POST sends once; a provider failure leaves the claim
``failed`` (nothing marked sent) and the same key may try again. A sent reply takes the lead over (a
``lead_handlers`` row 'person' signed by the person, as ``leadflow.agent.store.take_over`` writes it),
is audited, and is produced onto the messages topic as an outbound message whose payload says
``{"leadflow": {"author": "person", ...}}``, so the landing stores it and the agent reads it as a
person's turn (``history.authored``). A reply Kafka did not acknowledge stays ``produced = false`` and is
produced again before the broker's next reply is sent (the landing absorbs a twin).

The transactions come from the caller (``Tx``): the reports API's scoped write cursors, under which
PostgreSQL's row security keeps an AGENT to its own leads and every row signed by the person acting.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg2.extensions

from leadflow.agent.history import AUTHOR_KEY
from leadflow.agent.store import Handler
from leadflow.campaigns.eligibility import in_whatsapp_window, says_opt_out
from leadflow.events import ChannelMessage, Contact, OutboundCommand
from leadflow.outbound.errors import Rejected, RetryLater, Skip
from leadflow.outbound.senders import Sender

Tx = Callable[[], AbstractContextManager[psycopg2.extensions.cursor]]
Audit = Callable[[psycopg2.extensions.cursor, int, str, int | None, dict[str, Any] | None, dict[str, Any] | None],
                 None]
Publish = Callable[[ChannelMessage], bool]  # True once Kafka acknowledged it

MAX_REPLY = 4096  # Telegram's limit for one message; WhatsApp allows more
MAX_REASON = 500
CHAT_CHANNELS = ("telegram", "whatsapp")
TAKE_OVER_REASON = "answered from the workspace"


class ReplyError(ValueError):
    """The reply cannot be sent as asked; the message says why and nothing was sent."""


class NotFound(ReplyError):
    """The lead is not one this person may answer (another broker's, not assigned to an AGENT, merged)."""


class Refused(ReplyError):
    """The lead cannot be written to now (no chat channel, opted out, outside the WhatsApp window)."""


class Invalid(ReplyError):
    """The request itself is wrong (empty text, a template on Telegram, a key reused for another reply)."""


class InProgress(ReplyError):
    """The same key's send is under way or its fate is unknown (a crash while calling the provider)."""


class SendFailed(ReplyError):
    """The provider refused or could not be reached; nothing was marked sent and the same key may retry."""


@dataclass(frozen=True)
class Template:
    name: str
    language: str
    parameters: tuple[str, ...] = ()


@dataclass(frozen=True)
class Target:
    """Where a person's reply to the lead goes, and what may be sent there now."""

    channel: str
    chat_id: str
    contact: dict[str, Any]
    last_inbound_at: datetime
    in_window: bool  # WhatsApp: free text allowed; Telegram: always True
    opted_out: bool

    @property
    def templates_only(self) -> bool:
        return self.channel == "whatsapp" and not self.in_window


@dataclass(frozen=True)
class PersonReply:
    reply_id: int
    lead_id: int
    channel: str
    body: str
    status: Literal["sent"]
    provider_message_id: str
    sent_at: datetime
    produced: bool
    repeated: bool  # the key had already sent: nothing was sent again
    took_over: bool


def reply_target(cur: psycopg2.extensions.cursor, lead_id: int, now: datetime | None = None) -> Target | None:
    """The lead's newest inbound Telegram or WhatsApp message as a destination (None: no chat channel)."""
    cur.execute("""SELECT m.channel, m.conversation_id, m.contact_channel_id, m.contact_phone, m.contact_name,
                          m.contact_email, m.sent_at
                   FROM leadflow.message_leads ml JOIN leadflow.raw_messages m USING (message_id)
                   WHERE ml.lead_id = %s AND m.direction = 'inbound' AND m.channel = ANY(%s)
                   ORDER BY m.sent_at DESC, m.message_id DESC LIMIT 1""", (lead_id, list(CHAT_CHANNELS)))
    row = cur.fetchone()
    if row is None:
        return None
    channel, conversation_id, channel_user, phone, name, email, sent_at = row
    # Telegram writes to the chat; WhatsApp to the lead's WhatsApp id (its number without '+').
    whatsapp_id = channel_user or (phone or "").lstrip("+")
    chat_id = (conversation_id or channel_user) if channel == "telegram" else whatsapp_id
    if not chat_id:
        return None
    contact = {k: v for k, v in {"channel_user_id": channel_user, "phone_e164": phone, "display_name": name,
                                 "email": email}.items() if v}
    now = now or datetime.now(UTC)
    in_window = channel != "whatsapp" or in_whatsapp_window(sent_at, now)
    return Target(channel, str(chat_id), contact, sent_at, in_window, _opted_out(cur, lead_id))


def _opted_out(cur: psycopg2.extensions.cursor, lead_id: int) -> bool:
    """The qualification's opted_out, or any of the lead's messages in the consent authority's opt-out words
    (the built-in ones and the broker's own)."""
    cur.execute("""SELECT q.opted_out, s.campaigns -> 'opt_out_words' FROM leadflow.leads l
                   LEFT JOIN leadflow.lead_qualifications q USING (lead_id)
                   LEFT JOIN leadflow.broker_settings s ON s.broker_id = l.broker_id
                   WHERE l.lead_id = %s""", (lead_id,))
    row = cur.fetchone()
    if row is not None and row[0]:
        return True
    own = tuple(str(w) for w in row[1]) if row is not None and isinstance(row[1], list) else ()
    cur.execute("""SELECT m.body FROM leadflow.message_leads ml JOIN leadflow.raw_messages m USING (message_id)
                   WHERE ml.lead_id = %s AND m.direction = 'inbound' AND m.body IS NOT NULL""", (lead_id,))
    return any(says_opt_out(body, own) for (body,) in cur.fetchall())


def current_handler(cur: psycopg2.extensions.cursor, lead_id: int) -> Handler:
    cur.execute("""SELECT handler FROM leadflow.lead_handlers WHERE lead_id = %s
                   ORDER BY switch_id DESC LIMIT 1""", (lead_id,))
    row = cur.fetchone()
    return "bot" if row is None else row[0]


def _lock_lead(cur: psycopg2.extensions.cursor, broker_id: int, lead_id: int) -> None:
    # FOR UPDATE serialises replies and switches of one lead; row security hides another agent's lead.
    cur.execute("SELECT merged_into FROM leadflow.leads WHERE lead_id = %s AND broker_id = %s FOR UPDATE",
                (lead_id, broker_id))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"broker {broker_id} has no lead {lead_id} you may answer")
    if row[0] is not None:
        raise NotFound(f"lead {lead_id} was merged into lead {row[0]}; answer that one")


def _switch(cur: psycopg2.extensions.cursor, broker_id: int, lead_id: int, user_id: int, handler: Handler,
            reason: str, audit: Audit) -> None:
    """The same row ``leadflow.agent.store.take_over``/``release`` write, plus the workspace's audit entry."""
    before = current_handler(cur, lead_id)
    cur.execute("""INSERT INTO leadflow.lead_handlers (broker_id, lead_id, handler, user_id, reason)
                   VALUES (%s, %s, %s, %s, %s)""", (broker_id, lead_id, handler, user_id, reason))
    audit(cur, broker_id, "lead.handler", lead_id, {"handler": before}, {"handler": handler, "reason": reason})


def set_handler(tx: Tx, audit: Audit, *, broker_id: int, lead_id: int, user_id: int, handler: Handler,
                reason: str) -> bool:
    """A person takes the lead over or hands it back to the bot; False when it already was so (nothing written)."""
    reason = reason.strip()
    if not reason:
        raise Invalid("say why (a reason is recorded with every switch)")
    if len(reason) > MAX_REASON or "\x00" in reason:
        raise Invalid(f"the reason must be text of at most {MAX_REASON} characters")
    with tx() as cur:
        _lock_lead(cur, broker_id, lead_id)
        if current_handler(cur, lead_id) == handler:
            return False
        _switch(cur, broker_id, lead_id, user_id, handler, reason, audit)
        return True


def _clean(text: str, template: Template | None, channel: str) -> str:
    text = text.strip()
    if "\x00" in text:
        raise Invalid("the reply must not contain NUL characters")
    if len(text) > MAX_REPLY:
        raise Invalid(f"the reply is longer than {MAX_REPLY} characters")
    if template is not None:
        if channel != "whatsapp":
            raise Invalid("templates are WhatsApp's; on Telegram write the reply")
        if not template.name.strip() or not template.language.strip():
            raise Invalid("a template needs its name and language")
        return text or f"[plantilla {template.name}] " + " · ".join(template.parameters)
    if not text:
        raise Invalid("the reply is empty")
    return text


def _claim(cur: psycopg2.extensions.cursor, broker_id: int, lead_id: int, key: str, text: str,
           template: Template | None, now: datetime) -> tuple[int, str, dict[str, Any], str, dict[str, Any] | None] | \
        PersonReply:
    """Claim the reply (status 'sending'); or the reply the key already sent."""
    _lock_lead(cur, broker_id, lead_id)
    cur.execute("""SELECT reply_id, lead_id, status, channel, body, provider_message_id, sent_at, produced, destination,
                          template
                   FROM leadflow.person_replies WHERE broker_id = %s AND idempotency_key = %s FOR UPDATE""",
                (broker_id, key))
    found = cur.fetchone()
    if found is not None:
        reply_id, found_lead, status, channel, body, provider_id, sent_at, produced, destination, tpl = found
        if found_lead != lead_id:
            raise Invalid("this idempotency key was used for another lead's reply; send a new one")
        if status == "sent":
            return PersonReply(reply_id, lead_id, channel, body, "sent", provider_id, sent_at, produced, True, False)
        if status == "sending":
            raise InProgress("this reply is being sent, or a crash left its fate unknown; it is not sent again")
        # failed: the provider did not take it; try again with what was claimed then.
        cur.execute("""UPDATE leadflow.person_replies SET status = 'sending', attempts = attempts + 1, error = NULL,
                       updated_at = now() WHERE reply_id = %s""", (reply_id,))
        return int(reply_id), channel, destination, body, tpl
    target = reply_target(cur, lead_id, now)
    if target is None:
        raise Refused("this lead has no Telegram or WhatsApp chat to answer; call or email it instead")
    if target.opted_out:
        raise Refused("this lead asked not to be contacted (opted out); nothing was sent")
    body = _clean(text, template, target.channel)
    if target.templates_only and template is None:
        raise Refused("the lead last wrote on WhatsApp more than 24 hours ago: outside WhatsApp's customer-service "
                      "window only an approved template can be sent")
    destination = {"chat_id": target.chat_id, "contact": target.contact,
                   "last_inbound_at": target.last_inbound_at.isoformat()}
    tpl = None if template is None else {"name": template.name.strip(), "language": template.language.strip(),
                                         "parameters": list(template.parameters)}
    cur.execute("""INSERT INTO leadflow.person_replies (broker_id, lead_id, idempotency_key, channel, destination, body,
                                                        template, status)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, 'sending') RETURNING reply_id""",
                (broker_id, lead_id, key, target.channel, json.dumps(destination), body,
                 None if tpl is None else json.dumps(tpl)))
    row = cur.fetchone()
    assert row is not None
    return int(row[0]), target.channel, destination, body, tpl


def _command(reply_id: int, broker_id: int, broker_slug: str, lead_id: int, channel: str, destination: dict[str, Any],
             body: str, template: dict[str, Any] | None, now: datetime) -> OutboundCommand:
    if channel == "telegram":
        payload: dict[str, Any] = {"chat_id": destination["chat_id"], "text": body}
    elif template is not None:
        # The person chose a template: no last_inbound_at, so the sender sends the template, not text.
        payload = {"to": destination["chat_id"], "text": body, "template": template}
    else:
        payload = {"to": destination["chat_id"], "text": body, "last_inbound_at": destination["last_inbound_at"]}
    return OutboundCommand.build(send_id=reply_id, broker_id=broker_id, broker_slug=broker_slug, campaign_id=0,
                                 lead_id=lead_id, step=0, action="message", channel=channel,
                                 payload=payload, created_at=now)


def provider_id_of(reply_id: int) -> str:
    """The landed message's provider id: unique per broker and channel, apart from the bot's ``reply:<id>``."""
    return f"person:{reply_id}"


def message_of(broker_id: int, broker_slug: str, reply_id: int, channel: str, destination: dict[str, Any], body: str,
               sent_at: datetime, user_id: int, provider_message_id: str) -> ChannelMessage:
    """The reply as an outbound message of the lead's contact (same Kafka key, so same partition, as its messages)."""
    return ChannelMessage.build(
        broker_id=broker_id, broker_slug=broker_slug, channel=channel,  # type: ignore[arg-type]
        provider_message_id=provider_id_of(reply_id),
        conversation_id=destination["chat_id"] if channel == "telegram" else None,
        contact=Contact.model_validate(destination.get("contact") or {"channel_user_id": destination["chat_id"]}),
        direction="outbound", message_type="text", text=body, sent_at=sent_at,
        raw={AUTHOR_KEY: {"author": "person", "user_id": user_id, "provider_message_id": provider_message_id}})


def republish_unproduced(tx: Tx, publish: Publish, broker_id: int, broker_slug: str) -> int:
    """Sent replies of the broker that Kafka did not acknowledge: produced again; how many now are."""
    with tx() as cur:
        cur.execute("""SELECT reply_id, channel, destination, body, sent_at, user_id, provider_message_id
                       FROM leadflow.person_replies WHERE broker_id = %s AND status = 'sent' AND NOT produced
                       ORDER BY reply_id LIMIT 100""", (broker_id,))
        pending = cur.fetchall()
    done = [rid for rid, channel, dest, body, sent_at, user_id, pid in pending
            if publish(message_of(broker_id, broker_slug, rid, channel, dest, body, sent_at, user_id, pid))]
    if done:
        with tx() as cur:
            cur.execute("UPDATE leadflow.person_replies SET produced = true WHERE reply_id = ANY(%s)", (done,))
    return len(done)


def send_person_reply(tx: Tx, senders: dict[str, Sender], publish: Publish, audit: Audit, *, broker_id: int,
                      broker_slug: str, lead_id: int, user_id: int, text: str, idempotency_key: str,
                      template: Template | None = None,
                      clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> PersonReply:
    """Send a person's reply to the lead once per ``idempotency_key`` (see the module's docstring)."""
    key = idempotency_key.strip()
    if not 8 <= len(key) <= 100 or not key.isprintable():
        raise Invalid("idempotency_key must be 8 to 100 printable characters, new for each reply")
    republish_unproduced(tx, publish, broker_id, broker_slug)
    now = clock()
    with tx() as cur:
        claimed = _claim(cur, broker_id, lead_id, key, text, template, now)
    if isinstance(claimed, PersonReply):
        return claimed
    reply_id, channel, destination, body, tpl = claimed
    sender = senders.get(channel)
    try:
        if sender is None:
            raise Rejected(f"no sender for {channel} in this service")
        provider_id = sender.send(_command(reply_id, broker_id, broker_slug, lead_id, channel, destination, body, tpl,
                                           now))
    except (RetryLater, Rejected, Skip) as exc:
        with tx() as cur:
            cur.execute("""UPDATE leadflow.person_replies SET status = 'failed', error = %s, updated_at = now()
                           WHERE reply_id = %s""", (str(exc), reply_id))
        raise SendFailed(f"not sent: {exc}") from exc
    sent_at = clock()
    with tx() as cur:
        cur.execute("""UPDATE leadflow.person_replies SET status = 'sent', provider_message_id = %s, sent_at = %s,
                       updated_at = now() WHERE reply_id = %s""", (provider_id, sent_at, reply_id))
        # Lock again: a switch made while the provider was called is ordered before this one. Never raising
        # here: the reply went out and must be recorded sent even if the lead was merged or reassigned meanwhile.
        cur.execute("""SELECT merged_into FROM leadflow.leads WHERE lead_id = %s AND broker_id = %s FOR UPDATE""",
                    (lead_id, broker_id))
        live = cur.fetchone()
        took_over = live is not None and live[0] is None and current_handler(cur, lead_id) != "person"
        if took_over:
            _switch(cur, broker_id, lead_id, user_id, "person", TAKE_OVER_REASON, audit)
        audit(cur, broker_id, "lead.reply", lead_id, None,
              {"reply_id": reply_id, "channel": channel, "body": body, "template": tpl,
               "provider_message_id": provider_id})
    produced = publish(message_of(broker_id, broker_slug, reply_id, channel, destination, body, sent_at, user_id,
                                  provider_id))
    if produced:
        with tx() as cur:
            cur.execute("UPDATE leadflow.person_replies SET produced = true WHERE reply_id = %s", (reply_id,))
    return PersonReply(reply_id, lead_id, channel, body, "sent", provider_id, sent_at, produced, False, took_over)
