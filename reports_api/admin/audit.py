"""The audit of the admin writes, in the same ``leadflow.audit_log`` the workspace appends to, and its reading.

Written as the owner in the write's own transaction, so an entry exists exactly when the write does. What
goes in ``before``/``after`` passes through ``person`` or is built from plain broker fields: never a password
hash or an invitation token.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg2.extensions

MAX_PAGE = 200
# The only account fields an audit entry may hold.
PERSON_FIELDS = ("user_id", "email", "display_name", "role", "disabled")


def person(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in PERSON_FIELDS if key in row}


def record(cur: psycopg2.extensions.cursor, broker_id: int, actor_id: int, action: str,
           before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    cur.execute("""INSERT INTO leadflow.audit_log (broker_id, user_id, action, before, after)
                   VALUES (%s, %s, %s, %s, %s)""",
                (broker_id, actor_id, action, None if before is None else json.dumps(before),
                 None if after is None else json.dumps(after)))


def entries(cur: psycopg2.extensions.cursor, broker_id: int, before_id: int | None,
            limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """The broker's entries newest first, older than ``before_id`` when given; and the ``before_id`` of the
    next page (None on the last)."""
    cur.execute("""SELECT a.audit_id, a.at, a.action, a.lead_id, a.user_id, u.display_name, u.email,
                          a.before, a.after
                   FROM leadflow.audit_log a LEFT JOIN leadflow.users u ON u.user_id = a.user_id
                   WHERE a.broker_id = %s AND (%s::bigint IS NULL OR a.audit_id < %s)
                   ORDER BY a.audit_id DESC LIMIT %s""", (broker_id, before_id, before_id, limit + 1))
    rows = cur.fetchall()
    found = [{"audit_id": int(r[0]), "at": _when(r[1]), "action": str(r[2]),
              "lead_id": None if r[3] is None else int(r[3]), "user_id": None if r[4] is None else int(r[4]),
              "user_name": r[5], "user_email": r[6], "before": r[7], "after": r[8]} for r in rows[:limit]]
    return found, (found[-1]["audit_id"] if len(rows) > limit else None)


def _when(value: Any) -> datetime:
    assert isinstance(value, datetime)
    return value
