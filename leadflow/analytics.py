"""When the analytics are stale: a watermark of everything the dbt models read that grows or changes."""

from __future__ import annotations

from leadflow.db.connection import transaction


def data_watermark(url: str) -> str:
    """Changes whenever messages land, leads change, stages move or campaign sends progress."""
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("""
            SELECT concat_ws(':',
                (SELECT max(message_id) FROM leadflow.raw_messages),
                (SELECT max(changed_at) FROM leadflow.leads),
                (SELECT max(stage_event_id) FROM leadflow.stage_events),
                (SELECT max(updated_at) FROM leadflow.outbound_sends))""")
        row = cur.fetchone()
    return str(row[0]) if row else ""
