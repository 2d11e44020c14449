"""The batch that answers leads about visits when the broker's bot is off.

A campaign's visit step offered slots (``campaigns.store.offer_visits``); the lead answers on WhatsApp or
Telegram. With the bot on, the agent reads that answer as it arrives. With it off, this batch reads each
landed answer once (``appointment_answers``, keyed by the message), with the same reader
(``choice.parse``) and the same writes (``dialog.carry_out``) as the agent, and queues the reply
("Visita agendada para el martes…", the others when the slot was taken, "¿Cuál de estas?") as an outbound
send of the campaign that offered the visit, for the dispatcher to send. Messages are read per lead in the
order they were written; one that says nothing about a visit is recorded and left to people.

A visit no campaign offered (booked by a person, or by the bot before it was turned off) has no campaign to reply
from: a "confirmo" or "no voy a poder" answering its reminder still confirms or cancels it, signed by the lead, and
the conversation is left to the broker's people, who see the new status on the lead page.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg2.extensions

from leadflow.appointments import store, texts
from leadflow.appointments.choice import Cancels, Choice, Confirms, Unrelated, parse
from leadflow.appointments.dialog import Move, Outcome, carry_out
from leadflow.appointments.rules import RulesError
from leadflow.db.connection import transaction
from leadflow.events import OutboundCommand

_LOCK = 7_240_030  # pg_advisory_xact_lock key of this batch
# An answer older than this when first read is left to people: replying days later reads as a glitch.
MAX_AGE = timedelta(days=2)
Publish = Callable[[list[tuple[bytes, bytes]]], None]


@dataclass
class AnswerResult:
    read: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)  # outcome kind → count
    queued: int = 0  # replies queued for the dispatcher
    unanswered: dict[str, int] = field(default_factory=dict)  # reason → count


# Leads of brokers whose bot is off, with an open campaign offer or a coming visit that a campaign offered;
# their text messages since then that no batch has read.
_PENDING = """
    WITH bot_off AS (
        SELECT b.broker_id, b.slug, b.timezone, coalesce(s.agent ->> 'language',
               CASE b.country WHEN 'US' THEN 'en-US' ELSE 'es-CL' END) AS language
        FROM leadflow.brokers b LEFT JOIN leadflow.broker_settings s USING (broker_id)
        WHERE NOT coalesce((s.agent ->> 'enabled')::boolean, false)
    ), waiting AS (
        SELECT o.broker_id, o.lead_id, o.offered_at AS since, snd.campaign_id
        FROM leadflow.appointment_offers o JOIN leadflow.outbound_sends snd ON snd.send_id = o.send_id
        WHERE o.status = 'open'
        UNION ALL
        SELECT a.broker_id, a.lead_id, a.created_at, snd.campaign_id
        FROM leadflow.appointments a JOIN leadflow.appointment_offers o ON o.offer_id = a.offer_id
        JOIN leadflow.outbound_sends snd ON snd.send_id = o.send_id
        WHERE a.status IN ('proposed', 'confirmed') AND a.ends_at > %(now)s
        UNION ALL
        -- A visit a person booked (or the bot, before it was turned off): its reminders ask for a CONFIRMO.
        SELECT a.broker_id, a.lead_id, a.created_at, NULL::bigint
        FROM leadflow.appointments a LEFT JOIN leadflow.appointment_offers o ON o.offer_id = a.offer_id
        WHERE a.status IN ('proposed', 'confirmed') AND a.ends_at > %(now)s AND o.send_id IS NULL
    ), leads AS (
        SELECT w.broker_id, w.lead_id, min(w.since) AS since, max(w.campaign_id) AS campaign_id
        FROM waiting w JOIN bot_off USING (broker_id) GROUP BY w.broker_id, w.lead_id
    )
    SELECT m.message_id, l.broker_id, bo.slug, bo.timezone, bo.language, l.lead_id, l.campaign_id, m.channel,
           m.body, m.sent_at, m.contact_channel_id, m.conversation_id
    FROM leads l JOIN bot_off bo USING (broker_id)
    JOIN leadflow.message_leads ml ON ml.lead_id = l.lead_id
    JOIN leadflow.raw_messages m ON m.message_id = ml.message_id
    WHERE m.direction = 'inbound' AND m.message_type = 'text' AND m.broker_id = l.broker_id
      AND m.sent_at >= l.since AND m.channel IN ('whatsapp', 'telegram')
      AND (%(brokers)s::bigint[] IS NULL OR l.broker_id = ANY(%(brokers)s::bigint[]))
      AND NOT EXISTS (SELECT 1 FROM leadflow.appointment_answers a WHERE a.message_id = m.message_id)
    ORDER BY l.lead_id, m.sent_at, m.message_id"""


def answer_replies(url: str, now: datetime, publish: Publish, brokers: Sequence[int] | None = None) -> AnswerResult:
    """Read every pending answer (of ``brokers`` only, when given), book or update, queue each reply; ``publish``
    gets the replies' outbound commands and must return once Kafka acknowledged them (before the commit: a failure
    redoes the batch)."""
    result = AnswerResult()
    commands: list[tuple[bytes, bytes]] = []
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        cur.execute(_PENDING, {"now": now, "brokers": list(brokers) if brokers is not None else None})
        for row in cur.fetchall():
            command = _answer(cur, row, now, result)
            if command is not None:
                commands.append(command)
        if commands:
            publish(commands)
    return result


def _answer(cur: psycopg2.extensions.cursor, row: tuple[Any, ...], now: datetime,
            result: AnswerResult) -> tuple[bytes, bytes] | None:
    (message_id, broker_id, slug, timezone, language, lead_id, campaign_id, channel, body, sent_at, contact,
     conversation) = row
    result.read += 1

    def record(outcome: str, reason: str | None = None, send_id: int | None = None,
               done: Outcome | None = None) -> None:
        result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
        if reason is not None:
            result.unanswered[reason] = result.unanswered.get(reason, 0) + 1
        cur.execute("""INSERT INTO leadflow.appointment_answers (message_id, broker_id, lead_id, outcome,
                                                                 appointment_id, offer_id, send_id, reason, answered_at)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    (message_id, broker_id, lead_id, outcome,
                     done.appointment.appointment_id if done is not None and done.appointment is not None else None,
                     done.offer.offer_id if done is not None and done.offer is not None else None, send_id, reason,
                     now))

    if now - sent_at > MAX_AGE:
        record("unrelated", "too old to answer now")
        return None
    offer = store.open_offer(cur, broker_id, lead_id)
    upcoming = store.upcoming(cur, broker_id, lead_id, now)
    choice = parse(body or "", slots=offer.slots if offer is not None else (),
                   appointment_start=upcoming.starts_at if upcoming is not None else None, now=sent_at,
                   timezone=timezone, language=language)
    if isinstance(choice, Unrelated):
        record("unrelated")
        return None
    if campaign_id is None:
        _status_only(cur, message_id, broker_id, lead_id, choice, upcoming, now, record)
        return None
    cur.execute("SAVEPOINT answer")
    try:
        outcome = carry_out(cur, broker_id, lead_id, Move(choice, offer.offer_id if offer is not None else None,
                                                          upcoming.appointment_id if upcoming is not None else None),
                            now, source="campaign", channel=channel)
    except (store.AppointmentError, RulesError) as exc:
        cur.execute("ROLLBACK TO SAVEPOINT answer")
        record("failed", str(exc))
        return None
    cur.execute("RELEASE SAVEPOINT answer")
    text = texts.render(outcome, texts.Wording.of(language))
    if not text:
        record(outcome.kind, "nothing to say")
        return None
    payload: dict[str, Any] = ({"chat_id": conversation or contact, "text": text} if channel == "telegram"
                               else {"to": contact, "text": text, "last_inbound_at": sent_at.isoformat()})
    payload.update(campaign="visit answer", broker_slug=slug)
    # A reply, not a step of the campaign: negative steps, one per reply, keep the send's key unique.
    cur.execute("""SELECT least(coalesce(min(step), 0), 0) - 1 FROM leadflow.outbound_sends
                   WHERE campaign_id = %s AND lead_id = %s""", (campaign_id, lead_id))
    step = int(cur.fetchone()[0])  # type: ignore[index]
    cur.execute("""INSERT INTO leadflow.outbound_sends (broker_id, campaign_id, lead_id, step, action, channel, status,
                                                       payload, next_attempt_at, created_at, updated_at)
                   VALUES (%s, %s, %s, %s, 'message', %s, 'pending', %s, %s, %s, %s) RETURNING send_id""",
                (broker_id, campaign_id, lead_id, step, channel, json.dumps(payload, ensure_ascii=False), now, now,
                 now))
    send_id = int(cur.fetchone()[0])  # type: ignore[index]
    record(outcome.kind, send_id=send_id, done=outcome)
    result.queued += 1
    command = OutboundCommand.build(send_id=send_id, broker_id=broker_id, broker_slug=slug, campaign_id=campaign_id,
                                    lead_id=lead_id, step=step, action="message", channel=channel, payload=payload,
                                    created_at=now)
    return f"{broker_id}:{lead_id}".encode(), command.model_dump_json().encode()


def _status_only(cur: psycopg2.extensions.cursor, message_id: int, broker_id: int, lead_id: int, choice: Choice,
                 upcoming: store.Appointment | None, now: datetime, record: Callable[..., None]) -> None:
    """A visit no campaign offered, the bot off: "confirmo" confirms it and "no voy a poder" cancels it, signed by
    the lead, and the conversation is left to the broker's people (no campaign to send a reply from, and a
    person booked it: they answer, seeing the visit's new status on the lead page)."""
    if upcoming is None or not isinstance(choice, Confirms | Cancels):
        record("unrelated", "left to people: no campaign offered this visit")
        return
    target: store.Status = "confirmed" if isinstance(choice, Confirms) else "cancelled"
    cur.execute("SAVEPOINT answer")
    try:
        changed = store.change_status(cur, broker_id, upcoming.appointment_id, target, now, actor="lead",
                                      note="the lead's message, read with the bot off")
    except store.AppointmentError as exc:
        cur.execute("ROLLBACK TO SAVEPOINT answer")
        record("failed", str(exc))
        return
    cur.execute("RELEASE SAVEPOINT answer")
    record(target, "status only: the reply is left to people")
    cur.execute("UPDATE leadflow.appointment_answers SET appointment_id = %s WHERE message_id = %s",
                (changed.appointment_id, message_id))
