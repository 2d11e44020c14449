"""Kafka → PostgreSQL, exactly once: rows and the next offsets are committed in one transaction.

Positions live in ``leadflow.kafka_offsets`` (never in consumer-group commits). Landings running
at once split the partitions (``offsets.Shares``). Each batch:

1. lock the offset rows of this landing's partitions (``SELECT ... FOR UPDATE``), so two landings
   never write the same partition's records;
2. read from those offsets until the batch is full or a poll comes back empty (the embedded
   broker reports wrong end offsets, so they are never trusted);
3. drop events whose provider id already landed (one indexed lookup per batch; this also absorbs
   webhooks the provider delivered twice) and COPY the rest straight into their tables; the
   unique constraints stay the last guard, and the offset locks mean no other writer races us;
4. store the offset after the last record read per partition, and commit.

A crash anywhere before the commit leaves both rows and offsets as they were; the next run
re-reads the same records. A crash after it finds the new offsets. Either way each record
lands once.

Nothing is skipped: a record that is not a valid event becomes a dead letter of the broker its
key names. Python checks each record cheaply (fast path); when PostgreSQL still rejects a batch,
the batch is redone with full pydantic validation record by record (slow path). A dead letter is kept
once per broker, channel and body: the same malformed delivery sent again adds no row.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg2
import psycopg2.extensions
from confluent_kafka import Consumer, TopicPartition
from pydantic import TypeAdapter, ValidationError

from leadflow.config import ConfigurationError, Topics
from leadflow.db.connection import connect
from leadflow.db.copy import copy_line, copy_text
from leadflow.events import ChannelMessage, DeliveryStatus
from leadflow.kafka import Record, assign_from, cluster_id, consume, make_consumer, partitions_of
from leadflow.offsets import Partition, Shares, lock_offsets, store_offsets

log = logging.getLogger(__name__)

READER = "landing"
FIRST_POLL_TIMEOUT_MS = 1500
SUPPORTED_SCHEMA_VERSIONS = {1}

# Keys the SQL below reads without a default: their absence sends a record to the dead letters.
_REQUIRED = {
    "message": ("broker_id", "event_id", "channel", "provider_message_id", "contact", "direction", "message_type",
                "sent_at", "received_at"),
    "status": ("broker_id", "event_id", "channel", "provider_message_id", "status", "recipient", "status_at",
               "received_at"),
}
_EVENT = TypeAdapter(ChannelMessage | DeliveryStatus)

_DEAD_LETTER_COLUMNS = (
    "broker_id", "channel", "reason", "content_type", "body", "received_at", "kafka_cluster_id",
    "kafka_topic", "kafka_partition", "kafka_offset",
)

@dataclass(frozen=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]  # the idempotence key: a row whose key already landed is a duplicate


_MESSAGES = _Table("raw_messages", (
    "broker_id", "event_id", "channel", "provider_message_id", "conversation_id", "contact_channel_id",
    "contact_phone", "contact_name", "contact_email", "direction", "message_type", "body", "sent_at",
    "received_at", "schema_version", "payload", "kafka_topic", "kafka_partition", "kafka_offset",
), ("broker_id", "channel", "provider_message_id"))
_STATUSES = _Table("delivery_statuses", (
    "broker_id", "event_id", "channel", "provider_message_id", "status", "recipient_id", "recipient_phone",
    "status_at", "error", "received_at", "payload", "kafka_topic", "kafka_partition", "kafka_offset",
), ("broker_id", "channel", "provider_message_id", "status"))


class OffsetsBeyondLog(ConfigurationError):
    """The stored offsets point past the end of the log: the broker was wiped or replaced under the same cluster id.

    Reading on would wait for the new log to grow past the old offsets and then skip everything
    before them, so the landing stops instead and says how to go on.
    """


class UnlandableRecord(RuntimeError):
    """A record that names no known broker: it cannot be kept as any tenant's dead letter, so landing stops."""


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
    partitions: set[str] = field(default_factory=set)  # those this run landed records of

    def add(self, other: LandingResult) -> None:
        for name in ("records_read", "messages_landed", "statuses_landed", "dead_letters_landed",
                     "duplicates_absorbed", "undecodable_records"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.partitions |= other.partitions


# --- decoding (pure) ---------------------------------------------------------------------------

def _json_text(value: Any) -> str:
    # jsonb rejects the \u0000 escape for the same reason text rejects NUL.
    text = orjson.dumps(value if value is not None else {}).decode()
    return text.replace("\\u0000", "") if "\\u0000" in text else text


def _broker_from_key(key: bytes | None) -> int | None:
    head = (key or b"").split(b":", 1)[0]
    return int(head) if head.isdigit() else None


def _iso_ms(epoch_ms: int) -> str:
    return datetime.fromtimestamp(max(epoch_ms, 0) / 1000, UTC).isoformat()


# Fields that can carry free text (names, ids, message bodies, JSON) are escaped; the rest are
# numbers, timestamps and enums of our own schema. A foreign record that breaks that assumption
# breaks the COPY, and the slow path then validates every record with pydantic.
def _message_row(e: dict[str, Any], r: Record) -> str:
    c = e["contact"]
    t = copy_text
    return (f"{e['broker_id']}\t{t(e['event_id'])}\t{e['channel']}\t{t(e['provider_message_id'])}\t"
            f"{t(e.get('conversation_id'))}\t{t(c.get('channel_user_id'))}\t{t(c.get('phone_e164'))}\t"
            f"{t(c.get('display_name'))}\t{t(c.get('email'))}\t{e['direction']}\t{t(e['message_type'])}\t"
            f"{t(e.get('text'))}\t{e['sent_at']}\t{e['received_at']}\t{e['schema_version']}\t"
            f"{t(_json_text(e.get('raw')))}\t{r.topic}\t{r.partition}\t{r.offset}\n")


def _status_row(e: dict[str, Any], r: Record) -> str:
    c = e["recipient"]
    t = copy_text
    return (f"{e['broker_id']}\t{t(e['event_id'])}\t{e['channel']}\t{t(e['provider_message_id'])}\t"
            f"{e['status']}\t{t(c.get('channel_user_id'))}\t{t(c.get('phone_e164'))}\t{e['status_at']}\t"
            f"{t(e.get('error'))}\t{e['received_at']}\t{t(_json_text(e.get('raw')))}\t"
            f"{r.topic}\t{r.partition}\t{r.offset}\n")


_ROW_BUILDERS = {"message": _message_row, "status": _status_row}


@dataclass
class DecodedBatch:
    """COPY-ready rows of one batch, keyed for deduplication, and what went where."""

    rows: dict[str, dict[tuple[Any, ...], str]] = field(default_factory=lambda: {"message": {}, "status": {}})
    event_records: list[Record] = field(default_factory=list)
    dead_letters: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"message": 0, "status": 0, "dead": 0, "undecodable": 0})
    # Prepared by `prepare()` off the writing thread: COPY payloads and lookup keys per event type.
    payloads: dict[str, bytes] = field(default_factory=dict)
    lookup_keys: dict[str, str] = field(default_factory=dict)

    def prepare(self) -> DecodedBatch:
        """Build what the writer sends (COPY bytes, the keys as one JSON document), so it only does I/O."""
        for event_type, rows in self.rows.items():
            self.payloads[event_type] = "".join(rows.values()).encode()
            self.lookup_keys[event_type] = orjson.dumps([list(key) for key in rows]).decode()
        return self

    def add_event(self, record: Record, event_type: str, event: dict[str, Any]) -> None:
        key: tuple[Any, ...] = (event["broker_id"], event["channel"], event["provider_message_id"])
        if event_type == "status":
            key += (event["status"],)
        # Within a batch the first copy of a key wins, as it would across batches.
        if key not in self.rows[event_type]:
            self.rows[event_type][key] = _ROW_BUILDERS[event_type](event, record)
        self.event_records.append(record)
        self.counts[event_type] += 1

    def add_undecodable(self, record: Record, reason: str, cluster: str) -> None:
        """Kept, never skipped: the record becomes a dead letter of the broker named in its key."""
        broker_id = _broker_from_key(record.key)
        if broker_id is None:
            raise UnlandableRecord(
                f"record {record.topic}[{record.partition}]@{record.offset} cannot be decoded ({reason}) and its key "
                f"names no broker; only the ingest API should produce to {record.topic}")
        self.dead_letters.append(copy_line((
            broker_id, "unknown", f"undecodable record: {reason}", "application/json",
            "\\x" + (record.value or b"").hex(), _iso_ms(record.timestamp_ms), cluster,
            record.topic, record.partition, record.offset)))
        self.counts["undecodable"] += 1


def triage(record: Record) -> tuple[str, dict[str, Any]] | str:
    """(event type, event) for a record that looks like a valid event, else the reason it is not.

    Cheap on purpose (the fast path): a parse and a look at the keys; PostgreSQL checks the types.
    """
    try:
        event = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError as exc:
        return f"invalid JSON: {exc}"
    if not isinstance(event, dict):
        return "not a JSON object"
    if event.get("schema_version") not in SUPPORTED_SCHEMA_VERSIONS:
        return f"schema_version {event.get('schema_version')!r} is not supported by this landing"
    event_type = event.get("event_type")
    if not isinstance(event_type, str) or event_type not in _REQUIRED:
        return f"event_type {event_type!r} is unknown"
    missing = [k for k in _REQUIRED[event_type] if k not in event]
    if missing:
        return f"missing {', '.join(missing)}"
    if not isinstance(event["contact" if event_type == "message" else "recipient"], dict):
        return "contact is not an object"
    return event_type, event


def decode_into(batch: DecodedBatch, record: Record, topics: Topics, cluster: str) -> None:
    """Put one Kafka record into the rows of the table it belongs to."""
    if record.topic == topics.dead_letters:
        letter = json.loads(record.value or b"")
        batch.dead_letters.append(copy_line((
            letter["broker_id"], letter["channel"], letter["reason"], letter.get("content_type"),
            "\\x" + base64.b64decode(letter["body_b64"]).hex(), letter["received_at"], cluster,
            record.topic, record.partition, record.offset)))
        batch.counts["dead"] += 1
        return
    verdict = triage(record)
    if isinstance(verdict, str):
        batch.add_undecodable(record, verdict, cluster)
    else:
        batch.add_event(record, *verdict)


def revalidate(batch: DecodedBatch, known_brokers: set[int], cluster: str) -> DecodedBatch:
    """The slow path: every event record fully validated; what fails becomes a dead letter."""
    checked = DecodedBatch(dead_letters=list(batch.dead_letters))
    checked.counts.update(dead=batch.counts["dead"], undecodable=batch.counts["undecodable"])
    for record in batch.event_records:
        try:
            event = _EVENT.validate_json(record.value or b"")
        except ValidationError as exc:
            checked.add_undecodable(record, f"invalid event: {exc.errors()[0]['msg']}", cluster)
            continue
        if event.broker_id not in known_brokers:
            raise UnlandableRecord(f"record {record.topic}[{record.partition}]@{record.offset} names broker "
                                   f"{event.broker_id}, which is not registered")
        checked.add_event(record, event.event_type, event.model_dump(mode="json"))
    return checked


# --- storage ----------------------------------------------------------------------------------

_COPY_CHUNK = 4 * 1024 * 1024


def _copy_new_rows(cur: psycopg2.extensions.cursor, table: _Table, batch: DecodedBatch, event_type: str) -> int:
    """COPY the rows whose key has not landed yet; returns how many were written."""
    rows = batch.rows[event_type]
    if not rows:
        return 0
    types = ["bigint"] + ["text"] * (len(table.key) - 1)
    names = ", ".join(f"k{i}" for i in range(len(table.key)))
    elements = ", ".join(f"(k.j->>{i})::{t}" for i, t in enumerate(types))
    match = " AND ".join(f"t.{col} = k.k{i}" for i, col in enumerate(table.key))
    # LATERAL ... LIMIT 1 makes this one index probe per key; a plain join lets the planner hash the
    # whole table, which grows with every row ever landed.
    cur.execute(f"SELECT {names} FROM (SELECT {elements} FROM jsonb_array_elements(%s::jsonb) AS k(j)) AS k({names}) "
                f"CROSS JOIN LATERAL (SELECT 1 FROM leadflow.{table.name} t WHERE {match} LIMIT 1) AS landed",
                (batch.lookup_keys[event_type],))
    landed = cur.fetchall()
    payload = batch.payloads[event_type]
    if landed:
        rows = dict(rows)
        for existing in landed:
            rows.pop(tuple(existing), None)
        payload = "".join(rows.values()).encode()
    if rows:
        # Large chunks: each chunk needs the GIL, which the read-ahead thread may hold for a switch interval.
        cur.copy_expert(f"COPY leadflow.{table.name} ({', '.join(table.columns)}) FROM STDIN", io.BytesIO(payload),
                        size=_COPY_CHUNK)
        _analyze_once(cur, table.name)
    return len(rows)


_ANALYZED: set[tuple[str, str]] = set()  # (database, table) checked by this process


def _analyze_once(cur: psycopg2.extensions.cursor, table: str) -> None:
    """Give a never-analyzed table its statistics after its first rows.

    Without them the planner takes any index whose leading columns match for the lookup above, e.g.
    raw_messages_contact (broker_id, channel), and filters each key's whole channel: measured at 14 s
    for the second batch of 10,000 on a new install against 0.3 s once analyzed. Autovacuum comes
    too late for a landing that has just started on an empty table.
    """
    checked = (cur.connection.dsn, table)
    if checked in _ANALYZED:
        return
    cur.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (f"leadflow.{table}",))
    row = cur.fetchone()
    if row is not None and float(row[0]) < 0:
        cur.execute(f"ANALYZE leadflow.{table}")
    _ANALYZED.add(checked)


def _write_events(cur: psycopg2.extensions.cursor, batch: DecodedBatch) -> tuple[int, int]:
    """(messages, statuses) written; raises psycopg2.Error when PostgreSQL rejects the batch."""
    return _copy_new_rows(cur, _MESSAGES, batch, "message"), _copy_new_rows(cur, _STATUSES, batch, "status")


def _insert_dead_letters(cur: psycopg2.extensions.cursor, batch: DecodedBatch) -> int:
    if not batch.dead_letters:
        return 0
    cols = ", ".join(_DEAD_LETTER_COLUMNS)
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS landing_dead_letters AS SELECT {cols} FROM leadflow.dead_letters "
                "WITH NO DATA")
    cur.execute("TRUNCATE landing_dead_letters")
    cur.copy_expert(f"COPY landing_dead_letters ({cols}) FROM STDIN", io.StringIO("".join(batch.dead_letters)))
    # No conflict target: a row is dropped when its Kafka record has landed (dead_letters_record_key) and
    # when the same broker already has this channel's body (dead_letters_content_key), so a redelivered
    # malformed body is kept once; in offset order, the earliest copy is the one kept.
    cur.execute(f"INSERT INTO leadflow.dead_letters ({cols}) SELECT {cols} FROM landing_dead_letters "
                "ORDER BY kafka_partition, kafka_offset ON CONFLICT DO NOTHING")
    return int(cur.rowcount)


def _write_batch(cur: psycopg2.extensions.cursor, batch: DecodedBatch, cluster: str) -> tuple[DecodedBatch, int, int]:
    cur.execute("SAVEPOINT fast_path")
    try:
        messages, statuses = _write_events(cur, batch)
    except psycopg2.Error as exc:
        cur.execute("ROLLBACK TO SAVEPOINT fast_path")
        log.warning("batch rejected by PostgreSQL (%s); validating its records one by one",
                    str(exc).strip().splitlines()[0])
        cur.execute("SELECT broker_id FROM leadflow.brokers")
        batch = revalidate(batch, {int(row[0]) for row in cur.fetchall()}, cluster).prepare()
        messages, statuses = _write_events(cur, batch)
    return batch, messages, statuses


def _read_batch(consumer: Consumer, max_records: int, poll_timeout_ms: int, max_batch_s: float) -> list[Record]:
    """Up to ``max_records``, and no longer than ``max_batch_s`` after the first: under a steady stream
    the polls never come back empty, and a batch must still be committed (landing latency bounded)."""
    records: list[Record] = []
    deadline: float | None = None
    while len(records) < max_records:
        polled = consume(consumer, max_records - len(records), poll_timeout_ms / 1000)
        if not polled:
            break
        records.extend(polled)
        deadline = deadline or time.monotonic() + max_batch_s
        if time.monotonic() >= deadline:
            break
    return records


def check_offsets_in_log(consumer: Consumer, bootstrap: str, cluster: str, stored: dict[Partition, int],
                         timeout_s: float = 3.0, reader: str = READER) -> None:
    """Raise ``OffsetsBeyondLog`` when a partition has fewer records than its stored next offset.

    ``reader`` is whose offsets these are (the landing's, the agent's, the dispatcher's): the fix names it.

    A fetch past the end does not fail on the embedded broker (it answers with nothing, as at the
    end of the stream), and its high watermarks are wrong. So a partition whose high watermark is
    below the stored offset N is confirmed by fetching the record at N - 1, the last one landed:
    a real Kafka never gets that far (its watermark is right); Tansu answers with the record unless
    its log really is shorter. The fetch uses a consumer of its own: reassigning ``consumer`` after
    it would wait out the check's in-flight fetch (~0.35 s on every landing run).
    """
    suspects: dict[Partition, int] = {}
    for (topic, partition), next_offset in stored.items():
        if next_offset > 0:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
            if high < next_offset:
                suspects[(topic, partition)] = next_offset
    if not suspects:
        return
    checker = make_consumer(bootstrap)
    try:
        assign_from(checker, {tp: offset - 1 for tp, offset in suspects.items()})
        missing = set(suspects)
        deadline = time.monotonic() + timeout_s
        while missing and time.monotonic() < deadline:
            for record in consume(checker, 1000, min(0.5, max(deadline - time.monotonic(), 0.01))):
                tp = (record.topic, record.partition)
                # Only a record at N - 1 or later proves the log reaches N; an earlier one comes from a reset.
                if record.offset >= suspects.get(tp, 0) - 1:
                    missing.discard(tp)
    finally:
        checker.close()
    if missing:
        topic, partition = min(missing)
        landed = suspects[(topic, partition)]
        done = {READER: ("landed", "land", "records landed before are skipped as duplicates"),
                "agent": ("read by the agent", "answer", "messages older than LEADFLOW_AGENT_MAX_AGE_S are not "
                                                         "answered"),
                "dispatcher": ("read by the dispatcher", "dispatch", "sends already made are not made again")}
        read, verb, after = done.get(reader, (f"read by {reader}", "read", "the reader starts from the log's start"))
        raise OffsetsBeyondLog(
            f"Kafka cluster {cluster} has fewer records in {topic}[{partition}] than the {landed} PostgreSQL says "
            f"were {read} ({len(missing)} partition(s) so): the broker's log was wiped or replaced "
            f"under the same cluster id, and nothing was {read.split()[0]}. Restore the broker's storage, or to "
            f"{verb} the new log from its start run: DELETE FROM leadflow.kafka_offsets WHERE consumer = '{reader}' "
            f"AND cluster_id = '{cluster}'; ({after}).")


def _topic_partitions(consumer: Consumer, topics: Topics) -> list[Partition]:
    return [(topic, p) for topic in (topics.messages, topics.dead_letters) for p in partitions_of(consumer, topic)]


@dataclass
class _ReadBatch:
    records: int
    batch: DecodedBatch
    ends: dict[Partition, int]  # offset after the last record read, per partition touched


class _ReadAhead:
    """Reads and decodes the next batch on its own thread while the current one is written.

    Python decoding and PostgreSQL's work then overlap instead of adding up. Nothing it reads
    counts until the main thread has checked, under the offset locks, that the batch starts
    where the stored offsets say.
    """

    _DONE = object()

    def __init__(self, consumer: Consumer, topics: Topics, cluster: str, max_records: int, poll_timeout_ms: int,
                 max_batch_s: float = 2.0, first_poll_ms: int = FIRST_POLL_TIMEOUT_MS):
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._args = (consumer, topics, cluster, max_records, poll_timeout_ms, max_batch_s, first_poll_ms)
        self._thread = threading.Thread(target=self._run, name="landing-read-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        consumer, topics, cluster, max_records, poll_timeout_ms, max_batch_s, first_poll_ms = self._args
        # The first fetch after assign() includes connecting and metadata: an empty answer that early is
        # warm-up, not the end of the stream.
        timeout_ms = max(poll_timeout_ms, first_poll_ms)
        try:
            while not self._stop.is_set():
                records = _read_batch(consumer, max_records, timeout_ms, max_batch_s)
                timeout_ms = poll_timeout_ms
                if not records:
                    self._queue.put(self._DONE)
                    return
                batch = DecodedBatch()
                ends: dict[Partition, int] = {}
                for record in records:
                    decode_into(batch, record, topics, cluster)
                    tp = (record.topic, record.partition)
                    ends[tp] = max(ends.get(tp, 0), record.offset + 1)
                self._queue.put(_ReadBatch(len(records), batch.prepare(), ends))
        except BaseException as exc:  # handed to the main thread, which raises it
            self._queue.put(exc)

    def next(self) -> _ReadBatch | None:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return None if item is self._DONE else item

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            self._queue.get_nowait()  # unblock a pending put
        self._thread.join(timeout=30)


def land(database_url: str, bootstrap: str, topics: Topics, *, max_records_per_batch: int = 10000,
         max_batches: int | None = None, poll_timeout_ms: int = 500, max_batch_s: float = 2.0,
         stop: threading.Event | None = None, share_wait_s: float = 10.0) -> LandingResult:
    """Land what is readable on this process's share of the partitions; returns what was read and written.

    Each batch is committed (rows and offsets) after ``max_records_per_batch`` records or
    ``max_batch_s`` seconds of reading, whichever comes first. Safe to run in several processes at
    once: they split the partitions (``Shares``) and rebalance at each batch. Without ``stop`` the
    run ends when its partitions are drained and no free partition is left (waiting up to
    ``share_wait_s`` for a share while other landings hold them all); with ``stop`` it keeps
    landing until the event is set.
    """
    started = time.perf_counter()
    total = LandingResult()
    consumer = make_consumer(bootstrap)
    conn = connect(database_url)
    reader: _ReadAhead | None = None
    try:
        cluster = cluster_id(consumer)
        tps = _topic_partitions(consumer, topics)
        if not tps:
            log.warning("no partitions for %s yet; nothing to land", topics.all())
            return total
        shares = Shares(conn, READER, cluster, tps)
        positions: dict[Partition, int] = {}  # where the consumer stands, as committed
        checked: set[Partition] = set()
        warm = False
        while (max_batches is None or total.batches < max_batches) and not (stop is not None and stop.is_set()):
            if shares.rebalance() and reader is not None:
                # Read-ahead of partitions given away must not be written; the rest is read again.
                reader.close()
                reader, warm = None, False
            if not shares.owned:
                if stop is None and time.perf_counter() - started > share_wait_s:
                    log.info("every partition is landed by %d other landing(s); nothing left for this one",
                             shares.members() - 1)
                    break
                time.sleep(0.2)
                continue
            owned = sorted(shares.owned)
            with conn, conn.cursor() as cur:
                stored = lock_offsets(cur, READER, cluster, owned)
                if reader is not None and any(stored[tp] != positions.get(tp) for tp in owned):
                    # Committed by a process outside the shares (an older landing): read on from there.
                    log.warning("offsets moved under this landing; reading again from what was committed")
                    reader.close()
                    reader, warm = None, False
                if reader is None:
                    unchecked = {tp: stored[tp] for tp in owned if tp not in checked}
                    check_offsets_in_log(consumer, bootstrap, cluster, unchecked)
                    checked.update(unchecked)
                    if not warm or positions != stored:
                        assign_from(consumer, stored)
                    reader = _ReadAhead(consumer, topics, cluster, max_records_per_batch, poll_timeout_ms,
                                        max_batch_s, first_poll_ms=poll_timeout_ms if warm else FIRST_POLL_TIMEOUT_MS)
                    positions = dict(stored)
                read = reader.next()
                if read is None:
                    # Drained; the consumer stays where it is for the next read-ahead.
                    reader.close()
                    reader, warm = None, True
                    batch_result = None
                else:
                    next_offsets = {**stored, **read.ends}
                    batch, landed_messages, landed_statuses = _write_batch(cur, read.batch, cluster)
                    landed_dead = _insert_dead_letters(cur, batch)
                    store_offsets(cur, READER, cluster, {tp: next_offsets[tp] for tp in owned
                                                         if next_offsets[tp] != stored[tp]})
                    positions = next_offsets
                    batch_result = LandingResult(
                        records_read=read.records,
                        messages_landed=landed_messages,
                        statuses_landed=landed_statuses,
                        dead_letters_landed=landed_dead,
                        duplicates_absorbed=(batch.counts["message"] - landed_messages)
                        + (batch.counts["status"] - landed_statuses),
                        undecodable_records=batch.counts["undecodable"],
                        partitions={f"{t}[{p}]" for t, p in read.ends},
                    )
            if batch_result is None:
                if stop is None and not shares.take_free():
                    break
                continue
            # Committed: the batch and its offsets are now one durable fact.
            total.add(batch_result)
            total.batches += 1
        total.next_offsets = {f"{t}[{p}]": off for (t, p), off in positions.items()}
    finally:
        if reader is not None:
            reader.close()
        conn.close()
        consumer.close()
    total.seconds = time.perf_counter() - started
    return total


@dataclass(frozen=True)
class Probe:
    """What a sensor tick needs: is anything waiting, and a digest of where the landing stands."""

    pending: int
    fingerprint: str


def probe(database_url: str, bootstrap: str, topics: Topics, poll_timeout_ms: int = 1500) -> Probe:
    """Look beyond the stored offsets with one short poll; reads nothing into PostgreSQL.

    ``pending`` counts records found by the probe (capped at 100), 0 meaning nothing to land.
    ``fingerprint`` is the same while no landing commits and changes after each commit, so run
    keys derived from it repeat for a duplicate request and change once progress is made.
    """
    consumer = make_consumer(bootstrap)
    conn = connect(database_url)
    try:
        cluster = cluster_id(consumer)
        tps = _topic_partitions(consumer, topics)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT topic, partition, next_offset FROM leadflow.kafka_offsets "
                "WHERE consumer = %s AND cluster_id = %s ORDER BY topic, partition",
                (READER, cluster),
            )
            rows = cur.fetchall()
        conn.rollback()
        stored = {(t, p): int(o) for t, p, o in rows}
        fingerprint = hashlib.sha256(f"{cluster}|{rows}".encode()).hexdigest()[:16]
        if not tps:
            return Probe(0, fingerprint)
        # The sensor's tick is where a wiped broker shows first: it would otherwise skip forever.
        check_offsets_in_log(consumer, bootstrap, cluster, {tp: stored[tp] for tp in tps if tp in stored})
        assign_from(consumer, {tp: stored.get(tp, 0) for tp in tps})
        return Probe(len(consume(consumer, 100, poll_timeout_ms / 1000)), fingerprint)
    finally:
        conn.close()
        consumer.close()
