"""Who takes visits and when: each person's row of ``leadflow.agent_schedules`` (takes visits, own hours or the
broker's, days off), as the broker's admins set it.

Written as the owner (the reports role only reads these rows), so every function checks first: an ADMIN of the
broker or a SUPERADMIN sets anything of anyone of it; a person (an AGENT too) sets only their own days off, which
never makes them take visits they did not take. Each change is one ``audit_log`` entry in the same transaction.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import psycopg2.extensions

from leadflow.appointments.rules import RulesError, hours_json, parse_hours
from reports_api.admin import audit
from reports_api.admin.access import Forbidden, Invalid, NotFound, require_admin_of
from reports_api.security import Principal

MAX_DAYS_OFF = 366


def _person(cur: psycopg2.extensions.cursor, broker_id: int, user_id: int) -> dict[str, Any]:
    cur.execute("""SELECT u.user_id, u.display_name, u.email, u.role, s.takes_visits, s.hours, s.blocked
                   FROM leadflow.users u LEFT JOIN leadflow.agent_schedules s USING (user_id)
                   WHERE u.user_id = %s AND u.broker_id = %s AND u.role IN ('ADMIN', 'AGENT') AND NOT u.disabled""",
                (user_id, broker_id))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"user {user_id} is not an active person of broker {broker_id}", "user_id")
    return _row(row)


def _row(row: Any) -> dict[str, Any]:
    user_id, name, email, role, takes, hours, blocked = row
    return {"user_id": int(user_id), "display_name": name, "email": email, "role": role,
            "listed": takes is not None, "takes_visits": bool(takes),
            "hours": hours, "days_off": sorted(blocked or [])}


def people(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int) -> list[dict[str, Any]]:
    """The broker's active ADMINs and AGENTs with their visiting schedule (``listed`` False: no row yet, so they
    take no visits; a broker with nobody listed books on its own calendar)."""
    require_admin_of(who, broker_id)
    cur.execute("""SELECT u.user_id, u.display_name, u.email, u.role, s.takes_visits, s.hours, s.blocked
                   FROM leadflow.users u LEFT JOIN leadflow.agent_schedules s USING (user_id)
                   WHERE u.broker_id = %s AND u.role IN ('ADMIN', 'AGENT') AND NOT u.disabled
                   ORDER BY u.display_name, u.user_id""", (broker_id,))
    return [_row(r) for r in cur.fetchall()]


def own(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int) -> dict[str, Any] | None:
    """The caller's own schedule (None for a SUPERADMIN, who belongs to no broker)."""
    if who.broker_id != broker_id or who.role == "SUPERADMIN":
        return None
    return _person(cur, broker_id, who.user_id)


def _days(days_off: list[date]) -> list[date]:
    if len(days_off) > MAX_DAYS_OFF:
        raise Invalid(f"at most {MAX_DAYS_OFF} days off", "days_off")
    return sorted(set(days_off))


def _stored(person: dict[str, Any]) -> dict[str, Any]:
    return {"takes_visits": person["takes_visits"] if person["listed"] else None, "hours": person["hours"],
            "days_off": [d.isoformat() for d in person["days_off"]]}


def save(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, user_id: int, *, takes_visits: bool,
         hours: Any, days_off: list[date]) -> dict[str, Any]:
    """Set a person's schedule (an ADMIN of the broker or a SUPERADMIN): ``hours`` None keeps to the broker's
    hours, else ``{"mon": [{"start": "09:00", "end": "13:00"}], …}`` (a day left out is not worked)."""
    require_admin_of(who, broker_id)
    person = _person(cur, broker_id, user_id)
    own_hours = None
    if hours is not None:
        try:
            own_hours = hours_json(parse_hours(hours))
        except RulesError as exc:
            raise Invalid(f"hours: {exc}", "hours") from exc
    days = _days(days_off)
    cur.execute("""INSERT INTO leadflow.agent_schedules (user_id, broker_id, takes_visits, hours, blocked, updated_at)
                   VALUES (%s, %s, %s, %s, %s, now())
                   ON CONFLICT (user_id) DO UPDATE SET takes_visits = EXCLUDED.takes_visits, hours = EXCLUDED.hours,
                       blocked = EXCLUDED.blocked, updated_at = now()""",
                (user_id, broker_id, takes_visits, None if own_hours is None else json.dumps(own_hours),
                 days))
    after = _person(cur, broker_id, user_id)
    if _stored(after) != _stored(person):
        audit.record(cur, broker_id, who.user_id, "schedule.person", {"user_id": user_id, **_stored(person)},
                     {"user_id": user_id, **_stored(after)})
    return after


def save_days_off(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, user_id: int,
                  days_off: list[date]) -> dict[str, Any]:
    """A person's days off: their own (any role), or anyone's of the broker for its admins."""
    if not (who.user_id == user_id and who.broker_id == broker_id and who.role in ("ADMIN", "AGENT")):
        if who.role == "AGENT":
            raise Forbidden("a person sets only their own days off")
        require_admin_of(who, broker_id)
    person = _person(cur, broker_id, user_id)
    days = _days(days_off)
    # A person with no row takes no visits: setting days off must not change that.
    cur.execute("""INSERT INTO leadflow.agent_schedules (user_id, broker_id, takes_visits, blocked, updated_at)
                   VALUES (%s, %s, false, %s, now())
                   ON CONFLICT (user_id) DO UPDATE SET blocked = EXCLUDED.blocked, updated_at = now()""",
                (user_id, broker_id, days))
    after = _person(cur, broker_id, user_id)
    if after["days_off"] != person["days_off"]:
        audit.record(cur, broker_id, who.user_id, "schedule.days_off",
                     {"user_id": user_id, "days_off": [d.isoformat() for d in person["days_off"]]},
                     {"user_id": user_id, "days_off": [d.isoformat() for d in after["days_off"]]})
    return after
