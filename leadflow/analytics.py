"""Around the dbt marts: when they are stale, and the funnel totals read from them."""

from __future__ import annotations

from typing import Any

from leadflow.db.connection import transaction

COUNTS = ("leads_entered", "leads_advanced", "leads_won", "leads_stalled")


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


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def stage_totals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sum of the counts per stage, in pipeline order, with the rates those sums give."""
    totals: dict[str, dict[str, Any]] = {}
    for row in rows:
        total = totals.setdefault(row["stage"], {"stage": row["stage"], "stage_name": row["stage_name"],
                                                 "stage_position": row["stage_position"],
                                                 **dict.fromkeys(COUNTS, 0)})
        for count in COUNTS:
            total[count] += row[count]
    ordered = sorted(totals.values(), key=lambda t: t["stage_position"])
    entered_first = ordered[0]["leads_entered"] if ordered and ordered[0]["stage"] == "entrada" else 0
    for total in ordered:
        total["conversion_to_next"] = rate(total["leads_advanced"], total["leads_entered"])
        total["conversion_to_won"] = rate(total["leads_won"], total["leads_entered"])
        total["share_of_entries"] = rate(total["leads_entered"], entered_first)
    return ordered


def funnel_totals(url: str, broker_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each broker's funnel over all time, from the daily mart (what `make demo` prints)."""
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("""
            SELECT broker_id, stage, stage_name, stage_position, leads_entered, leads_advanced, leads_won,
                   leads_stalled
            FROM marts.fct_funnel_daily
            WHERE broker_id = ANY(%s) AND channel = 'all' AND source = 'all' AND campaign = 'all'""", (broker_ids,))
        names = [d[0] for d in cur.description or []]
        found = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    return {broker: stage_totals([r for r in found if r["broker_id"] == broker]) for broker in broker_ids}
