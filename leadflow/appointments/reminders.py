"""Visit reminders from the scheduled batch: each active visit reminded at each of the broker's lead times, once.

``send_reminders`` does two things, each safe to run twice or in two processes at once:

1. **Plan.** For every proposed or confirmed visit, each lead time in ``ScheduleRules.reminder_hours`` (24 h
   and 1 h by default) whose moment has come gets one ``appointment_reminders`` row (its primary key is the
   visit and the lead time, so a rerun inserts nothing): ``pending`` with the text and the WhatsApp template,
   or ``skipped`` with why — the visit was booked after that moment (booked 3 h ahead: no 24 h reminder), a
   shorter one is due too (the batch was down: only the latest is sent), the visit has started, the lead
   opted out. A lead with no Telegram or WhatsApp chat gets a ``failed`` row saying so.
2. **Send.** Each due ``pending`` row is claimed (``sending``, committed) before its sender is called — the
   same senders, credentials and WhatsApp window campaigns use — so it never goes out twice; then ``sent``
   (also written into ``appointments.reminders``), ``pending`` again with backoff (429, 5xx, timeouts: the
   next run retries, never after the visit has started), or ``failed`` with the reason. A visit cancelled or
   moved meanwhile gets nothing. A crash during the call leaves ``sending``: visible, never resent blindly.
3. **Into the conversation.** Each sent reminder is produced onto the messages topic as an outbound message of
   the lead's contact (``reminder:<appointment>:<hours>``, author "reminder"), so the landing puts it in the
   lead's conversation (the workspace, the agent's history); one Kafka did not acknowledge goes next run.

Times: a reminder is due ``hours`` of real time before the visit's instant; its text gives the wall-clock date
and time in the timezone the visit was booked in, so a daylight-saving change in between moves neither.
Inside WhatsApp's 24-hour window the text goes; outside it, the broker's approved template
(``reminder_template``) with the name, date, time and place as its parameters.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg2.extensions
from confluent_kafka import KafkaException

from leadflow.appointments.rules import RulesError, ScheduleRules
from leadflow.db.connection import connect
from leadflow.events import ChannelMessage, Contact, OutboundCommand
from leadflow.outbound.errors import Rejected, RetryLater, Skip
from leadflow.outbound.senders import Sender

log = logging.getLogger(__name__)
Cursor = psycopg2.extensions.cursor
MAX_ATTEMPTS = 4  # then the reminder fails for good, with the provider's last answer
CHAT_CHANNELS = ("telegram", "whatsapp")
# The broker's language when its agent settings do not name one (as leadflow.agent.config reads it).
COUNTRY_LANGUAGE = {"CL": "es-CL", "MX": "es-MX", "AR": "es-AR", "ES": "es-ES", "US": "en-US"}
# WhatsApp's code for a template approved in that language.
TEMPLATE_LANGUAGE = {"es-CL": "es", "es-MX": "es_MX", "es-AR": "es_AR", "es-ES": "es_ES", "en-US": "en_US"}

DIAS = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")
MESES = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
         "noviembre", "diciembre")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")

Action = Literal["send", "skip"]
# Produces messages onto the messages topic; raises KafkaException unless every one was acknowledged.
Publish = Callable[[list[ChannelMessage]], None]


@dataclass(frozen=True)
class Decision:
    hours: int
    due_at: datetime
    action: Action
    reason: str | None = None


def plan(starts_at: datetime, booked_at: datetime, hours: Iterable[int], now: datetime,
         recorded: Iterable[int] = ()) -> list[Decision]:
    """What to do now about each lead time not yet recorded: nothing (not due yet), send, or skip and why.

    Of several due at once (the batch did not run for a while) only the shortest is sent: two reminders of
    one visit in the same minute say nothing the second did not."""
    start = starts_at.astimezone(UTC)
    done = set(recorded)
    due: list[tuple[int, datetime]] = sorted(
        ((h, start - timedelta(hours=h)) for h in set(hours) if h not in done), key=lambda hd: hd[0])
    decisions: list[Decision] = []
    sending = False
    for h, due_at in due:  # shortest first
        if due_at > now:
            continue
        if due_at < booked_at:
            decisions.append(Decision(h, due_at, "skip", f"booked less than {h} h before the visit"))
        elif now >= start:
            decisions.append(Decision(h, due_at, "skip", "the visit had started before the reminder went out"))
        elif sending:
            decisions.append(Decision(h, due_at, "skip", "a shorter reminder was due too; only that one is sent"))
        else:
            decisions.append(Decision(h, due_at, "send"))
            sending = True
    return sorted(decisions, key=lambda d: -d.hours)


@dataclass(frozen=True)
class Visit:
    """What a reminder says about the visit."""

    starts_at: datetime
    timezone: str
    kind: str
    address: str | None
    meet_link: str | None
    first_name: str | None


def when_text(starts_at: datetime, timezone: str, language: str) -> tuple[str, str]:
    """The date and the time of the visit as the lead reads them, wall clock in ``timezone``."""
    local = starts_at.astimezone(ZoneInfo(timezone))
    if language.startswith("en"):
        hour = local.hour % 12 or 12
        return (f"{DAYS[local.weekday()]}, {MONTHS[local.month - 1]} {local.day}",
                f"{hour}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'}")
    return f"{DIAS[local.weekday()]} {local.day} de {MESES[local.month - 1]}", f"{local:%H:%M}"


def place_text(visit: Visit, language: str) -> str | None:
    if visit.kind == "virtual":
        return visit.meet_link
    return visit.address


def reminder_text(visit: Visit, language: str) -> str:
    day, clock = when_text(visit.starts_at, visit.timezone, language)
    name = (visit.first_name or "").strip()
    if language.startswith("en"):
        hello = f"Hi {name}" if name else "Hi"
        if visit.kind == "virtual":
            where = (f" on Google Meet: {visit.meet_link}" if visit.meet_link
                     else " (we will send you the Google Meet link)")
            what = "your video call"
        else:
            where = f" at {visit.address}" if visit.address else ""
            what = "your visit"
        return (f"{hello}, a reminder of {what} on {day} at {clock}{where}. "
                "Reply CONFIRM or let us know if you can't make it.")
    hello = f"Hola {name}" if name else "Hola"
    if visit.kind == "virtual":
        what = "tu visita virtual"
        where = (f" por Google Meet: {visit.meet_link}" if visit.meet_link
                 else " (te enviaremos el enlace de Google Meet)")
    else:
        what = "tu visita"
        where = f" en {visit.address}" if visit.address else ""
    return f"{hello}, te recordamos {what} del {day} a las {clock}{where}. Responde CONFIRMO o avísanos si no puedes."


def template_for(visit: Visit, language: str, rules: ScheduleRules) -> dict[str, Any]:
    """The approved template sent outside WhatsApp's window: name, date, time, place (never empty: WhatsApp
    refuses an empty parameter)."""
    day, clock = when_text(visit.starts_at, visit.timezone, language)
    english = language.startswith("en")
    name = (visit.first_name or "").strip() or ("there" if english else "cliente")
    place = place_text(visit, language) or ("to be confirmed" if english else "por confirmar")
    return {"name": rules.reminder_template,
            "language": rules.reminder_template_language or TEMPLATE_LANGUAGE.get(language, "es"),
            "parameters": [name, day, clock, place]}


def broker_language(agent_settings: Any, country: str | None) -> str:
    configured = agent_settings.get("language") if isinstance(agent_settings, dict) else None
    return str(configured or COUNTRY_LANGUAGE.get((country or "").upper(), "es-CL"))


# --- the batch ------------------------------------------------------------------------------------------------

@dataclass
class ReminderResult:
    planned: int = 0
    sent: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    retry_later: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    produced: int = 0  # sent reminders produced onto the messages topic


def _count(bucket: dict[str, int], reason: str) -> None:
    bucket[reason] = bucket.get(reason, 0) + 1


# Active visits from two days back (a visit not yet marked held still shows a reminder the batch missed) to the
# longest lead time allowed ahead; the lead's chat (the visit's channel first, else its newest) and consent.
_CANDIDATES = """
    SELECT a.appointment_id, a.broker_id, a.lead_id, a.kind, a.address, a.starts_at, a.timezone, a.meet_link,
           a.created_at, bs.appointments, bs.agent, b.country,
           coalesce(q.name, l.display_name),
           lc.lead_id IS NOT NULL OR coalesce(q.opted_out, false),
           d.channel, d.conversation_id, d.contact_channel_id, d.contact_phone,
           coalesce((SELECT array_agg(r.hours_before) FROM leadflow.appointment_reminders r
                     WHERE r.appointment_id = a.appointment_id), '{}')
    FROM leadflow.appointments a
    JOIN leadflow.brokers b ON b.broker_id = a.broker_id
    JOIN leadflow.leads l ON l.lead_id = a.lead_id AND l.broker_id = a.broker_id
    -- a lead merged since the booking: its messages, consent and name are the kept lead's now
    CROSS JOIN LATERAL (SELECT coalesce(l.merged_into, l.lead_id) AS lead_id) kept
    LEFT JOIN leadflow.broker_settings bs ON bs.broker_id = a.broker_id
    LEFT JOIN leadflow.lead_qualifications q ON q.lead_id = kept.lead_id
    LEFT JOIN leadflow.lead_consent lc ON lc.lead_id = kept.lead_id
    LEFT JOIN LATERAL (
        SELECT m.channel, m.conversation_id, m.contact_channel_id, m.contact_phone
        FROM leadflow.message_leads ml JOIN leadflow.raw_messages m USING (message_id)
        WHERE ml.lead_id = kept.lead_id AND m.broker_id = a.broker_id AND m.direction = 'inbound'
          AND m.channel IN ('telegram', 'whatsapp')
        ORDER BY m.channel IS NOT DISTINCT FROM a.channel DESC, m.sent_at DESC, m.message_id DESC LIMIT 1) d ON true
    WHERE a.status IN ('proposed', 'confirmed')
      AND a.starts_at > %(now)s - interval '2 days' AND a.starts_at <= %(now)s + interval '169 hours'
      -- only visits with a reminder due and not yet recorded: most runs find none, and skip the chat lookups
      AND EXISTS (
          SELECT 1 FROM jsonb_array_elements(
              CASE WHEN jsonb_typeof(bs.appointments -> 'reminder_hours') = 'array'
                   THEN bs.appointments -> 'reminder_hours' ELSE '[24, 1]'::jsonb END) AS h (hours)
          WHERE jsonb_typeof(h.hours) = 'number'
            AND a.starts_at - (h.hours::text || ' hours')::interval <= %(now)s
            AND NOT EXISTS (SELECT 1 FROM leadflow.appointment_reminders r
                            WHERE r.appointment_id = a.appointment_id AND r.hours_before::text = h.hours::text))
    ORDER BY a.starts_at"""


def _destination(channel: str | None, conversation_id: str | None, channel_user: str | None,
                 phone: str | None) -> dict[str, Any] | None:
    # The contact as the lead's own messages carry it: the reminder, produced back as an outbound message of
    # that contact, lands in the lead's conversation.
    contact = {k: v for k, v in {"channel_user_id": channel_user, "phone_e164": phone}.items() if v}
    if channel == "telegram" and (conversation_id or channel_user):
        return {"chat_id": str(conversation_id or channel_user), "contact": contact}
    if channel == "whatsapp" and (channel_user or phone):
        # WhatsApp writes to the lead's WhatsApp id: its number without '+'.
        return {"to": str(channel_user or (phone or "").lstrip("+")), "contact": contact}
    return None


def _rules(settings: Any, broker_id: int) -> ScheduleRules:
    try:
        return ScheduleRules.from_settings(settings)
    except RulesError as exc:
        # Saved settings are validated on the way in; one that no longer reads must not silence reminders.
        log.error("broker %s: appointment settings do not read (%s); reminding with the defaults", broker_id, exc)
        return ScheduleRules()


def plan_reminders(cur: Cursor, now: datetime, result: ReminderResult) -> None:
    """Record every reminder whose moment has come (see the module's docstring)."""
    cur.execute(_CANDIDATES, {"now": now})
    rows: list[tuple[Any, ...]] = []
    for (appointment_id, broker_id, lead_id, kind, address, starts_at, timezone, meet_link, created_at, settings,
         agent, country, name, opted_out, channel, conversation_id, channel_user, phone,
         recorded) in cur.fetchall():
        rules = _rules(settings, broker_id)
        language = broker_language(agent, country)
        visit = Visit(starts_at, timezone, kind, address, meet_link, (name or "").split(" ")[0] or None)
        destination = _destination(channel, conversation_id, channel_user, phone)
        for decision in plan(starts_at, created_at, rules.reminder_hours, now, recorded):
            status, reason = ("pending", None) if decision.action == "send" else ("skipped", decision.reason)
            if status == "pending" and opted_out:
                status, reason = "skipped", "the lead opted out"
            elif status == "pending" and destination is None:
                status, reason = "failed", "the lead has no Telegram or WhatsApp chat to remind"
            body = reminder_text(visit, language)
            template = template_for(visit, language, rules) if channel == "whatsapp" else None
            rows.append((appointment_id, decision.hours, broker_id, lead_id, decision.due_at, status, reason,
                         channel if destination else None, json.dumps(destination) if destination else None, body,
                         json.dumps(template) if template else None, now if status == "pending" else None, now, now))
    for row in rows:
        cur.execute("""INSERT INTO leadflow.appointment_reminders (appointment_id, hours_before, broker_id, lead_id,
                           due_at, status, reason, channel, destination, body, template, next_attempt_at, created_at,
                           updated_at)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                       ON CONFLICT (appointment_id, hours_before) DO NOTHING RETURNING status, reason""", row)
        inserted = cur.fetchone()
        if inserted is None:
            continue  # another run planned it first
        result.planned += 1
        if inserted[0] == "skipped":
            _count(result.skipped, inserted[1])
        elif inserted[0] == "failed":
            _count(result.failed, inserted[1])


@dataclass(frozen=True)
class _Claimed:
    appointment_id: int
    hours: int
    broker_id: int
    broker_slug: str
    lead_id: int
    channel: str
    destination: dict[str, Any]
    body: str
    template: dict[str, Any] | None
    last_reason: str | None
    visit_status: str
    starts_at: datetime
    opted_out: bool  # since the reminder was planned: a retry must not reach them


def _claim_next_due(cur: Cursor, now: datetime) -> _Claimed | None:
    cur.execute("""
        UPDATE leadflow.appointment_reminders r SET status = 'sending', attempts = r.attempts + 1, updated_at = now()
        FROM leadflow.brokers b, leadflow.appointments a
        WHERE b.broker_id = r.broker_id AND a.appointment_id = r.appointment_id
          AND (r.appointment_id, r.hours_before) = (
              SELECT appointment_id, hours_before FROM leadflow.appointment_reminders
              WHERE status = 'pending' AND next_attempt_at <= %s
              ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING r.appointment_id, r.hours_before, r.broker_id, b.slug, r.lead_id, r.channel, r.destination, r.body,
                  r.template, r.reason, a.status, a.starts_at,
                  EXISTS (SELECT 1 FROM leadflow.leads l JOIN leadflow.lead_consent lc
                                 ON lc.lead_id = coalesce(l.merged_into, l.lead_id)
                          WHERE l.lead_id = r.lead_id)""", (now,))
    row = cur.fetchone()
    return None if row is None else _Claimed(*row)


def _last_whatsapp_inbound(cur: Cursor, lead_id: int) -> datetime | None:
    """Read at send time: a lead who wrote since the reminder was planned reopened the window."""
    cur.execute("""SELECT max(m.sent_at) FROM leadflow.leads l
                   JOIN leadflow.message_leads ml ON ml.lead_id = coalesce(l.merged_into, l.lead_id)
                   JOIN leadflow.raw_messages m USING (message_id)
                   WHERE l.lead_id = %s AND m.direction = 'inbound' AND m.channel = 'whatsapp'""", (lead_id,))
    row = cur.fetchone()
    return row[0] if row else None


def _command(claimed: _Claimed, last_inbound: datetime | None, now: datetime) -> OutboundCommand:
    if claimed.channel == "telegram":
        payload: dict[str, Any] = {"chat_id": claimed.destination["chat_id"], "text": claimed.body}
    else:
        payload = {"to": claimed.destination["to"], "text": claimed.body, "template": claimed.template,
                   "last_inbound_at": last_inbound.isoformat() if last_inbound else None}
    # Not produced anywhere: the command is the senders' input shape. The reminder's key is its row's.
    return OutboundCommand.build(send_id=claimed.appointment_id, broker_id=claimed.broker_id,
                                 broker_slug=claimed.broker_slug, campaign_id=0, lead_id=claimed.lead_id,
                                 step=claimed.hours, action="message", channel=claimed.channel,
                                 payload=payload, created_at=now)


def _settle(cur: Cursor, claimed: _Claimed, status: str, reason: str | None = None, provider_id: str | None = None,
            retry_at: datetime | None = None, sent_at: datetime | None = None) -> None:
    cur.execute("""UPDATE leadflow.appointment_reminders SET status = %s, reason = %s, updated_at = now(),
                       provider_message_id = coalesce(%s, provider_message_id), next_attempt_at = %s, sent_at = %s
                   WHERE appointment_id = %s AND hours_before = %s""",
                (status, reason, provider_id, retry_at, sent_at, claimed.appointment_id, claimed.hours))
    if status == "sent" and sent_at is not None:
        cur.execute("""UPDATE leadflow.appointments SET reminders = reminders || jsonb_build_object(%s::text, %s::text)
                       WHERE appointment_id = %s""", (str(claimed.hours), sent_at.isoformat(), claimed.appointment_id))


def send_due(conn: psycopg2.extensions.connection, senders: dict[str, Sender], clock: Callable[[], datetime],
             result: ReminderResult, max_attempts: int = MAX_ATTEMPTS, limit: int = 10_000) -> None:
    """Send every pending reminder that is due, each claimed before its provider is called."""
    for _ in range(limit):
        now = clock()
        with conn, conn.cursor() as cur:
            claimed = _claim_next_due(cur, now)
            last_inbound = _last_whatsapp_inbound(cur, claimed.lead_id) if claimed is not None else None
        if claimed is None:
            return
        if claimed.visit_status not in ("proposed", "confirmed") or now >= claimed.starts_at:
            gone = (f"the visit was {claimed.visit_status} before the reminder went out"
                    if claimed.visit_status not in ("proposed", "confirmed")
                    else "the visit had started before the reminder went out")
            # A reminder the provider kept refusing until the visit began failed; one overtaken by a cancellation or
            # a move (or a batch that ran late) was skipped.
            status = "failed" if claimed.last_reason and now >= claimed.starts_at else "skipped"
            reason = f"{gone} (last error: {claimed.last_reason})" if claimed.last_reason else gone
            with conn, conn.cursor() as cur:
                _settle(cur, claimed, status, reason)
            _count(result.failed if status == "failed" else result.skipped, gone)
            continue
        if claimed.opted_out:
            with conn, conn.cursor() as cur:
                _settle(cur, claimed, "skipped", "the lead opted out")
            _count(result.skipped, "the lead opted out")
            continue
        _send_one(conn, claimed, senders, last_inbound, now, result, max_attempts)


def _send_one(conn: psycopg2.extensions.connection, claimed: _Claimed, senders: dict[str, Sender],
              last_inbound: datetime | None, now: datetime, result: ReminderResult, max_attempts: int) -> None:
    try:
        sender = senders.get(claimed.channel)
        if sender is None:
            raise Rejected(f"no sender for channel {claimed.channel!r} in this batch")
        provider_id = sender.send(_command(claimed, last_inbound, now))
    except RetryLater as exc:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT attempts FROM leadflow.appointment_reminders WHERE appointment_id = %s "
                        "AND hours_before = %s", (claimed.appointment_id, claimed.hours))
            row = cur.fetchone()
            attempts = int(row[0]) if row else max_attempts
            retry_at = now + timedelta(seconds=max(exc.after_s, 60.0 * 2 ** (attempts - 1)))
            if attempts >= max_attempts:
                _settle(cur, claimed, "failed", f"{exc} (after {attempts} attempts)")
                _count(result.failed, str(exc))
            elif retry_at >= claimed.starts_at:
                _settle(cur, claimed, "failed", f"{exc} (after {attempts} attempts; no time left before the visit)")
                _count(result.failed, str(exc))
            else:
                _settle(cur, claimed, "pending", str(exc), retry_at=retry_at)
                _count(result.retry_later, str(exc))
        return
    except Skip as exc:
        with conn, conn.cursor() as cur:
            _settle(cur, claimed, "skipped", str(exc))
        _count(result.skipped, str(exc))
        return
    except Rejected as exc:
        with conn, conn.cursor() as cur:
            _settle(cur, claimed, "failed", str(exc))
        _count(result.failed, str(exc))
        return
    with conn, conn.cursor() as cur:
        _settle(cur, claimed, "sent", provider_id=provider_id, sent_at=now)
    result.sent += 1


# The payload key that says who wrote an outbound message (``leadflow.agent.history.AUTHOR_KEY``; not imported:
# the agent may use appointments, so appointments do not import the agent).
AUTHOR_KEY = "leadflow"


def message_of(appointment_id: int, hours: int, broker_id: int, broker_slug: str, channel: str,
               destination: dict[str, Any], body: str, template: dict[str, Any] | None, sent_at: datetime,
               provider_message_id: str | None) -> ChannelMessage:
    """A sent reminder as an outbound message of the lead's contact (same Kafka key as the lead's messages):
    landed, it is part of the lead's conversation, the bot's side, saying which visit it reminded of."""
    chat = destination.get("chat_id") or destination.get("to")
    return ChannelMessage.build(
        broker_id=broker_id, broker_slug=broker_slug, channel=channel,  # type: ignore[arg-type]
        provider_message_id=f"reminder:{appointment_id}:{hours}",
        conversation_id=chat if channel == "telegram" else None,
        contact=Contact.model_validate(destination.get("contact") or {"channel_user_id": chat}),
        direction="outbound", message_type="text", text=body, sent_at=sent_at,
        raw={AUTHOR_KEY: {"author": "reminder", "appointment_id": appointment_id, "hours_before": hours,
                          "template": (template or {}).get("name"), "provider_message_id": provider_message_id}})


def publish_sent(conn: psycopg2.extensions.connection, publish: Publish, limit: int = 1000) -> int:
    """Produce the sent reminders Kafka has not acknowledged yet; how many now are. A failure leaves them for the
    next run (the landing absorbs a twin: the provider id is the reminder's)."""
    with conn, conn.cursor() as cur:
        cur.execute("""SELECT r.appointment_id, r.hours_before, r.broker_id, b.slug, r.channel, r.destination, r.body,
                              r.template, r.sent_at, r.provider_message_id
                       FROM leadflow.appointment_reminders r JOIN leadflow.brokers b ON b.broker_id = r.broker_id
                       WHERE r.status = 'sent' AND NOT r.produced ORDER BY r.sent_at LIMIT %s""", (limit,))
        rows = cur.fetchall()
    if not rows:
        return 0
    try:
        publish([message_of(*row) for row in rows])
    except KafkaException as exc:
        log.warning("%s sent reminders not produced to Kafka yet (%s); the next run produces them", len(rows), exc)
        return 0
    with conn, conn.cursor() as cur:
        cur.execute("""UPDATE leadflow.appointment_reminders SET produced = true
                       WHERE (appointment_id, hours_before) IN (SELECT * FROM unnest(%s::bigint[], %s::int[]))""",
                    ([r[0] for r in rows], [r[1] for r in rows]))
    return len(rows)


def send_reminders(url: str, senders: dict[str, Sender], clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                   max_attempts: int = MAX_ATTEMPTS, publish: Publish | None = None) -> ReminderResult:
    """Plan the reminders whose moment has come, send every due one (new and retried), then produce the sent
    ones onto the messages topic through ``publish`` (None: not produced, e.g. a tool without Kafka)."""
    result = ReminderResult()
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            plan_reminders(cur, clock(), result)
        send_due(conn, senders, clock, result, max_attempts)
        if publish is not None:
            result.produced = publish_sent(conn, publish)
    finally:
        conn.close()
    return result


def sent_reminders(cur: Cursor, broker_id: int, appointment_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Each visit's reminders and their fate, for a page (the caller's cursor: row security applies)."""
    cur.execute("""SELECT appointment_id, hours_before, status, reason, channel, sent_at
                   FROM leadflow.appointment_reminders
                   WHERE broker_id = %s AND appointment_id = ANY(%s) ORDER BY appointment_id, hours_before DESC""",
                (broker_id, list(appointment_ids)))
    found: dict[int, list[dict[str, Any]]] = {}
    for appointment_id, hours, status, reason, channel, sent_at in cur.fetchall():
        found.setdefault(appointment_id, []).append({"hours_before": hours, "status": status, "reason": reason,
                                                     "channel": channel, "sent_at": sent_at})
    return found
