"""Visits: a campaign proposes one, the lead says yes, it goes into the broker's Google Calendar.

A visit step's message carries a proposed slot (``payload.visit``). When the lead's first reply after
it accepts ("sí", "me acomoda", "perfecto" — not "no puedo"), the visit is recorded, an event is
inserted in the broker's calendar and the lead moves to the pipeline's ``agendado`` stage. A calendar
outage leaves the visit ``accepted`` and it is retried by the next batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from leadflow.db.connection import transaction
from leadflow.leads.stages import DEFAULT_PIPELINE, Pipeline, accepts_visit
from leadflow.leads.store.stages import move_lead_forward
from leadflow.outbound.errors import Rejected, RetryLater

SCHEDULED_STAGE = "agendado"


class Calendar(Protocol):
    def insert(self, broker_slug: str, event: dict[str, Any]) -> str: ...


def proposed_slot(now: datetime, timezone: str, hour: int = 11) -> datetime:
    """The next day at ``hour`` in the broker's timezone (Sunday moves to Monday)."""
    local = now.astimezone(ZoneInfo(timezone)) + timedelta(days=1)
    if local.weekday() == 6:
        local += timedelta(days=1)
    return local.replace(hour=hour, minute=0, second=0, microsecond=0)


def describe_slot(start: datetime) -> str:
    days = ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"]
    return f"el {days[start.weekday()]} {start:%d/%m} a las {start:%H:%M}"


@dataclass
class VisitResult:
    accepted: int = 0
    scheduled: int = 0
    failed: dict[str, int] = field(default_factory=dict)


def schedule_accepted_visits(url: str, calendar: Calendar, now: datetime) -> VisitResult:
    result = VisitResult()
    with transaction(url) as conn, conn.cursor() as cur:
        # Proposals whose first reply accepts them, not yet recorded.
        cur.execute("""
            SELECT s.send_id, s.broker_id, s.lead_id, s.payload, r.body, r.sent_at
            FROM leadflow.outbound_sends s
            CROSS JOIN LATERAL (
                SELECT m.body, m.sent_at FROM leadflow.message_leads ml JOIN leadflow.raw_messages m USING (message_id)
                WHERE ml.lead_id = s.lead_id AND m.direction = 'inbound' AND m.sent_at > s.sent_at
                ORDER BY m.sent_at LIMIT 1) r
            WHERE s.action = 'visit' AND s.sent_at IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM leadflow.visits v WHERE v.send_id = s.send_id)""")
        for send_id, broker_id, lead_id, payload, reply, replied_at in cur.fetchall():
            visit = (payload or {}).get("visit") or {}
            if not accepts_visit(reply or "") or not visit.get("start"):
                continue
            start = datetime.fromisoformat(visit["start"])
            cur.execute("""INSERT INTO leadflow.visits (send_id, broker_id, lead_id, starts_at, ends_at, accepted_at,
                                                         status) VALUES (%s, %s, %s, %s, %s, %s, 'accepted')""",
                        (send_id, broker_id, lead_id, start, start + timedelta(minutes=int(visit.get("minutes", 60))),
                         replied_at))
            result.accepted += 1
    _put_in_calendars(url, calendar, now, result)
    return result


def _put_in_calendars(url: str, calendar: Calendar, now: datetime, result: VisitResult) -> None:
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("""
            SELECT v.send_id, v.broker_id, b.slug, b.timezone, v.lead_id, v.starts_at, v.ends_at,
                   coalesce(q.name, l.display_name, 'lead ' || v.lead_id), l.phone_e164, q.summary, bs.pipeline
            FROM leadflow.visits v JOIN leadflow.brokers b USING (broker_id) JOIN leadflow.leads l USING (lead_id)
            LEFT JOIN leadflow.lead_qualifications q USING (lead_id)
            LEFT JOIN leadflow.broker_settings bs ON bs.broker_id = v.broker_id
            WHERE v.status = 'accepted' FOR UPDATE OF v""")
        for send_id, broker_id, slug, tz, lead_id, starts, ends, name, phone, summary, pipeline in cur.fetchall():
            event = {"summary": f"Visita: {name}",
                     "description": "\n".join(x for x in (summary, f"Teléfono: {phone}" if phone else None,
                                                          f"Leadflow lead {lead_id}") if x),
                     "start": {"dateTime": starts.astimezone(ZoneInfo(tz)).isoformat(), "timeZone": tz},
                     "end": {"dateTime": ends.astimezone(ZoneInfo(tz)).isoformat(), "timeZone": tz}}
            try:
                event_id = calendar.insert(slug, event)
            except RetryLater as exc:
                result.failed[str(exc)] = result.failed.get(str(exc), 0) + 1
                cur.execute("UPDATE leadflow.visits SET reason = %s, updated_at = now() WHERE send_id = %s",
                            (str(exc), send_id))
                continue
            except Rejected as exc:
                result.failed[str(exc)] = result.failed.get(str(exc), 0) + 1
                cur.execute("UPDATE leadflow.visits SET status = 'failed', reason = %s, updated_at = now() "
                            "WHERE send_id = %s", (str(exc), send_id))
                continue
            cur.execute("UPDATE leadflow.visits SET status = 'scheduled', calendar_event_id = %s, reason = NULL, "
                        "updated_at = now() WHERE send_id = %s", (event_id, send_id))
            result.scheduled += 1
            stages = Pipeline.from_settings(pipeline) if pipeline else DEFAULT_PIPELINE
            if SCHEDULED_STAGE in {s.code for s in stages.stages}:
                move_lead_forward(cur, broker_id, lead_id, SCHEDULED_STAGE, stages, now,
                                  f"visit accepted (send {send_id}), in the calendar", automatic=True)
