"""Merges an operator can inspect and undo, and leads kept apart.

Identity resolution merges two leads when a message names identities of both (a shared phone, a
stated email). Sometimes that is wrong — a family sharing a phone, a typo in a stated email. Each
merge recorded the identities and messages it moved (``lead_merges``), so undoing it moves exactly
those back, revives the merged lead and records the pair in ``lead_separations``, which identity
resolution honours from then on: the two are never merged again. Both leads are marked changed, so
the next run re-qualifies and re-scores them from their own messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from leadflow.db.connection import transaction
from leadflow.leads.store.identities import LOCK_LEADS, refresh_leads


class MergeError(ValueError):
    """The merge or leads named cannot be undone or kept apart; the message says why."""


@dataclass(frozen=True)
class Merge:
    merge_id: int
    broker_id: int
    merged_lead_id: int
    into_lead_id: int
    reason: str
    identities: int
    messages: int
    merged_at: datetime
    undone_at: datetime | None


def list_merges(url: str, broker_id: int | None = None) -> list[Merge]:
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("""
            SELECT merge_id, broker_id, merged_lead_id, into_lead_id, reason, jsonb_array_length(moved_identities),
                   cardinality(moved_message_ids), merged_at, undone_at
            FROM leadflow.lead_merges WHERE %(broker)s::bigint IS NULL OR broker_id = %(broker)s
            ORDER BY merge_id""", {"broker": broker_id})
        return [Merge(*row) for row in cur.fetchall()]


def _keep_apart(cur: Any, broker_id: int, lead_a: int, lead_b: int, reason: str) -> None:
    low, high = sorted((lead_a, lead_b))
    cur.execute("""
        INSERT INTO leadflow.lead_separations (broker_id, lead_a, lead_b, reason) VALUES (%s, %s, %s, %s)
        ON CONFLICT (lead_a, lead_b) DO NOTHING""", (broker_id, low, high, reason))


def keep_apart(url: str, lead_a: int, lead_b: int, reason: str = "kept apart by an operator") -> None:
    """Never merge these two leads (of one broker), whatever later messages name."""
    if lead_a == lead_b:
        raise MergeError("a lead cannot be kept apart from itself")
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT lead_id, broker_id, merged_into FROM leadflow.leads WHERE lead_id = ANY(%s)",
                    ([lead_a, lead_b],))
        found = {lead: (broker, merged_into) for lead, broker, merged_into in cur.fetchall()}
        for lead in (lead_a, lead_b):
            if lead not in found:
                raise MergeError(f"lead {lead} does not exist")
        if found[lead_a][0] != found[lead_b][0]:
            raise MergeError("the leads belong to different brokers; leads of two brokers are never merged anyway")
        if found[lead_a][1] == lead_b or found[lead_b][1] == lead_a:
            raise MergeError("the leads are already merged: undo that merge (leadflow leads unmerge MERGE_ID)")
        _keep_apart(cur, found[lead_a][0], lead_a, lead_b, reason)


def unmerge(url: str, merge_id: int) -> Merge:
    """Undo one merge: move back what it moved, revive the merged lead and keep the two apart."""
    with transaction(url) as conn, conn.cursor() as cur:
        # Identity resolution must not run halfway through this.
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_LEADS,))
        cur.execute("""
            SELECT broker_id, merged_lead_id, into_lead_id, moved_identities, moved_message_ids, undone_at
            FROM leadflow.lead_merges WHERE merge_id = %s FOR UPDATE""", (merge_id,))
        row = cur.fetchone()
        if row is None:
            raise MergeError(f"there is no merge {merge_id}")
        broker_id, merged, into, identities, message_ids, undone_at = row
        if undone_at is not None:
            raise MergeError(f"merge {merge_id} was already undone at {undone_at:%Y-%m-%d %H:%M}")
        cur.execute("SELECT 1 FROM leadflow.lead_merges WHERE merged_lead_id = %s AND undone_at IS NULL "
                    "AND merge_id > %s", (into, merge_id))
        if cur.fetchone():
            raise MergeError(f"lead {into} was itself merged later: undo that merge first")
        for kind, value in identities:
            cur.execute("""UPDATE leadflow.lead_identities SET lead_id = %s,
                               reason = reason || ' (back from lead ' || lead_id || ', merge ' || %s || ' undone)'
                           WHERE broker_id = %s AND identity_kind = %s AND identity_value = %s""",
                        (merged, merge_id, broker_id, kind, value))
        cur.execute("UPDATE leadflow.message_leads SET lead_id = %s WHERE message_id = ANY(%s)",
                    (merged, list(message_ids)))
        cur.execute("UPDATE leadflow.leads SET merged_into = NULL WHERE lead_id = %s", (merged,))
        # Both conversations changed: their qualifications and scores are redone from their own messages.
        for table in ("lead_scores", "lead_qualifications"):
            cur.execute(f"DELETE FROM leadflow.{table} WHERE lead_id = ANY(%s)", ([merged, into],))
        refresh_leads(cur, [merged, into])
        cur.execute("UPDATE leadflow.leads SET changed_at = now() WHERE lead_id = ANY(%s)", ([merged, into],))
        cur.execute("UPDATE leadflow.lead_merges SET undone_at = now() WHERE merge_id = %s", (merge_id,))
        _keep_apart(cur, broker_id, merged, into, f"merge {merge_id} undone")
    return next(m for m in list_merges(url, broker_id) if m.merge_id == merge_id)
