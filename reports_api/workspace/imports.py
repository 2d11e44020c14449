"""Lead imports in the workspace: a CSV's rows (or one lead typed in) produced onto the messages topic, then
their tags and notes put on the leads they became.

An import is a row of ``leadflow.lead_imports`` (migration 0019) and its rows, written at upload as parsed by
``leadflow.leads.imports`` (the preview). Once a person starts it, ``ImportJobs`` runs it on a thread of the
reports API, in two phases, all under the importing person's broker-scoped cursor:

1. *producing*: each valid row becomes a ``ChannelMessage`` (channel ``import`` or ``manual``, provider id
   ``<import_id>:<row>``) produced in batches; ``produced_upto`` moves after Kafka acknowledged a batch, so a
   restarted API produces again from there, and a row produced twice is landed once (the landing's key).
2. *waiting*: the landing stores the messages and the leads run resolves them (``make up`` runs both on its
   sensor; tests run the jobs themselves). Each row found landed (raw_messages → message_leads) gets its tags
   and notes on its lead, audited and signed by the importing person, and its outcome: a new lead, or merged
   into a lead that already had messages. Until then the page shows how many rows are still waiting.

A lease (``worker``, ``heartbeat_at``) keeps one process on an import; another takes it over once the lease
is stale, so an import survives a restart of the API (at start-up, and whenever its page is read).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal

import psycopg2.extensions
import psycopg2.extras
from confluent_kafka import KafkaException, Producer

from leadflow.db.connection import transaction
from leadflow.events import ChannelMessage, Contact
from leadflow.kafka import make_producer, produce_all
from leadflow.leads.imports import Parsed, Row
from reports_api import queries
from reports_api.scope import ScopedPool
from reports_api.security import Principal
from reports_api.workspace.db import NotFound, audit

log = logging.getLogger(__name__)

Kind = Literal["csv", "manual"]
ACTIVE = ("queued", "producing", "waiting")
CHANNEL: dict[str, Literal["import", "manual"]] = {"csv": "import", "manual": "manual"}
BATCH = 2000
INSERT_PAGE = 1000
LEASE_S = 30.0

_IMPORT_COLUMNS = ("import_id, broker_id, created_by, kind, filename, encoding, delimiter, columns, status, "
                   "total_rows, valid_rows, rejected_rows, produced_upto, new_leads, merged_leads, error, created_at, "
                   "started_at, finished_at, heartbeat_at, "
                   # how many valid rows are on the topic: produced_upto is a row number, rejected rows are never sent
                   "(SELECT count(*) FROM leadflow.lead_import_rows r WHERE r.import_id = lead_imports.import_id "
                   "AND r.status <> 'rejected' AND r.row_number <= lead_imports.produced_upto) AS produced_rows")


def _record(cur: psycopg2.extensions.cursor) -> dict[str, Any] | None:
    row = cur.fetchone()
    if row is None:
        return None
    names = [d[0] for d in cur.description or ()]
    found = dict(zip(names, row, strict=True))
    done = found["new_leads"] + found["merged_leads"]
    found["landed_rows"] = done
    found["waiting_rows"] = max(found["valid_rows"] - done, 0) if found["status"] in ACTIVE else 0
    return found


# --- reads -----------------------------------------------------------------------------------------------

def get(cur: psycopg2.extensions.cursor, broker_id: int, import_id: int) -> dict[str, Any]:
    """The import with its counts; NotFound when the caller may not see it (another broker's, or an AGENT)."""
    cur.execute(f"SELECT {_IMPORT_COLUMNS} FROM leadflow.lead_imports WHERE import_id = %s AND broker_id = %s",
                (import_id, broker_id))
    found = _record(cur)
    if found is None:
        raise NotFound(f"broker {broker_id} has no import {import_id} you may read")
    found["created_by_name"] = _person(cur, found["created_by"])
    found["lead_id"] = None
    if found["kind"] == "manual":
        cur.execute("SELECT lead_id FROM leadflow.lead_import_rows WHERE import_id = %s AND row_number = 1",
                    (import_id,))
        lead = cur.fetchone()
        found["lead_id"] = lead[0] if lead else None
    return found


def _person(cur: psycopg2.extensions.cursor, user_id: int) -> str | None:
    cur.execute("SELECT display_name FROM leadflow.users WHERE user_id = %s", (user_id,))
    row = cur.fetchone()
    return None if row is None else str(row[0])


def recent(cur: psycopg2.extensions.cursor, broker_id: int, limit: int = 20) -> list[dict[str, Any]]:
    cur.execute(f"""SELECT {_IMPORT_COLUMNS} FROM leadflow.lead_imports WHERE broker_id = %s
                    ORDER BY import_id DESC LIMIT %s""", (broker_id, limit))
    names = [d[0] for d in cur.description or ()]
    out = []
    for row in cur.fetchall():
        found = dict(zip(names, row, strict=True))
        found["landed_rows"] = found["new_leads"] + found["merged_leads"]
        found["waiting_rows"] = (max(found["valid_rows"] - found["landed_rows"], 0)
                                 if found["status"] in ACTIVE else 0)
        out.append(found)
    return out


RowStatus = Literal["pending", "produced", "new", "merged", "rejected"]


def rows(cur: psycopg2.extensions.cursor, broker_id: int, import_id: int, status: RowStatus | None = None,
         after: int = 0, limit: int | None = 100) -> list[dict[str, Any]]:
    """The import's rows in file order, from row ``after`` on (``limit`` None: all of them)."""
    cur.execute(f"""SELECT row_number, status, reason, existing_lead_id, lead_id, data
                    FROM leadflow.lead_import_rows
                    WHERE import_id = %s AND broker_id = %s AND row_number > %s
                      AND (%s::text IS NULL OR status = %s)
                    ORDER BY row_number {'' if limit is None else 'LIMIT %s'}""",
                (import_id, broker_id, after, status, status, *(() if limit is None else (limit,))))
    out = []
    for number, row_status, reason, existing, lead_id, data in cur.fetchall():
        out.append({"row": number, "status": row_status, "reason": reason, "existing_lead_id": existing,
                    "lead_id": lead_id, "name": data.get("name"), "phone_e164": data.get("phone_e164"),
                    "email": data.get("email"), "source": data.get("source"), "tags": data.get("tags") or [],
                    "notes": data.get("notes"), "qualification": data.get("qualification") or {},
                    "raw": data.get("raw") or {}})
    return out


def report_rows(cur: psycopg2.extensions.cursor, broker_id: int, import_id: int,
                status: RowStatus | None) -> Iterator[list[object]]:
    """The report's CSV lines (row, outcome, lead, reason, then the row as given), in file order."""
    after = 0
    while True:
        page = rows(cur, broker_id, import_id, status, after, 5000)
        if not page:
            return
        for r in page:
            yield [r["row"], r["status"], r["lead_id"] or r["existing_lead_id"] or "", r["reason"] or "",
                   r["name"] or "", r["phone_e164"] or "", r["email"] or "",
                   "; ".join(f"{k}={v}" for k, v in r["raw"].items())]
        after = page[-1]["row"]


# --- writes of a request ---------------------------------------------------------------------------------

def existing_leads(cur: psycopg2.extensions.cursor, broker_id: int, values: Sequence[str]) -> dict[str, int]:
    """Phone (E.164) or email → the broker's lead it already identifies."""
    if not values:
        return {}
    cur.execute("""SELECT identity_value, lead_id FROM leadflow.lead_identities
                   WHERE broker_id = %s AND identity_kind IN ('phone', 'email') AND identity_value = ANY(%s)""",
                (broker_id, list(values)))
    return {str(value): int(lead) for value, lead in cur.fetchall()}


def create(cur: psycopg2.extensions.cursor, broker_id: int, kind: Kind, filename: str | None,
           parsed: Parsed) -> int:
    """Store a parsed file (or one typed-in row) as an import in preview, audited; its id."""
    valid = parsed.valid
    cur.execute("""INSERT INTO leadflow.lead_imports (broker_id, kind, filename, encoding, delimiter, columns,
                                                      total_rows, valid_rows, rejected_rows)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING import_id""",
                (broker_id, kind, "".join(ch for ch in filename or "" if ch.isprintable())[:255] or None,
                 parsed.encoding, parsed.delimiter,
                 psycopg2.extras.Json({**parsed.columns, "_ignored": parsed.ignored}), len(parsed.rows), len(valid),
                 len(parsed.rows) - len(valid)))
    found = cur.fetchone()
    assert found is not None
    import_id = int(found[0])
    matches = existing_leads(cur, broker_id, [v for r in valid for v in (r.phone_e164, r.email) if v])
    values = []
    for r in parsed.rows:
        existing = next((matches[v] for v in (r.phone_e164, r.email) if v and v in matches), None)
        values.append((import_id, r.number, broker_id, "pending" if r.ok else "rejected",
                       "; ".join(r.errors) or None, existing, psycopg2.extras.Json(r.as_json())))
    psycopg2.extras.execute_values(
        cur, """INSERT INTO leadflow.lead_import_rows (import_id, row_number, broker_id, status, reason,
                                                       existing_lead_id, data) VALUES %s""",
        values, page_size=INSERT_PAGE)
    audit(cur, broker_id, f"import.{'upload' if kind == 'csv' else 'lead'}", None, None,
          {"import_id": import_id, "filename": filename, "rows": len(parsed.rows), "valid": len(valid)})
    return import_id


def start(cur: psycopg2.extensions.cursor, broker_id: int, import_id: int) -> dict[str, Any]:
    """Queue an import in preview (a second start changes nothing); NotFound, or ValueError when nothing is
    valid or it was discarded."""
    found = get(cur, broker_id, import_id)
    if found["status"] != "preview":
        return found
    if found["valid_rows"] == 0:
        raise ValueError("no row of this file can be imported: see the reasons of each row")
    cur.execute("""UPDATE leadflow.lead_imports SET status = 'queued', started_at = now()
                   WHERE import_id = %s AND broker_id = %s AND status = 'preview'""", (import_id, broker_id))
    audit(cur, broker_id, "import.start", None, {"status": "preview"}, {"import_id": import_id, "status": "queued"})
    return get(cur, broker_id, import_id)


def discard(cur: psycopg2.extensions.cursor, broker_id: int, import_id: int) -> None:
    """Drop an import still in preview (its rows go with it); ValueError once started."""
    found = get(cur, broker_id, import_id)
    if found["status"] != "preview":
        raise ValueError(f"import {import_id} is {found['status']}: only a preview can be discarded")
    cur.execute("DELETE FROM leadflow.lead_imports WHERE import_id = %s AND broker_id = %s", (import_id, broker_id))
    audit(cur, broker_id, "import.discard", None, {"import_id": import_id, "status": "preview"}, None)


def _audit_many(cur: psycopg2.extensions.cursor, broker_id: int, action: str,
                entries: list[tuple[int, dict[str, Any]]]) -> None:
    """``db.audit`` for many leads in one statement (a 100k-row import writes as many entries)."""
    if entries:
        psycopg2.extras.execute_values(
            cur, "INSERT INTO leadflow.audit_log (broker_id, action, lead_id, before, after) VALUES %s",
            [(broker_id, action, lead_id, None, json.dumps(after, default=str)) for lead_id, after in entries],
            template="(%s, %s, %s, %s, %s::jsonb)", page_size=INSERT_PAGE)


# --- the job ---------------------------------------------------------------------------------------------

def message_for(broker: dict[str, Any], import_id: int, kind: str, row: Row, sent_at: datetime) -> ChannelMessage:
    """A row as the channel message it enters as; the same row always gives the same provider and event id."""
    channel = CHANNEL[kind]
    return ChannelMessage.build(
        broker_id=int(broker["broker_id"]), broker_slug=str(broker["slug"]), channel=channel,
        provider_message_id=f"{import_id}:{row.number}", conversation_id=f"{channel}:{import_id}",
        contact=Contact(channel_user_id=row.identity(), phone_e164=row.phone_e164, email=row.email,
                        display_name=row.name),
        direction="inbound", message_type=channel, text=row.text(), sent_at=sent_at,
        # The funnel reads the lead's source from here (stg_leadflow__messages.contact_source).
        raw={"row": row.raw, "source": row.source, "import_id": import_id, "row_number": row.number})


class ImportJobs:
    """The imports this process runs, one thread each; ``kick`` starts one if it is not running here."""

    def __init__(self, pool: ScopedPool, bootstrap: str, topic: str, *, poll_s: float = 1.0,
                 lease_s: float = LEASE_S) -> None:
        self.pool = pool
        self.bootstrap = bootstrap
        self.topic = topic
        self.poll_s = poll_s
        self.lease_s = lease_s
        self.worker = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._threads: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()
        self._producer: Producer | None = None

    def kick(self, broker_id: int, import_id: int, created_by: int) -> None:
        with self._lock:
            running = self._threads.get(import_id)
            if self._stop.is_set() or (running is not None and running.is_alive()):
                return
            thread = threading.Thread(target=self._run, args=(broker_id, import_id, created_by),
                                      name=f"lead-import-{import_id}", daemon=True)
            self._threads[import_id] = thread
            thread.start()

    def resume_all(self, database_url: str) -> int:
        """Start every import left active (by this process before a restart, or by one that died)."""
        with transaction(database_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT broker_id, import_id, created_by FROM leadflow.lead_imports WHERE status IN %s",
                        (ACTIVE,))
            found = cur.fetchall()
        for broker_id, import_id, created_by in found:
            self.kick(int(broker_id), int(import_id), int(created_by))
        return len(found)

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        with self._lock:
            threads = list(self._threads.values())
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.1))
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None

    def wait(self, import_id: int, timeout_s: float) -> bool:
        """True once this process's thread of the import has ended (tests)."""
        thread = self._threads.get(import_id)
        if thread is not None:
            thread.join(timeout_s)
            return not thread.is_alive()
        return True

    # -- one import --

    @contextmanager
    def _cursor(self, who: Principal, broker_id: int) -> Iterator[psycopg2.extensions.cursor]:
        with self.pool.cursor(who, broker_id, write=True) as cur:
            yield cur

    def _run(self, broker_id: int, import_id: int, created_by: int) -> None:
        # The importing person, as the scope that signs the notes, tags and audit entries of the job.
        who = Principal(user_id=created_by, email="", role="ADMIN", broker_id=broker_id)
        try:
            self._loop(who, broker_id, import_id)
        finally:
            if self._stop.is_set():
                self._release(who, broker_id, import_id)

    def _release(self, who: Principal, broker_id: int, import_id: int) -> None:
        """Hand the lease back when this process stops, so that the next one need not wait for it to go stale."""
        try:
            with self._cursor(who, broker_id) as cur:
                cur.execute("""UPDATE leadflow.lead_imports SET worker = NULL, heartbeat_at = NULL
                               WHERE import_id = %s AND worker = %s""", (import_id, self.worker))
        except psycopg2.Error:
            pass  # the lease then runs out by itself

    def _loop(self, who: Principal, broker_id: int, import_id: int) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                state = self._claim(who, broker_id, import_id)
                if state is None:
                    return
                if state == "busy":
                    self._stop.wait(self.lease_s / 3)
                    continue
                if state in ("queued", "producing"):
                    self._produce(who, broker_id, import_id)
                    continue
                if self._attach(who, broker_id, import_id):
                    return
                failures = 0
                self._stop.wait(self.poll_s)
            except (KafkaException, BufferError, psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                # Kafka or PostgreSQL away for a while: the lease runs out, this thread or another resumes.
                failures += 1
                log.warning("import %s: %s (attempt %s); retrying", import_id, exc, failures)
                self._note_error(who, broker_id, import_id, f"retrying: {type(exc).__name__}: {exc}"[:500])
                self._stop.wait(min(30.0, self.poll_s * 2 ** min(failures, 5)))
            except Exception as exc:  # an import must end visibly, not hang in "producing"
                log.exception("import %s failed", import_id)
                self._fail(who, broker_id, import_id, f"{type(exc).__name__}: {exc}"[:500])
                return

    def _claim(self, who: Principal, broker_id: int, import_id: int) -> str | None:
        """The import's status if this process holds its lease now, "busy" if another does, None if it is over."""
        with self._cursor(who, broker_id) as cur:
            cur.execute("""UPDATE leadflow.lead_imports SET worker = %s, heartbeat_at = now()
                           WHERE import_id = %s AND broker_id = %s AND status IN %s
                             AND (worker = %s OR heartbeat_at IS NULL
                                  OR heartbeat_at < now() - make_interval(secs => %s))
                           RETURNING status""",
                        (self.worker, import_id, broker_id, ACTIVE, self.worker, self.lease_s))
            row = cur.fetchone()
            if row is not None:
                return str(row[0])
            cur.execute("SELECT status FROM leadflow.lead_imports WHERE import_id = %s AND broker_id = %s",
                        (import_id, broker_id))
            status_row = cur.fetchone()
        return "busy" if status_row is not None and status_row[0] in ACTIVE else None

    def _producer_(self) -> Producer:
        if self._producer is None:
            self._producer = make_producer(self.bootstrap)
        return self._producer

    def _produce(self, who: Principal, broker_id: int, import_id: int) -> None:
        """Produce the import's pending rows from ``produced_upto`` on, a batch at a time."""
        with self._cursor(who, broker_id) as cur:
            cur.execute("""UPDATE leadflow.lead_imports SET status = 'producing', error = NULL
                           WHERE import_id = %s AND status = 'queued'""", (import_id,))
            broker = queries.broker(cur, broker_id)
            cur.execute("SELECT kind, produced_upto, started_at FROM leadflow.lead_imports WHERE import_id = %s",
                        (import_id,))
            found = cur.fetchone()
        assert broker is not None and found is not None
        kind, upto, started_at = str(found[0]), int(found[1]), found[2]
        while not self._stop.is_set():
            with self._cursor(who, broker_id) as cur:
                cur.execute("""SELECT row_number, data FROM leadflow.lead_import_rows
                               WHERE import_id = %s AND status = 'pending' AND row_number > %s
                               ORDER BY row_number LIMIT %s""", (import_id, upto, BATCH))
                batch = cur.fetchall()
            if not batch:
                with self._cursor(who, broker_id) as cur:
                    cur.execute("""UPDATE leadflow.lead_imports SET status = 'waiting'
                                   WHERE import_id = %s AND status = 'producing' AND worker = %s""",
                                (import_id, self.worker))
                return
            messages = [message_for(broker, import_id, kind, Row.from_json(data), started_at) for _, data in batch]
            produce_all(self._producer_(), self.topic,
                        [(m.kafka_key(), m.model_dump_json().encode()) for m in messages])
            last = int(batch[-1][0])
            with self._cursor(who, broker_id) as cur:
                cur.execute("""UPDATE leadflow.lead_import_rows SET status = 'produced'
                               WHERE import_id = %s AND status = 'pending' AND row_number > %s
                                 AND row_number <= %s""", (import_id, upto, last))
                cur.execute("""UPDATE leadflow.lead_imports SET produced_upto = %s, heartbeat_at = now()
                               WHERE import_id = %s AND worker = %s""", (last, import_id, self.worker))
                if cur.rowcount == 0:
                    return  # the lease went to another process: it carries on from the stored position
            upto = last

    def _attach(self, who: Principal, broker_id: int, import_id: int) -> bool:
        """Tags, notes and outcomes of the rows landed and resolved since the last pass; True once every row has
        its outcome (the import is then done)."""
        channel = None
        while not self._stop.is_set():
            with self._cursor(who, broker_id) as cur:
                if channel is None:
                    cur.execute("SELECT kind FROM leadflow.lead_imports WHERE import_id = %s", (import_id,))
                    kind_row = cur.fetchone()
                    assert kind_row is not None
                    channel = CHANNEL[str(kind_row[0])]
                # The next rows waiting for their lead, then their messages by the landing's unique key, in two
                # statements: as one join it could be planned while nothing had landed yet and then rescan the
                # messages the landing was adding, once per row (a 100k-row import waited over ten minutes).
                cur.execute("""SELECT row_number, data FROM leadflow.lead_import_rows
                               WHERE import_id = %s AND status = 'produced'
                               ORDER BY row_number LIMIT %s FOR UPDATE SKIP LOCKED""", (import_id, BATCH))
                waiting = {f"{import_id}:{number}": (number, data) for number, data in cur.fetchall()}
                found = []
                if waiting:
                    # Whether the lead had a message landed before the row's that is not this import's: then
                    # the row merged into an existing lead.
                    cur.execute("""
                        SELECT m.provider_message_id, ml.lead_id,
                               EXISTS (SELECT 1 FROM leadflow.message_leads o JOIN leadflow.raw_messages om
                                       ON om.message_id = o.message_id
                                       WHERE o.lead_id = ml.lead_id AND o.message_id < m.message_id
                                       AND NOT (om.channel = %s AND om.provider_message_id LIKE %s)) AS existed
                        FROM leadflow.raw_messages m JOIN leadflow.message_leads ml ON ml.message_id = m.message_id
                        WHERE m.broker_id = %s AND m.channel = %s AND m.provider_message_id = ANY(%s)""",
                                (channel, f"{import_id}:%", broker_id, channel, list(waiting)))
                    found = sorted((*waiting[key], lead_id, existed) for key, lead_id, existed in cur.fetchall())
                if found:
                    self._attach_batch(cur, broker_id, import_id, found)
                cur.execute("""SELECT status, EXISTS (SELECT 1 FROM leadflow.lead_import_rows
                                                      WHERE import_id = %s AND status IN ('pending', 'produced'))
                               FROM leadflow.lead_imports WHERE import_id = %s""", (import_id, import_id))
                state = cur.fetchone()
                assert state is not None
                if state[0] == "waiting" and not state[1]:
                    cur.execute("""UPDATE leadflow.lead_imports SET status = 'done', finished_at = now(), error = NULL
                                   WHERE import_id = %s AND status = 'waiting'""", (import_id,))
                    audit(cur, broker_id, "import.done", None, None, {"import_id": import_id})
                    return True
                cur.execute("""UPDATE leadflow.lead_imports SET heartbeat_at = now()
                               WHERE import_id = %s AND worker = %s""", (import_id, self.worker))
            if len(found) < BATCH:
                return False
        return False

    def _attach_batch(self, cur: psycopg2.extensions.cursor, broker_id: int, import_id: int,
                      found: list[tuple[Any, ...]]) -> None:
        outcomes: list[tuple[int, str, int]] = []
        notes: list[tuple[int, int, str]] = []
        tags: list[tuple[int, int, str]] = []
        for number, data, lead_id, existed in found:
            row = Row.from_json(data)
            outcomes.append((int(number), "merged" if existed else "new", int(lead_id)))
            if row.notes:
                notes.append((broker_id, int(lead_id), row.notes))
            tags.extend((int(lead_id), broker_id, tag) for tag in row.tags)
        if notes:
            added = psycopg2.extras.execute_values(
                cur, """INSERT INTO leadflow.lead_notes (broker_id, lead_id, body) VALUES %s
                        RETURNING note_id, lead_id, body, created_at, author_id""", notes, fetch=True)
            _audit_many(cur, broker_id, "note.add", [
                (lead_id, {"note_id": note_id, "body": body, "created_at": created_at, "author_id": author_id,
                           "import_id": import_id}) for note_id, lead_id, body, created_at, author_id in added])
        if tags:
            added = psycopg2.extras.execute_values(
                cur, """INSERT INTO leadflow.lead_tags (lead_id, broker_id, tag) VALUES %s
                        ON CONFLICT (lead_id, tag) DO NOTHING RETURNING lead_id, tag, added_at, added_by""",
                list(dict.fromkeys(tags)), fetch=True)
            _audit_many(cur, broker_id, "tag.add", [
                (lead_id, {"tag": tag, "added_at": added_at, "added_by_id": added_by, "import_id": import_id})
                for lead_id, tag, added_at, added_by in added])
        psycopg2.extras.execute_values(
            cur, """UPDATE leadflow.lead_import_rows r SET status = v.status, lead_id = v.lead_id,
                           reason = CASE WHEN v.status = 'merged' THEN 'merged into existing lead ' || v.lead_id END
                    FROM (VALUES %s) AS v (row_number, status, lead_id)
                    WHERE r.import_id = """ + str(int(import_id)) + " AND r.row_number = v.row_number",
            outcomes, template="(%s::integer, %s::text, %s::bigint)")
        merged = sum(1 for _, status, _ in outcomes if status == "merged")
        cur.execute("""UPDATE leadflow.lead_imports SET new_leads = new_leads + %s, merged_leads = merged_leads + %s
                       WHERE import_id = %s""", (len(outcomes) - merged, merged, import_id))

    def _note_error(self, who: Principal, broker_id: int, import_id: int, error: str) -> None:
        try:
            with self._cursor(who, broker_id) as cur:
                cur.execute("UPDATE leadflow.lead_imports SET error = %s WHERE import_id = %s", (error, import_id))
        except psycopg2.Error:
            pass  # PostgreSQL itself is what is away

    def _fail(self, who: Principal, broker_id: int, import_id: int, error: str) -> None:
        try:
            with self._cursor(who, broker_id) as cur:
                cur.execute("""UPDATE leadflow.lead_imports SET status = 'failed', error = %s, finished_at = now()
                               WHERE import_id = %s""", (error, import_id))
                audit(cur, broker_id, "import.failed", None, None, {"import_id": import_id, "error": error})
        except psycopg2.Error:
            log.exception("import %s: its failure could not be recorded", import_id)
