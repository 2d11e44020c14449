"""New leads → their person, by each broker's automatic assignment (``leadflow.leads.assignment``).

Only leads nobody ever assigned: live, unassigned, newer than the moment the broker switched assignment on,
and without any ``lead.assign`` audit entry (a person who assigned or unassigned a lead by hand has
decided; the job never overrides it). Every automatic assignment is audited with no person and says how
it was made. One run at a time (an advisory lock); a lead a person is assigning right now is skipped
(``SKIP LOCKED``) and, audited by then, never picked up; the unique index on automatic audit entries is the
last word if two runs ever overlapped anyway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import psycopg2.extensions
from pydantic import ValidationError

from leadflow.db.connection import transaction
from leadflow.leads.assignment import LEAD_SCHEMA, PEOPLE_SCHEMA, AssignmentConfig, choose

_LOCK = 7_240_005  # pg_advisory_xact_lock key of this step


@dataclass
class AssignResult:
    candidates: int = 0
    assigned: int = 0
    left_unassigned: int = 0
    by_how: dict[str, int] = field(default_factory=dict)
    invalid_configs: list[int] = field(default_factory=list)  # brokers whose stored config no longer validates


def configs(cur: psycopg2.extensions.cursor) -> tuple[dict[int, tuple[AssignmentConfig, int]], list[int]]:
    """Each broker's config that is on, with the lead id it applies after; and the brokers whose config is invalid."""
    cur.execute("""SELECT broker_id, config, applies_after_lead_id FROM leadflow.assignment_settings
                   WHERE config ->> 'mode' IS DISTINCT FROM 'off'""")
    found: dict[int, tuple[AssignmentConfig, int]] = {}
    invalid: list[int] = []
    for broker_id, config, after in cur.fetchall():
        try:
            found[int(broker_id)] = AssignmentConfig.model_validate(config), int(after)
        except ValidationError:
            invalid.append(int(broker_id))  # saved by an older version: skipped, not a failed run
    return found, invalid


def assign_new_leads(url: str, max_leads: int = 10_000) -> AssignResult:
    """Give every new, never-assigned lead of a broker with assignment on to its person; audited."""
    result = AssignResult()
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        settings, result.invalid_configs = configs(cur)
        if not settings:
            return result
        brokers = sorted(settings)
        after = [settings[b][1] for b in brokers]
        cur.execute("""
            WITH scope AS (SELECT * FROM unnest(%s::bigint[], %s::bigint[]) AS s(broker_id, after_lead))
            SELECT l.broker_id, l.lead_id,
                   coalesce((SELECT m.channel FROM leadflow.message_leads ml
                             JOIN leadflow.raw_messages m USING (message_id)
                             WHERE ml.lead_id = l.lead_id AND m.direction = 'inbound'
                             ORDER BY m.sent_at, m.message_id LIMIT 1), l.channels[1]),
                   coalesce(q.locations, '{}')
            FROM leadflow.leads l JOIN scope s ON s.broker_id = l.broker_id AND l.lead_id > s.after_lead
            LEFT JOIN leadflow.lead_qualifications q ON q.lead_id = l.lead_id
            WHERE l.merged_into IS NULL AND l.assigned_user_id IS NULL
              AND NOT EXISTS (SELECT 1 FROM leadflow.audit_log a WHERE a.lead_id = l.lead_id
                              AND a.action = 'lead.assign')
            ORDER BY l.lead_id LIMIT %s
            FOR UPDATE OF l SKIP LOCKED""", (brokers, after, max_leads))
        leads = pl.DataFrame(cur.fetchall(), schema=LEAD_SCHEMA, orient="row")
        result.candidates = leads.height
        if leads.is_empty():
            return result
        cur.execute("""SELECT broker_id, user_id, role, display_name FROM leadflow.users
                       WHERE broker_id = ANY(%s) AND role IN ('ADMIN', 'AGENT') AND NOT disabled
                         AND removed_at IS NULL""", (brokers,))
        people = pl.DataFrame(cur.fetchall(), schema=PEOPLE_SCHEMA, orient="row")
        cur.execute("SELECT broker_id, pool, last_user_id FROM leadflow.assignment_cursors WHERE broker_id = ANY(%s) "
                    "FOR UPDATE", (brokers,))
        cursors = {(int(b), str(p)): int(u) for b, p, u in cur.fetchall()}
        chosen = choose(leads, people, {b: c for b, (c, _) in settings.items()}, cursors)
        result.left_unassigned = len(chosen.unassigned)
        _write(cur, chosen.assigned, chosen.cursors, result)
    return result


def _write(cur: psycopg2.extensions.cursor, assigned: pl.DataFrame, cursors: dict[tuple[int, str], int],
           result: AssignResult) -> None:
    if assigned.is_empty():
        return
    audit_rows: list[tuple[Any, ...]] = []
    for broker_id, lead_id, user_id, how in assigned.iter_rows():
        # The audit entry first: its unique index is what refuses a second automatic assignment.
        cur.execute("""INSERT INTO leadflow.audit_log (broker_id, user_id, action, lead_id, before, after)
                       VALUES (%s, NULL, 'lead.assign', %s, %s, %s)
                       ON CONFLICT (lead_id) WHERE action = 'lead.assign' AND user_id IS NULL DO NOTHING
                       RETURNING audit_id""",
                    (broker_id, lead_id, json.dumps({"assigned_user_id": None}),
                     json.dumps({"assigned_user_id": user_id, "by": how})))
        if cur.fetchone() is None:
            continue
        audit_rows.append((lead_id, user_id))
        result.by_how[how] = result.by_how.get(how, 0) + 1
    if audit_rows:
        cur.execute("""UPDATE leadflow.leads l SET assigned_user_id = v.user_id
                       FROM unnest(%s::bigint[], %s::bigint[]) AS v(lead_id, user_id)
                       WHERE l.lead_id = v.lead_id AND l.assigned_user_id IS NULL""",
                    ([lead for lead, _ in audit_rows], [user for _, user in audit_rows]))
        result.assigned = cur.rowcount
    for (broker_id, pool), user_id in cursors.items():
        cur.execute("""INSERT INTO leadflow.assignment_cursors (broker_id, pool, last_user_id) VALUES (%s, %s, %s)
                       ON CONFLICT (broker_id, pool) DO UPDATE SET last_user_id = EXCLUDED.last_user_id,
                           updated_at = now()""", (broker_id, pool, user_id))
