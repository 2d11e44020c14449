"""The calendar sync: appointments written to Google Calendar, and each connected person's busy times read back.

**Appointments → Google.** Every appointment whose ``calendar_state`` is ``pending`` goes to the calendar of its
person (their connection), else the broker's (agent key 0); with neither it becomes ``not_connected`` (and
``pending`` again the moment one is connected, ``google.save``). An active visit (proposed, confirmed) is
inserted, or patched with the etag read last (``If-Match``); a 409/412 re-reads the event and patches once more. A
virtual visit asks for a Meet link (``conferenceData.createRequest``, ``conferenceDataVersion=1``) and the link
(``hangoutLink``) is kept in ``meet_link``. A cancelled or rescheduled visit's event is deleted (already gone is
fine); a completed or missed one is patched with a title prefix ("[Realizada]", "[No asistió]").

The calendar holding an event is kept (``calendar_owner``): when a visit belongs to another calendar than the one
holding its event (its person connected their own calendar since, or another person took the visit), the event
is deleted there and created where the visit belongs now.

Our events carry an id derived from the appointment (``event_id``), so an insert repeated after a crash between
Google's answer and our commit is a 409 on the same id, not a second event: the sync reads it and patches it.
Google is called outside any row lock (a page moving a visit never waits on Google); the state is written only
if the appointment did not change meanwhile, otherwise it stays ``pending`` for the next run. A person with a
broken connection keeps their visits ``pending`` with the reason (written to no other calendar: a visit in the
wrong diary is worse than a late one). 429/5xx after the bounded backoff: ``pending`` with the reason, and that
calendar's other visits wait for the next run too, without a call each; any other refusal: ``failed`` with it.
Nothing is lost: ``calendar_error`` says why.

**Google → ``calendar_busy``.** For every connected person, freeBusy over the broker's horizon replaces their
rows. So that a visit does not block itself: our events are inserted ``transparent`` (freeBusy counts only
opaque events), and intervals equal to one of that person's active visits are dropped too (an event made
opaque by hand in Google, or inserted before this sync existed). Our visits block their time through the
``appointments`` table anyway (``store.busy_times``).

One run per broker at a time (a session advisory lock): a Dagster run and ``leadflow calendar sync`` started
together share the brokers instead of writing the same events twice.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg2.extensions

from leadflow.appointments import google
from leadflow.appointments.google import (
    CalendarSession,
    Conflict,
    Connection,
    ConnectionBroken,
    Gone,
    Google,
    GoogleError,
    NotConfigured,
    Refused,
    Tokens,
    TryLater,
)
from leadflow.appointments.store import broker_rules
from leadflow.credentials import MasterKeys
from leadflow.db.connection import connect, transaction

log = logging.getLogger(__name__)
LOCK_CLASS = 0x6C66_6361  # "lfca": the advisory lock namespace of the calendar sync (with the broker id)
PREFIX = {"completed": "[Realizada] ", "no_show": "[No asistió] "}
KIND_LABEL = {"in_person": "presencial", "virtual": "virtual (Google Meet)"}


@dataclass
class SyncResult:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    not_connected: int = 0
    pending: Counter[str] = field(default_factory=Counter)  # reason → appointments left pending
    failed: Counter[str] = field(default_factory=Counter)
    broken: list[str] = field(default_factory=list)  # "<broker id>/<agent key>" marked broken in this run
    busy_read: int = 0  # people whose busy times were read
    busy_intervals: int = 0
    skipped_brokers: int = 0  # another sync held them


def event_id(broker_id: int, appointment_id: int) -> str:
    """Our event's id: Google accepts 5-1024 characters of base32hex (a-v, 0-9)."""
    return f"lfb{broker_id}a{appointment_id}"


def sync_calendars(url: str, keys: MasterKeys | None, client: Google, now: datetime,
                   broker_ids: list[int] | None = None) -> SyncResult:
    """Write pending appointments to Google and read busy times back, for every broker with something to do
    (or ``broker_ids``)."""
    result = SyncResult()
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("""SELECT b.broker_id, b.slug FROM leadflow.brokers b
                       WHERE (%s::bigint[] IS NULL OR b.broker_id = ANY(%s::bigint[]))
                         AND (EXISTS (SELECT 1 FROM leadflow.google_calendar_connections c
                                      WHERE c.broker_id = b.broker_id)
                              OR EXISTS (SELECT 1 FROM leadflow.appointments a
                                         WHERE a.broker_id = b.broker_id AND a.calendar_state = 'pending'))
                       ORDER BY b.broker_id""", (broker_ids, broker_ids))
        brokers = cur.fetchall()
    holder = connect(url)
    holder.autocommit = True
    try:
        with client.http() as http:
            for broker_id, slug in brokers:
                with holder.cursor() as lock:
                    lock.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, broker_id))
                    if not lock.fetchone()[0]:  # type: ignore[index]
                        result.skipped_brokers += 1
                        continue
                try:
                    _Broker(url, keys, client, http, int(broker_id), str(slug), now, result).run()
                finally:
                    with holder.cursor() as lock:
                        lock.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, broker_id))
    finally:
        holder.close()
    return result


class _Broker:
    def __init__(self, url: str, keys: MasterKeys | None, client: Google, http: Any, broker_id: int, slug: str,
                 now: datetime, result: SyncResult) -> None:
        self.url, self.keys, self.client, self.http = url, keys, client, http
        self.broker_id, self.slug, self.now, self.result = broker_id, slug, now, result
        self.sessions: dict[int, CalendarSession | str] = {}  # agent key → session, or why there is none

    def run(self) -> None:
        with transaction(self.url) as conn, conn.cursor() as cur:
            self.connections = {c.agent_key: c for c in google.connections(cur, self.broker_id)}
        self.push()
        self.read_busy()

    # --- sessions -----------------------------------------------------------------------------------

    def session(self, found: Connection) -> CalendarSession | str:
        """The connection's session, or the reason it has none (broken, no OAuth client, no master key)."""
        if found.agent_key in self.sessions:
            return self.sessions[found.agent_key]
        made: CalendarSession | str
        if found.status != "connected":
            made = "la conexión con Google Calendar está rota: hay que volver a conectarla"
        elif self.keys is None:
            made = "no master key to open the calendar's tokens (LEADFLOW_MASTER_KEY)"
        else:
            try:
                oauth = self.client.oauth(self.slug)
                with transaction(self.url) as conn, conn.cursor() as cur:
                    tokens = google.tokens_of(cur, self.keys, found)
                made = CalendarSession(self.client, self.http, oauth, tokens, found.calendar_id,
                                       functools.partial(self._store, found), self.now)
            except (NotConfigured, GoogleError) as exc:
                made = str(exc)
        self.sessions[found.agent_key] = made
        return made

    def _store(self, found: Connection, tokens: Tokens) -> None:
        # Committed at once, whatever happens to the call that needed it: the old access token is dead.
        assert self.keys is not None
        with transaction(self.url) as conn, conn.cursor() as cur:
            google.store_tokens(cur, self.keys, found, tokens, self.now)

    def broken(self, found: Connection, exc: ConnectionBroken) -> str:
        reason = str(exc)
        with transaction(self.url) as conn, conn.cursor() as cur:
            google.mark_broken(cur, found, reason, self.now)
        self.sessions[found.agent_key] = f"la conexión con Google Calendar está rota: {reason}"
        self.result.broken.append(f"{self.broker_id}/{found.agent_key}")
        log.warning("calendar connection broken (broker %s, agent key %s): %s", self.broker_id, found.agent_key,
                    reason)
        return str(self.sessions[found.agent_key])

    # --- appointments → Google ----------------------------------------------------------------------

    def push(self) -> None:
        last = 0
        while True:
            with transaction(self.url) as conn, conn.cursor() as cur:
                cur.execute("""SELECT a.appointment_id, a.agent_key, a.lead_id, a.kind, a.address, a.starts_at,
                                      a.ends_at, a.timezone, a.status, a.calendar_event_id, a.calendar_etag,
                                      a.meet_link, a.updated_at, a.calendar_owner,
                                      coalesce(q.name, l.display_name, 'lead ' || a.lead_id), l.phone_e164,
                                      u.display_name
                               FROM leadflow.appointments a
                               JOIN leadflow.leads l ON l.lead_id = a.lead_id
                               LEFT JOIN leadflow.lead_qualifications q ON q.lead_id = a.lead_id
                               LEFT JOIN leadflow.users u ON u.user_id = a.agent_id
                               WHERE a.broker_id = %s AND a.calendar_state = 'pending' AND a.appointment_id > %s
                               ORDER BY a.appointment_id LIMIT 200""", (self.broker_id, last))
                rows = cur.fetchall()
            if not rows:
                return
            for row in rows:
                last = row[0]
                self.push_one(_Visit(*row))

    def push_one(self, visit: _Visit) -> None:
        target = self.connections.get(visit.agent_key) or self.connections.get(0)
        holder = visit.calendar_owner if visit.event_id else None
        try:
            if holder is not None and (target is None or holder != target.agent_key):
                # The event is in a calendar the visit no longer belongs to (its person connected their own, or
                # another person took the visit): out of there first, then written where it belongs now.
                if not self.take_out(visit, self.connections.get(holder)):
                    return
                visit = replace(visit, event_id=None, etag=None, meet_link=None, calendar_owner=None)
            if target is None:
                self.write(visit, "not_connected", error=None)
                self.result.not_connected += 1
                return
            session = self.session(target)
            if isinstance(session, str):
                self.write(visit, "pending", error=session)
                self.result.pending[session] += 1
                return
            ready, key = session, target.agent_key
            self.guarded(visit, target, lambda: self.apply(visit, ready, key))
        except _Stop:
            return

    def take_out(self, visit: _Visit, holder: Connection | None) -> bool:
        """Delete the visit's event from the calendar holding it; False when that must wait (the visit is
        left pending with the reason). A calendar since disconnected is out of reach: the event is let go."""
        assert visit.event_id is not None
        if holder is not None:
            session = self.session(holder)
            if isinstance(session, str):
                self.write(visit, "pending", error=session)
                self.result.pending[session] += 1
                return False
            event = visit.event_id
            self.guarded(visit, holder, lambda: session.delete(event))
            self.result.deleted += 1
        self.write(visit, "pending", error=None, event=(None, None), owner=None, meet_link="")
        return True

    def guarded(self, visit: _Visit, found: Connection, call: Callable[[], object]) -> None:
        """``call``, with Google's faults turned into the visit's state and reason (then ``_Stop``)."""
        try:
            call()
            return
        except ConnectionBroken as exc:
            reason = self.broken(found, exc)
            self.write(visit, "pending", error=reason)
            self.result.pending[reason] += 1
        except TryLater as exc:
            # Google busy or away for this account: its other visits wait for the next run without a call each
            # (an outage costs one visit's retries per calendar, not every visit's).
            self.sessions[found.agent_key] = str(exc)
            self.write(visit, "pending", error=str(exc))
            self.result.pending[str(exc)] += 1
        except (Refused, Gone, Conflict) as exc:
            self.write(visit, "failed", error=str(exc))
            self.result.failed[str(exc)] += 1
        raise _Stop

    def apply(self, visit: _Visit, session: CalendarSession, owner: int) -> None:
        if visit.status in ("cancelled", "rescheduled"):
            if visit.event_id:
                session.delete(visit.event_id)
                self.result.deleted += 1
            self.write(visit, "synced", error=None, event=(None, None), owner=None)
            return
        if visit.status in ("completed", "no_show") and not visit.event_id:
            self.write(visit, "synced", error=None)  # never in the calendar: nothing to mark there
            return
        body = self.event(visit)
        meet = visit.kind == "virtual" and not visit.meet_link
        if visit.event_id is None:
            ours = event_id(self.broker_id, visit.appointment_id)
            try:
                answer = session.insert({"id": ours, **body, **(self._meet(visit) if meet else {})}, meet=meet)
                self.result.created += 1
            except Conflict:
                # Inserted by a run that did not live to store it: the same event, brought up to date.
                answer = self.patch(session, ours, None, body, visit, meet)
        else:
            answer = self.patch(session, visit.event_id, visit.etag, body, visit, meet)
        link = _meet(answer.get("hangoutLink") or _video_link(answer)) or visit.meet_link
        self.write(visit, "synced", error=None, event=(str(answer.get("id") or visit.event_id), answer.get("etag")),
                   owner=owner, meet_link=link)

    def patch(self, session: CalendarSession, ident: str, etag: str | None, body: dict[str, Any], visit: _Visit,
              meet: bool) -> dict[str, Any]:
        changes = {**body, **(self._meet(visit) if meet else {})}
        try:
            answer = session.patch(ident, changes, etag, meet=meet)
        except Conflict:
            # Someone edited the event in Google since we read it: read it again and apply ours over it, once.
            current = session.get(ident)
            answer = session.patch(ident, changes, current.get("etag"), meet=meet)
        self.result.updated += 1
        return answer

    def _meet(self, visit: _Visit) -> dict[str, Any]:
        return {"conferenceData": {"createRequest": {"requestId": f"lf-{self.broker_id}-{visit.appointment_id}",
                                                     "conferenceSolutionKey": {"type": "hangoutsMeet"}}}}

    def event(self, visit: _Visit) -> dict[str, Any]:
        zone = ZoneInfo(visit.timezone)
        lines = [f"Visita {KIND_LABEL.get(visit.kind, visit.kind)}",
                 f"Dirección: {visit.address}" if visit.address and visit.kind == "in_person" else None,
                 f"Teléfono: {visit.phone}" if visit.phone else None,
                 f"Agente: {visit.agent_name}" if visit.agent_name else None,
                 f"Leadflow: cita {visit.appointment_id}, lead {visit.lead_id}"]
        return {"summary": f"{PREFIX.get(visit.status, '')}Visita: {visit.lead_name}",
                "description": "\n".join(x for x in lines if x),
                **({"location": visit.address} if visit.address and visit.kind == "in_person" else {}),
                "start": {"dateTime": visit.starts_at.astimezone(zone).isoformat(), "timeZone": visit.timezone},
                "end": {"dateTime": visit.ends_at.astimezone(zone).isoformat(), "timeZone": visit.timezone},
                # Our visits block their time through the appointments table, not through freeBusy.
                "transparency": "transparent",
                "extendedProperties": {"private": {"leadflow_appointment": str(visit.appointment_id),
                                                   "leadflow_broker": str(self.broker_id)}}}

    def write(self, visit: _Visit, state: str, *, error: str | None,
              event: tuple[str | None, str | None] | None = None, owner: int | None = None,
              meet_link: str | None = None) -> None:
        """Facts about Google (event id, etag, whose calendar, link; ``meet_link=""`` clears it) are always kept;
        the state only if the visit did not change while Google was called (then it stays pending, for the next
        run)."""
        with transaction(self.url) as conn, conn.cursor() as cur:
            cur.execute("""UPDATE leadflow.appointments SET
                               calendar_state = CASE WHEN updated_at = %(seen)s THEN %(state)s ELSE calendar_state END,
                               calendar_error = %(error)s,
                               calendar_event_id = CASE WHEN %(has_event)s THEN %(event)s ELSE calendar_event_id END,
                               calendar_etag = CASE WHEN %(has_event)s THEN %(etag)s ELSE calendar_etag END,
                               calendar_owner = CASE WHEN %(has_event)s THEN %(owner)s ELSE calendar_owner END,
                               meet_link = CASE WHEN %(link)s = '' THEN NULL ELSE coalesce(%(link)s, meet_link) END
                           WHERE appointment_id = %(id)s""",
                        {"seen": visit.updated_at, "state": state, "error": error, "has_event": event is not None,
                         "event": event[0] if event else None, "etag": event[1] if event else None,
                         "owner": owner, "link": meet_link, "id": visit.appointment_id})

    # --- Google → calendar_busy ---------------------------------------------------------------------

    def read_busy(self) -> None:
        with transaction(self.url) as conn, conn.cursor() as cur:
            rules, _timezone = broker_rules(cur, self.broker_id)
        start, end = self.now, self.now + timedelta(days=rules.horizon_days + 1)
        for found in self.connections.values():
            session = self.session(found)
            if isinstance(session, str):
                continue
            try:
                busy = session.freebusy(start, end)
            except ConnectionBroken as exc:
                self.broken(found, exc)
                continue
            except GoogleError as exc:
                # The busy times read last stay: better a little stale than none.
                with transaction(self.url) as conn, conn.cursor() as cur:
                    google.record_error(cur, found, f"freeBusy: {exc}", self.now)
                continue
            with transaction(self.url) as conn, conn.cursor() as cur:
                kept = _without_our_visits(cur, self.broker_id, found.agent_key, busy)
                cur.execute("DELETE FROM leadflow.calendar_busy WHERE broker_id = %s AND agent_key = %s",
                            (self.broker_id, found.agent_key))
                if kept:
                    cur.executemany("""INSERT INTO leadflow.calendar_busy (broker_id, agent_key, starts_at, ends_at,
                                                                          fetched_at) VALUES (%s, %s, %s, %s, %s)""",
                                    [(self.broker_id, found.agent_key, s, e, self.now) for s, e in kept])
                cur.execute("""UPDATE leadflow.google_calendar_connections SET last_busy_at = %s, last_error = NULL
                               WHERE connection_id = %s""", (self.now, found.connection_id))
            self.result.busy_read += 1
            self.result.busy_intervals += len(kept)


class _Stop(Exception):
    """The visit's fate for this run is written: go on with the next one."""


@dataclass(frozen=True)
class _Visit:
    appointment_id: int
    agent_key: int
    lead_id: int
    kind: str
    address: str | None
    starts_at: datetime
    ends_at: datetime
    timezone: str
    status: str
    event_id: str | None
    etag: str | None
    meet_link: str | None
    updated_at: datetime
    calendar_owner: int | None
    lead_name: str
    phone: str | None
    agent_name: str | None


def _without_our_visits(cur: psycopg2.extensions.cursor, broker_id: int, agent_key: int,
                        busy: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    cur.execute("""SELECT starts_at, ends_at FROM leadflow.appointments
                   WHERE broker_id = %s AND agent_key = %s AND status IN ('proposed', 'confirmed')""",
                (broker_id, agent_key))
    ours = set(cur.fetchall())
    return [(s, e) for s, e in busy if (s, e) not in ours]


def _video_link(event: dict[str, Any]) -> str | None:
    for entry in (event.get("conferenceData") or {}).get("entryPoints") or ():
        if isinstance(entry, dict) and entry.get("entryPointType") == "video" and entry.get("uri"):
            return str(entry["uri"])
    return None


def _meet(link: object) -> str | None:
    """Only a Google Meet address is kept: the link goes to leads, and whoever edits the event in Google could
    otherwise point them anywhere."""
    return link if isinstance(link, str) and link.startswith("https://meet.google.com/") else None
