"""The dispatcher: outbound commands from Kafka → the channel → the send's fate in ``outbound_sends``.

Reads the outbound topic from its own offsets in PostgreSQL, then sends each command whose send is
still ``pending``, and every other due ``pending`` send (a retry, or one whose command was
unreadable). A send is claimed (``pending`` → ``sending``, committed) before the provider is called,
so a command read twice — a rerun, a crash before the offsets were stored — is never sent
twice; a crash during the call leaves it ``sending``, reported and never resent blindly. After the
call: ``sent`` with the provider's id, ``pending`` again with a later ``next_attempt_at`` (429, 5xx,
timeout: retried by the next dispatch, nothing lost), ``failed`` with the reason, or ``skipped``.

Several dispatchers run at once without waiting on each other: they split the outbound topic's
partitions (``offsets.Shares``), and each takes the next due send with ``FOR UPDATE SKIP LOCKED``,
so two never claim the same send and none waits for another's claim.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg2.extensions
from pydantic import ValidationError

from leadflow.config import Topics
from leadflow.db.connection import connect
from leadflow.events import OutboundCommand
from leadflow.kafka import assign_from, cluster_id, consume, make_consumer, partitions_of
from leadflow.landing import check_offsets_in_log
from leadflow.leads.stages import DEFAULT_PIPELINE, Pipeline
from leadflow.leads.store.stages import move_lead_forward
from leadflow.offsets import Shares, lock_offsets, store_offsets
from leadflow.outbound.errors import Rejected, RetryLater, Skip
from leadflow.outbound.senders import Sender

log = logging.getLogger(__name__)
READER = "dispatcher"
MAX_ATTEMPTS = 8  # then the send fails for good, with the last reason


@dataclass
class DispatchResult:
    commands_read: int = 0
    malformed: int = 0
    sent: int = 0
    retry_later: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    not_pending: int = 0  # already sent or handled: a command read again


def _count(bucket: dict[str, int], reason: str) -> None:
    bucket[reason] = bucket.get(reason, 0) + 1


def read_commands(url: str, bootstrap: str, topics: Topics, max_records: int = 5000,
                  timeout_s: float = 1.5) -> tuple[list[OutboundCommand], int]:
    """New commands from the outbound topic, and how many records were unreadable (logged, skipped).

    Offsets are stored as read: the commands' sends are rows in PostgreSQL already (targeting wrote
    them), so what the dispatcher owes is found there too — the topic only says what is new.
    """
    consumer = make_consumer(bootstrap)
    conn = connect(url)
    try:
        cluster = cluster_id(consumer)
        tps = [(topics.outbound, p) for p in partitions_of(consumer, topics.outbound)]
        if not tps:
            return [], 0
        shares = Shares(conn, READER, cluster, tps)
        shares.rebalance()
        if not shares.owned:
            return [], 0  # other dispatchers are reading the topic; the sends it names are in the table for all
        with conn, conn.cursor() as cur:
            stored = lock_offsets(cur, READER, cluster, sorted(shares.owned))
            check_offsets_in_log(consumer, bootstrap, cluster, stored, reader=READER)
            assign_from(consumer, stored)
            records = consume(consumer, max_records, timeout_s)
            commands, malformed, ends = [], 0, {}
            for record in records:
                ends[(record.topic, record.partition)] = record.offset + 1
                try:
                    commands.append(OutboundCommand.model_validate_json(record.value or b""))
                except ValidationError as exc:
                    malformed += 1
                    log.error("unreadable outbound command at %s/%s@%s: %s", record.topic, record.partition,
                              record.offset, exc.errors()[0]["msg"])
            store_offsets(cur, READER, cluster, ends)
        return commands, malformed
    finally:
        conn.close()
        consumer.close()


def _claim(cur: psycopg2.extensions.cursor, send_id: int) -> bool:
    cur.execute("""UPDATE leadflow.outbound_sends SET status = 'sending', attempts = attempts + 1, updated_at = now()
                   WHERE send_id = %s AND status = 'pending' RETURNING send_id""", (send_id,))
    return cur.fetchone() is not None


_SEND_COLUMNS = "s.send_id, s.broker_id, b.slug, s.campaign_id, s.lead_id, s.step, s.action, s.channel, s.payload, " \
                "s.created_at"


def _claim_next_due(cur: psycopg2.extensions.cursor, now: datetime) -> OutboundCommand | None:
    """Claim the pending send due first that no other dispatcher is claiming: retries after a provider
    failure, and sends whose command was unreadable or read by another dispatcher (the table, not the
    topic, is what is owed)."""
    cur.execute(f"""
        UPDATE leadflow.outbound_sends s SET status = 'sending', attempts = attempts + 1, updated_at = now()
        FROM leadflow.brokers b
        WHERE b.broker_id = s.broker_id AND s.send_id = (
            SELECT send_id FROM leadflow.outbound_sends
            WHERE status = 'pending' AND next_attempt_at <= %s
            ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING {_SEND_COLUMNS}""", (now,))
    r = cur.fetchone()
    if r is None:
        return None
    return OutboundCommand.build(send_id=r[0], broker_id=r[1], broker_slug=r[2], campaign_id=r[3], lead_id=r[4],
                                 step=r[5], action=r[6], channel=r[7], payload=r[8], created_at=r[9])


def _move_stage(cur: psycopg2.extensions.cursor, command: OutboundCommand, now: datetime) -> str:
    """A campaign step that moves the lead forward in its broker's pipeline (never back)."""
    target = str(command.payload["stage"])
    cur.execute("SELECT pipeline FROM leadflow.broker_settings WHERE broker_id = %s", (command.broker_id,))
    row = cur.fetchone()
    pipeline = Pipeline.from_settings(row[0]) if row else DEFAULT_PIPELINE
    if target not in {s.code for s in pipeline.stages}:
        raise Rejected(f"stage {target!r} is not in the broker's pipeline")
    left = move_lead_forward(cur, command.broker_id, command.lead_id, target, pipeline, now,
                             f"campaign {command.payload.get('campaign')} step {command.step + 1}", automatic=False)
    if left is None:
        raise Skip("the lead is already at that stage or further")
    return f"stage:{target}"


def _settle(cur: psycopg2.extensions.cursor, send_id: int, status: str, reason: str | None = None,
            provider_id: str | None = None, retry_at: datetime | None = None, sent_at: datetime | None = None) -> None:
    cur.execute("""UPDATE leadflow.outbound_sends SET status = %s, reason = %s, updated_at = now(),
                       provider_message_id = coalesce(%s, provider_message_id), next_attempt_at = %s,
                       sent_at = coalesce(%s, sent_at)
                   WHERE send_id = %s""", (status, reason, provider_id, retry_at, sent_at, send_id))


def dispatch(url: str, bootstrap: str, topics: Topics, senders: dict[str, Sender],
             clock: Callable[[], datetime] = lambda: datetime.now(UTC), max_commands: int = 5000) -> DispatchResult:
    """Read new commands, then send every pending send that is due (new and retried)."""
    result = DispatchResult()
    commands, result.malformed = read_commands(url, bootstrap, topics, max_commands)
    result.commands_read = len(commands)
    conn = connect(url)
    try:
        for command in commands:
            with conn, conn.cursor() as cur:
                claimed = _claim(cur, command.send_id)
            if claimed:
                _dispatch_one(conn, command, senders, clock, result)
            else:
                result.not_pending += 1
        for _ in range(max_commands):
            with conn, conn.cursor() as cur:
                due = _claim_next_due(cur, clock())
            if due is None:
                break
            _dispatch_one(conn, due, senders, clock, result)
    finally:
        conn.close()
    return result


def _dispatch_one(conn: psycopg2.extensions.connection, command: OutboundCommand, senders: dict[str, Sender],
                  clock: Callable[[], datetime], result: DispatchResult) -> None:
    """Send a claimed command and record its fate."""
    try:
        if command.channel == "pipeline":
            with conn, conn.cursor() as cur:
                provider_id = _move_stage(cur, command, clock())
                _settle(cur, command.send_id, "sent", provider_id=provider_id, sent_at=clock())
            result.sent += 1
            return
        sender = senders.get(command.channel)
        if sender is None:
            raise Rejected(f"no sender for channel {command.channel!r} in this dispatcher")
        provider_id = sender.send(command)
    except RetryLater as exc:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT attempts FROM leadflow.outbound_sends WHERE send_id = %s", (command.send_id,))
            row = cur.fetchone()
            attempts = int(row[0]) if row else MAX_ATTEMPTS
            if attempts >= MAX_ATTEMPTS:
                _settle(cur, command.send_id, "failed", f"{exc} (after {attempts} attempts)")
                _count(result.failed, str(exc))
            else:
                # Back off: the provider's own wait, or longer each attempt.
                wait = max(exc.after_s, 30.0 * 2 ** (attempts - 1))
                _settle(cur, command.send_id, "pending", str(exc), retry_at=clock() + timedelta(seconds=wait))
                _count(result.retry_later, str(exc))
        return
    except Skip as exc:
        with conn, conn.cursor() as cur:
            _settle(cur, command.send_id, "skipped", str(exc))
        _count(result.skipped, str(exc))
        return
    except Rejected as exc:
        with conn, conn.cursor() as cur:
            _settle(cur, command.send_id, "failed", str(exc))
        _count(result.failed, str(exc))
        return
    with conn, conn.cursor() as cur:
        _settle(cur, command.send_id, "sent", provider_id=provider_id, sent_at=clock())
    result.sent += 1

