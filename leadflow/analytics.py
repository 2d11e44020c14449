"""Around the dbt marts: when they are stale, and the funnel totals read from them."""

from __future__ import annotations

from typing import Any

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


def stage_totals_sql(group: str = "") -> str:
    """SQL over a CTE named ``periods`` (rows of a funnel mart): per stage (and per ``group``), the counts
    summed over the periods and the rates those sums give. Medians do not add up, so none is given."""
    by = f"{group}, " if group else ""
    return f"""
        SELECT {by}stage, stage_name, stage_position,
               sum(leads_entered)::bigint AS leads_entered, sum(leads_advanced)::bigint AS leads_advanced,
               sum(leads_won)::bigint AS leads_won, sum(leads_stalled)::bigint AS leads_stalled,
               round(sum(leads_advanced) / nullif(sum(leads_entered), 0), 4)::float8 AS conversion_to_next,
               round(sum(leads_won) / nullif(sum(leads_entered), 0), 4)::float8 AS conversion_to_won,
               round(sum(leads_entered) / nullif(max(sum(leads_entered)) FILTER (WHERE stage = 'entrada')
                                                 OVER ({f"PARTITION BY {group}" if group else ""}), 0), 4)::float8
                   AS share_of_entries
        FROM periods
        GROUP BY {by}stage, stage_name, stage_position"""


def funnel_totals(url: str, broker_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each broker's funnel over all time, from the daily mart (what `make demo` prints)."""
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute(f"""
            WITH periods AS (
                SELECT * FROM marts.fct_funnel_daily
                WHERE broker_id = ANY(%s) AND channel = 'all' AND source = 'all' AND campaign = 'all')
            {stage_totals_sql("broker_id")}
            ORDER BY broker_id, stage_position""", (broker_ids,))
        names = [d[0] for d in cur.description or []]
        found = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    return {broker: [r for r in found if r["broker_id"] == broker] for broker in broker_ids}
