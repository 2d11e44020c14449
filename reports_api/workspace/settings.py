"""A broker's automatic assignment settings, read and written by the reports role (migration 0020's policies:
the broker's people read them, its ADMIN or a SUPERADMIN writes them, signed).

The config itself is ``leadflow.leads.assignment.AssignmentConfig``; the leads job applies it
(``leadflow.leads.store.assignment``). Saving checks that every person a rule names is an active ADMIN or
AGENT of this broker, so a config can never hand leads to someone of another broker.
"""

from __future__ import annotations

from typing import Any

import psycopg2.extensions

from leadflow.leads.assignment import AssignmentConfig
from reports_api.workspace.db import Invalid, audit


def assignment(cur: psycopg2.extensions.cursor, broker_id: int) -> dict[str, Any]:
    """The broker's config (``off`` when never saved), who saved it and when."""
    cur.execute("""SELECT s.config, s.applies_after_lead_id, s.updated_at, s.updated_by, u.display_name
                   FROM leadflow.assignment_settings s LEFT JOIN leadflow.users u ON u.user_id = s.updated_by
                   WHERE s.broker_id = %s""", (broker_id,))
    row = cur.fetchone()
    if row is None:
        return {"config": AssignmentConfig(), "applies_after_lead_id": None, "updated_at": None,
                "updated_by": None, "updated_by_name": None}
    return {"config": AssignmentConfig.model_validate(row[0]), "applies_after_lead_id": row[1], "updated_at": row[2],
            "updated_by": row[3], "updated_by_name": row[4]}


def save_assignment(cur: psycopg2.extensions.cursor, broker_id: int, config: AssignmentConfig) -> dict[str, Any]:
    """Store ``config`` for the broker (audited). Invalid, with nothing written, when a rule names someone who
    is not an active person of the broker. Switching assignment on applies it to leads that arrive from now."""
    named = sorted(config.people())
    if named:
        cur.execute("""SELECT user_id FROM leadflow.users
                       WHERE user_id = ANY(%s) AND broker_id = %s AND role IN ('ADMIN', 'AGENT') AND NOT disabled
                         AND removed_at IS NULL""", (named, broker_id))
        active = {int(r[0]) for r in cur.fetchall()}
        missing = [p for p in named if p not in active]
        if missing:
            raise Invalid(f"user {', '.join(map(str, missing))} {'is' if len(missing) == 1 else 'are'} not an active "
                          f"person of broker {broker_id}; a rule can only name this broker's ADMINs and AGENTs")
    cur.execute("""SELECT config, applies_after_lead_id FROM leadflow.assignment_settings WHERE broker_id = %s
                   FOR UPDATE""", (broker_id,))
    before = cur.fetchone()
    was_on = before is not None and (before[0] or {}).get("mode", "off") != "off"
    if was_on and before is not None:
        applies_after = int(before[1])
    else:
        cur.execute("SELECT coalesce(max(lead_id), 0) FROM leadflow.leads WHERE broker_id = %s", (broker_id,))
        found = cur.fetchone()
        applies_after = int(found[0]) if found else 0
    stored = config.model_dump(mode="json")
    cur.execute("""INSERT INTO leadflow.assignment_settings (broker_id, config, applies_after_lead_id)
                   VALUES (%s, %s::jsonb, %s)
                   ON CONFLICT (broker_id) DO UPDATE SET config = EXCLUDED.config,
                       applies_after_lead_id = EXCLUDED.applies_after_lead_id,
                       updated_by = EXCLUDED.updated_by, updated_at = now()""",
                (broker_id, AssignmentConfig.model_validate(stored).model_dump_json(), applies_after))
    audit(cur, broker_id, "settings.assignment", None,
          None if before is None else {"config": before[0], "applies_after_lead_id": before[1]},
          {"config": stored, "applies_after_lead_id": applies_after})
    return assignment(cur, broker_id)
