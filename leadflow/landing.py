"""Kafka → PostgreSQL, exactly once: rows and the next offsets are committed in one transaction.

Positions live in ``leadflow.kafka_offsets`` (never in consumer-group commits). Each batch:

1. lock this reader's offset rows (``SELECT ... FOR UPDATE``), so two landings never interleave;
2. read from those offsets until the batch is full or a poll comes back empty (the embedded
   broker reports wrong end offsets, so they are never trusted);
3. COPY the decoded rows into temporary tables and insert them with ``ON CONFLICT DO NOTHING``
   on the provider's id, which also absorbs webhooks the provider delivered twice;
4. store the offset after the last record read per partition, and commit.

A crash anywhere before the commit leaves both rows and offsets as they were; the next run
re-reads the same records. A crash after it finds the new offsets. Either way each record
lands once.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg2.extensions
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from leadflow.config import Topics
from leadflow.db.connection import connect
from leadflow.kafka import cluster_id, make_consumer, partitions_of

log = logging.getLogger(__name__)

READER = "landing"
SUPPORTED_SCHEMA_VERSIONS = {1}

_MESSAGE_COLUMNS = (
    "broker_id", "event_id", "channel", "provider_message_id", "conversation_id", "contact_channel_id",
    "contact_phone", "contact_name", "contact_email", "direction", "message_type", "body", "sent_at",
    "received_at", "schema_version", "payload", "kafka_topic", "kafka_partition", "kafka_offset",
)
_STATUS_COLUMNS = (
    "broker_id", "event_id", "channel", "provider_message_id", "status", "recipient_id", "recipient_phone",
    "status_at", "error", "received_at", "payload", "kafka_topic", "kafka_partition", "kafka_offset",
)
_DEAD_LETTER_COLUMNS = (
    "broker_id", "channel", "reason", "content_type", "body", "received_at", "kafka_cluster_id",
    "kafka_topic", "kafka_partition", "kafka_offset",
)


class LandingConflict(RuntimeError):
    """Another landing moved the offsets while this one was reading; this run stops, nothing is written."""


class UnlandableRecord(RuntimeError):
    """A record that names no broker: it cannot be kept as any tenant's dead letter, so landing stops on it."""


@dataclass
class LandingResult:
    records_read: int = 0
    messages_landed: int = 0
    statuses_landed: int = 0
    dead_letters_landed: int = 0
    duplicates_absorbed: int = 0
    undecodable_records: int = 0
    batches: int = 0
    seconds: float = 0.0
    next_offsets: dict[str, int] = field(default_factory=dict)

    def add(self, other: LandingResult) -> None:
        for name in ("records_read", "messages_landed", "statuses_landed", "dead_letters_landed",
                     "duplicates_absorbed", "undecodable_records"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


# --- decoding (pure) ---------------------------------------------------------------------------

def _copy_text(value: Any) -> str:
    """One field in COPY text format: \\N for NULL, backslash escapes for the separators."""
    if value is None:
        return "\\N"
    text = str(value)
    if "\x00" in text:
        # PostgreSQL text cannot hold NUL; providers occasionally send it in free text.
        text = text.replace("\x00", "")
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _json_text(value: Any) -> str:
    # jsonb rejects the \u0000 escape for the same reason text rejects NUL.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("\\u0000", "")


def _row(values: Iterable[Any]) -> str:
    return "\t".join(_copy_text(v) for v in values) + "\n"


def _broker_from_key(key: bytes | None) -> int | None:
    if not key:
        return None
    head = key.split(b":", 1)[0]
    return int(head) if head.isdigit() else None


@dataclass
class DecodedBatch:
    messages: io.StringIO = field(default_factory=io.StringIO)
    statuses: io.StringIO = field(default_factory=io.StringIO)
    dead_letters: io.StringIO = field(default_factory=io.StringIO)
    counts: dict[str, int] = field(default_factory=lambda: {"message": 0, "status": 0, "dead": 0, "undecodable": 0})


def decode_into(batch: DecodedBatch, record: ConsumerRecord, topics: Topics, cluster: str) -> None:
    """Turn one Kafka record into a COPY line of the table it belongs to."""
    where = (record.topic, record.partition, record.offset)
    if record.topic == topics.dead_letters:
        letter = json.loads(record.value)
        batch.dead_letters.write(_row((
            letter["broker_id"], letter["channel"], letter["reason"], letter.get("content_type"),
            "\\x" + _b64_to_hex(letter["body_b64"]), letter["received_at"], cluster, *where,
        )))
        batch.counts["dead"] += 1
        return
    try:
        event = json.loads(record.value)
        if event.get("schema_version") not in SUPPORTED_SCHEMA_VERSIONS:
            raise ValueError(f"schema_version {event.get('schema_version')!r} is not supported by this landing")
        if event["event_type"] == "message":
            contact = event["contact"]
            batch.messages.write(_row((
                event["broker_id"], event["event_id"], event["channel"], event["provider_message_id"],
                event.get("conversation_id"), contact.get("channel_user_id"), contact.get("phone_e164"),
                contact.get("display_name"), contact.get("email"), event["direction"], event["message_type"],
                event.get("text"), event["sent_at"], event["received_at"], event["schema_version"],
                _json_text(event.get("raw") or {}), *where,
            )))
            batch.counts["message"] += 1
        elif event["event_type"] == "status":
            recipient = event["recipient"]
            batch.statuses.write(_row((
                event["broker_id"], event["event_id"], event["channel"], event["provider_message_id"],
                event["status"], recipient.get("channel_user_id"), recipient.get("phone_e164"), event["status_at"],
                event.get("error"), event["received_at"], _json_text(event.get("raw") or {}), *where,
            )))
            batch.counts["status"] += 1
        else:
            raise ValueError(f"event_type {event['event_type']!r} is unknown")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # Kept, never skipped: the record becomes a dead letter of the broker named in its key.
        broker_id = _broker_from_key(record.key)
        if broker_id is None:
            raise UnlandableRecord(
                f"record {record.topic}[{record.partition}]@{record.offset} cannot be decoded ({exc}) and its key "
                f"names no broker; only the ingest API should produce to {record.topic}"
            ) from exc
        batch.dead_letters.write(_row((
            broker_id, "unknown", f"undecodable record: {exc.__class__.__name__}: {exc}", "application/json",
            "\\x" + (record.value or b"").hex(), _iso_ms(record.timestamp), cluster, *where,
        )))
        batch.counts["undecodable"] += 1


def _b64_to_hex(data: str) -> str:
    import base64

    return base64.b64decode(data).hex()


def _iso_ms(epoch_ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat()


# --- storage ----------------------------------------------------------------------------------

def _lock_offsets(cur: psycopg2.extensions.cursor, cluster: str,
                  tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    cur.execute(
        """
        INSERT INTO leadflow.kafka_offsets (consumer, cluster_id, topic, partition, next_offset)
        SELECT %s, %s, t, p, 0 FROM unnest(%s::text[], %s::int[]) AS u(t, p)
        ON CONFLICT DO NOTHING
        """,
        (READER, cluster, [tp.topic for tp in tps], [tp.partition for tp in tps]),
    )
    cur.execute(
        """
        SELECT topic, partition, next_offset FROM leadflow.kafka_offsets
        WHERE consumer = %s AND cluster_id = %s AND topic = ANY(%s)
        ORDER BY topic, partition
        FOR UPDATE
        """,
        (READER, cluster, sorted({tp.topic for tp in tps})),
    )
    return {TopicPartition(t, p): int(o) for t, p, o in cur.fetchall()}


def _copy_and_insert(cur: psycopg2.extensions.cursor, table: str, columns: tuple[str, ...], data: io.StringIO,
                     conflict: str) -> int:
    if not data.tell():
        return 0
    data.seek(0)
    staging = f"landing_{table}"
    cols = ", ".join(columns)
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} AS SELECT {cols} FROM leadflow.{table} WITH NO DATA")
    cur.execute(f"TRUNCATE {staging}")
    cur.copy_expert(f"COPY {staging} ({cols}) FROM STDIN", data)
    cur.execute(f"INSERT INTO leadflow.{table} ({cols}) SELECT {cols} FROM {staging} ORDER BY kafka_partition, "
                f"kafka_offset ON CONFLICT {conflict} DO NOTHING")
    return int(cur.rowcount)


def _read_batch(consumer: KafkaConsumer, max_records: int, poll_timeout_ms: int) -> list[ConsumerRecord]:
    records: list[ConsumerRecord] = []
    while len(records) < max_records:
        polled = consumer.poll(timeout_ms=poll_timeout_ms, max_records=max_records - len(records))
        if not polled:
            break
        for part in polled.values():
            records.extend(part)
    return records


def land(database_url: str, bootstrap: str, topics: Topics, *, max_records_per_batch: int = 5000,
         max_batches: int | None = None, poll_timeout_ms: int = 1000) -> LandingResult:
    """Land everything readable now; returns what was read and written. Safe to run concurrently."""
    started = time.perf_counter()
    total = LandingResult()
    consumer = make_consumer(bootstrap)
    conn = connect(database_url)
    try:
        cluster = cluster_id(consumer)
        tps = partitions_of(consumer, topics.messages) + partitions_of(consumer, topics.dead_letters)
        if not tps:
            log.warning("no partitions for %s yet; nothing to land", topics.all())
            return total
        consumer.assign(tps)
        positions: dict[TopicPartition, int] | None = None
        while max_batches is None or total.batches < max_batches:
            with conn, conn.cursor() as cur:
                stored = _lock_offsets(cur, cluster, tps)
                if positions is None:
                    for tp in tps:
                        consumer.seek(tp, stored[tp])
                elif stored != positions:
                    raise LandingConflict("offsets moved under this landing; another landing run is active")
                records = _read_batch(consumer, max_records_per_batch, poll_timeout_ms)
                if not records:
                    positions = stored
                    break
                batch = DecodedBatch()
                next_offsets = dict(stored)
                for record in records:
                    decode_into(batch, record, topics, cluster)
                    tp = TopicPartition(record.topic, record.partition)
                    next_offsets[tp] = max(next_offsets[tp], record.offset + 1)
                landed_messages = _copy_and_insert(cur, "raw_messages", _MESSAGE_COLUMNS, batch.messages,
                                                   "ON CONSTRAINT raw_messages_provider_key")
                landed_statuses = _copy_and_insert(cur, "delivery_statuses", _STATUS_COLUMNS, batch.statuses,
                                                   "ON CONSTRAINT delivery_statuses_key")
                landed_dead = _copy_and_insert(cur, "dead_letters", _DEAD_LETTER_COLUMNS, batch.dead_letters,
                                               "ON CONSTRAINT dead_letters_record_key")
                moved = [tp for tp in tps if next_offsets[tp] != stored[tp]]
                cur.execute(
                    """
                    UPDATE leadflow.kafka_offsets o SET next_offset = v.next_offset, updated_at = now()
                    FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS v(topic, partition, next_offset)
                    WHERE o.consumer = %s AND o.cluster_id = %s AND o.topic = v.topic AND o.partition = v.partition
                    """,
                    ([tp.topic for tp in moved], [tp.partition for tp in moved],
                     [next_offsets[tp] for tp in moved], READER, cluster),
                )
                positions = next_offsets
                batch_result = LandingResult(
                    records_read=len(records),
                    messages_landed=landed_messages,
                    statuses_landed=landed_statuses,
                    dead_letters_landed=landed_dead,
                    duplicates_absorbed=(batch.counts["message"] - landed_messages)
                    + (batch.counts["status"] - landed_statuses),
                    undecodable_records=batch.counts["undecodable"],
                )
            # Committed: the batch and its offsets are now one durable fact.
            total.add(batch_result)
            total.batches += 1
        total.next_offsets = {f"{tp.topic}[{tp.partition}]": off for tp, off in (positions or {}).items()}
    finally:
        conn.close()
        consumer.close()
    total.seconds = time.perf_counter() - started
    return total


@dataclass(frozen=True)
class Probe:
    """What a sensor tick needs: is anything waiting, and a digest of where the landing stands."""

    pending: int
    fingerprint: str


def probe(database_url: str, bootstrap: str, topics: Topics, poll_timeout_ms: int = 500) -> Probe:
    """Look beyond the stored offsets with one short poll; reads nothing into PostgreSQL.

    ``pending`` counts records found by the probe (capped at 100), 0 meaning nothing to land.
    ``fingerprint`` is the same while no landing commits and changes after each commit, so run
    keys derived from it repeat for a duplicate request and change once progress is made.
    """
    import hashlib

    consumer = make_consumer(bootstrap)
    conn = connect(database_url)
    try:
        cluster = cluster_id(consumer)
        tps = partitions_of(consumer, topics.messages) + partitions_of(consumer, topics.dead_letters)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT topic, partition, next_offset FROM leadflow.kafka_offsets "
                "WHERE consumer = %s AND cluster_id = %s ORDER BY topic, partition",
                (READER, cluster),
            )
            rows = cur.fetchall()
        conn.rollback()
        stored = {TopicPartition(t, p): int(o) for t, p, o in rows}
        fingerprint = hashlib.sha256(f"{cluster}|{rows}".encode()).hexdigest()[:16]
        if not tps:
            return Probe(0, fingerprint)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, stored.get(tp, 0))
        polled = consumer.poll(timeout_ms=poll_timeout_ms, max_records=100)
        return Probe(sum(len(v) for v in polled.values()), fingerprint)
    finally:
        conn.close()
        consumer.close()
