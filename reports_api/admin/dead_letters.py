"""A broker's dead letters for its admins: listed, read with their secrets redacted, and replayed once fixed.

These run as the database owner (dead letters and credentials are out of the reports role's reach), so every
function checks the caller first (``access.require_admin_of``: the broker's ADMINs or a SUPERADMIN).

Dead letters always name a broker: the ingest API refuses an unknown slug (403) before reading the body, and the
landing stops rather than keep a record that names none (``leadflow.landing.UnlandableRecord``). So there is no
broker-less list for a SUPERADMIN to see; a SUPERADMIN reads any broker's.

A replay parses the payload with its channel's own parser (``ingest_api.replay``) and produces the events onto
the messages topic as the ingest API would: same ids, so the landing keeps each once however often it is
replayed. The admin's session is the authorization that the webhook's signature was; the replay is audited.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

import psycopg2.extensions

from ingest_api.intake import MalformedPayload
from ingest_api.replay import PARSERS, parse_replay
from leadflow import credentials, redaction
from leadflow.brokers import Broker, select_brokers
from leadflow.config import ConfigurationError
from leadflow.events import Event
from reports_api.admin import audit
from reports_api.admin.access import AdminError, Invalid, NotFound, require_admin_of
from reports_api.security import Principal

MAX_PAGE = 100
PREVIEW_CHARS = 240
# Read for a list's preview: enough that a credential starting inside the preview (at most 4,096 characters,
# leadflow.credentials.MAX_VALUE_CHARS, a little more JSON-escaped) ends inside what is redacted.
_PREVIEW_READ_BYTES = 16 * 1024
WITHHELD = "no se muestra: las credenciales guardadas de la corredora no se pudieron abrir (LEADFLOW_MASTER_KEY), " \
           "así que no se sabe qué ocultar"

_COLUMNS = """d.dead_letter_id, d.channel, d.reason, d.content_type, octet_length(d.body), d.received_at, d.landed_at,
              d.replayed_at, d.replays, d.replay_event_ids, u.display_name, u.email"""


class Unavailable(AdminError):
    """Kafka did not acknowledge the replayed events: nothing is marked, the admin can press again."""

    status = 503


@dataclass(frozen=True)
class Secrets:
    """What to hide in a broker's dead letters; ``values`` None when they cannot be known (then nothing is shown)."""

    values: list[str] | None


def _broker(cur: psycopg2.extensions.cursor, broker_id: int) -> Broker:
    found = next((b for b in select_brokers(cur) if b.broker_id == broker_id), None)
    if found is None:
        raise NotFound(f"there is no broker {broker_id}")
    return found


def secrets_of(cur: psycopg2.extensions.cursor, broker: Broker,
               keys: Callable[[], credentials.MasterKeys]) -> Secrets:
    """The broker's credential values in force, read from the table now (a value stored a second ago counts).

    Fails closed: stored credentials that cannot all be opened (no master key, a row that does not open) mean
    the values are unknown, and a body that might hold one is not shown."""
    cur.execute("SELECT count(*) FROM leadflow.broker_credentials WHERE broker_id = %s", (broker.broker_id,))
    row = cur.fetchone()
    stored_rows = int(row[0]) if row else 0
    stored: dict[str, str] = {}
    if stored_rows:
        try:
            stored = credentials.read_all(cur, keys(), [broker.broker_id]).get(broker.broker_id, {})
        except (ConfigurationError, credentials.CredentialError):
            return Secrets(None)
        if len(stored) < stored_rows or credentials.UNREADABLE in stored.values():
            return Secrets(None)
    return Secrets(redaction.secret_values(replace(broker, stored=stored)))


def _text(body: bytes) -> str:
    """Bytes as text to read: UTF-8 (or the UTF-16/32 json accepts), undecodable bytes shown as U+FFFD."""
    try:
        encoding = json.detect_encoding(body)
    except (ValueError, UnicodeDecodeError):
        encoding = "utf-8"
    return body.decode(encoding, "replace")


def _row(row: Sequence[Any], found: Secrets) -> dict[str, Any]:
    (dead_letter_id, channel, reason, content_type, size, received_at, landed_at, replayed_at, replays, event_ids,
     replayed_by_name, replayed_by_email) = row
    return {"dead_letter_id": int(dead_letter_id), "channel": str(channel),
            "reason": redaction.redact(str(reason), found.values) if found.values is not None else WITHHELD,
            "content_type": content_type, "size_bytes": int(size), "received_at": received_at,
            "landed_at": landed_at, "replayable": channel in PARSERS, "replayed_at": replayed_at,
            "replays": int(replays), "replay_event_ids": list(event_ids or []),
            "replayed_by": replayed_by_name, "replayed_by_email": replayed_by_email}


def list_page(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int,
              keys: Callable[[], credentials.MasterKeys], before_id: int | None,
              limit: int) -> tuple[Broker, list[dict[str, Any]], int | None]:
    """The broker's dead letters, newest first (in landing order), each with a redacted preview of its body;
    older than ``before_id`` when given; and the ``before_id`` of the next page (None on the last)."""
    require_admin_of(who, broker_id)
    broker = _broker(cur, broker_id)
    found = secrets_of(cur, broker, keys)
    cur.execute(f"""SELECT {_COLUMNS}, substring(d.body from 1 for %s)
                    FROM leadflow.dead_letters d LEFT JOIN leadflow.users u ON u.user_id = d.replayed_by
                    WHERE d.broker_id = %s AND (%s::bigint IS NULL OR d.dead_letter_id < %s)
                    ORDER BY d.dead_letter_id DESC LIMIT %s""",
                (_PREVIEW_READ_BYTES, broker_id, before_id, before_id, min(limit, MAX_PAGE) + 1))
    rows = cur.fetchall()
    letters = []
    for row in rows[:limit]:
        letter = _row(row[:-1], found)
        if found.values is None:
            letter["preview"] = WITHHELD
        else:
            shown = redaction.redact(_text(bytes(row[-1])), found.values)
            letter["preview"] = shown if len(shown) <= PREVIEW_CHARS else shown[:PREVIEW_CHARS - 1] + "…"
        letters.append(letter)
    return broker, letters, (letters[-1]["dead_letter_id"] if len(rows) > limit else None)


def read(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, dead_letter_id: int,
         keys: Callable[[], credentials.MasterKeys]) -> tuple[Broker, dict[str, Any]]:
    """One dead letter with its whole body redacted (``body`` None when it cannot be shown safely)."""
    require_admin_of(who, broker_id)
    broker = _broker(cur, broker_id)
    found = secrets_of(cur, broker, keys)
    cur.execute(f"""SELECT {_COLUMNS}, d.body
                    FROM leadflow.dead_letters d LEFT JOIN leadflow.users u ON u.user_id = d.replayed_by
                    WHERE d.broker_id = %s AND d.dead_letter_id = %s""", (broker_id, dead_letter_id))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"broker {broker_id} has no dead letter {dead_letter_id}")
    letter = _row(row[:-1], found)
    letter["body"] = None if found.values is None else redaction.redact_body(_text(bytes(row[-1])), found.values)
    letter["body_withheld"] = WITHHELD if found.values is None else None
    return broker, letter


@dataclass(frozen=True)
class Replay:
    """A payload that parsed: its events, to be produced before ``mark_replayed`` records them."""

    broker: Broker
    channel: str
    events: list[Event]
    edited: bool
    body_sha256: str


def prepare_replay(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, dead_letter_id: int,
                   body: str | None) -> Replay:
    """Parse ``body`` (the stored body when None) as a webhook of the dead letter's channel.

    ``Invalid`` (422) with the parser's reason when it still does not parse, or parses into nothing to land (a
    notification Leadflow does not consume): nothing is produced and the dead letter stays as it was."""
    require_admin_of(who, broker_id)
    broker = _broker(cur, broker_id)
    cur.execute("SELECT channel, body FROM leadflow.dead_letters WHERE broker_id = %s AND dead_letter_id = %s",
                (broker_id, dead_letter_id))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"broker {broker_id} has no dead letter {dead_letter_id}")
    channel, stored = str(row[0]), bytes(row[1])
    payload = stored if body is None else body.encode("utf-8", "surrogatepass")
    try:
        parsed = parse_replay(broker, channel, payload)
    except MalformedPayload as exc:
        raise Invalid(f"the payload still does not parse: {exc}", "body") from exc
    if not parsed.events:
        raise Invalid(f"the payload parses but carries nothing to land ({parsed.ignored or 'no messages'})", "body")
    return Replay(broker, channel, list(parsed.events), payload != stored, hashlib.sha256(payload).hexdigest())


def mark_replayed(cur: psycopg2.extensions.cursor, who: Principal, dead_letter_id: int, replay: Replay) -> datetime:
    """Record a replay whose events Kafka acknowledged: on the dead letter (its latest replay) and in the audit
    log, marked as a replay. Returns when."""
    event_ids = [e.event_id for e in replay.events]
    cur.execute("""UPDATE leadflow.dead_letters SET replayed_at = clock_timestamp(), replayed_by = %s,
                       replay_event_ids = %s, replays = replays + 1
                   WHERE broker_id = %s AND dead_letter_id = %s
                   RETURNING replayed_at, replays""",
                (who.user_id, event_ids, replay.broker.broker_id, dead_letter_id))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"broker {replay.broker.broker_id} has no dead letter {dead_letter_id}")
    replayed_at, replays = row
    # Neither the payload nor the reason (which quotes it) goes into the log: a provider's body may be large and
    # hold what the pages redact; its hash identifies it.
    audit.record(cur, replay.broker.broker_id, who.user_id, "dead_letter.replay",
                 {"dead_letter_id": dead_letter_id, "channel": replay.channel},
                 {"dead_letter_id": dead_letter_id, "replay": True, "replays": int(replays), "edited": replay.edited,
                  "body_sha256": replay.body_sha256, "event_ids": event_ids})
    assert isinstance(replayed_at, datetime)
    return replayed_at


class Publisher(Protocol):
    def publish_all(self, events: Sequence[Event]) -> str | None: ...


class Owner(Protocol):
    def cursor(self) -> AbstractContextManager[psycopg2.extensions.cursor]: ...


def replay(owner: Owner, publisher: Publisher, who: Principal, broker_id: int, dead_letter_id: int,
           body: str | None) -> dict[str, Any]:
    """Parse, produce, then mark: a dead letter is marked replayed only once Kafka holds its events (a replay
    that Kafka did not acknowledge is a 503 and can simply be pressed again: the ids are the same)."""
    with owner.cursor() as cur:
        prepared = prepare_replay(cur, who, broker_id, dead_letter_id, body)
    failure = publisher.publish_all(prepared.events)
    if failure is not None:
        raise Unavailable(f"Kafka did not acknowledge the events ({failure}); nothing was marked: replay again")
    with owner.cursor() as cur:
        at = mark_replayed(cur, who, dead_letter_id, prepared)
    return {"dead_letter_id": dead_letter_id, "channel": prepared.channel, "events": len(prepared.events),
            "event_ids": [e.event_id for e in prepared.events], "replayed_at": at, "edited": prepared.edited}
