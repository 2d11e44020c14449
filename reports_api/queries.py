"""What the reports show, read on a cursor already scoped to one broker (``reports_api.scope``).

Every query still names its broker: row security is the guarantee, the filter is what lets
PostgreSQL use the broker's indexes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import psycopg2.extensions

from leadflow.analytics import stage_totals_sql
from leadflow.campaigns.outcomes import read_campaign_stats

Grain = Literal["day", "week"]
Dimension = Literal["channel", "source", "campaign"]
ALL = "all"
FUNNEL_MARTS: dict[Grain, str] = {"day": "marts.fct_funnel_daily", "week": "marts.fct_funnel_weekly"}


@dataclass(frozen=True)
class FunnelFilter:
    start: date
    end: date
    grain: Grain = "week"
    channel: str = ALL
    source: str = ALL
    campaign: str = ALL


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _rows(cur: psycopg2.extensions.cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def broker(cur: psycopg2.extensions.cursor, broker_id: int) -> dict[str, Any] | None:
    cur.execute("SELECT broker_id, slug, name, country, timezone FROM leadflow.brokers WHERE broker_id = %s",
                (broker_id,))
    found = _rows(cur)
    return found[0] if found else None


def brokers(cur: psycopg2.extensions.cursor) -> list[dict[str, Any]]:
    cur.execute("SELECT broker_id, slug, name, country, timezone FROM leadflow.brokers ORDER BY name")
    return _rows(cur)


def funnel_json(cur: psycopg2.extensions.cursor, broker_id: int, f: FunnelFilter) -> str:
    """The funnel answer as JSON, built by PostgreSQL: the filter, the mart's rows per period and stage,
    and the range's totals per stage. The endpoint passes it through without touching a row in Python."""
    period_start = "date_trunc('week', %(start)s::date)::date" if f.grain == "week" else "%(start)s::date"
    cur.execute(f"""
        WITH periods AS (
            SELECT period_start, stage, stage_name, stage_position, leads_entered, leads_advanced, leads_won,
                   leads_now, leads_stalled, median_days_in_stage, conversion_to_next, conversion_to_won
            FROM {FUNNEL_MARTS[f.grain]}
            WHERE broker_id = %(broker)s AND channel = %(channel)s AND source = %(source)s
              AND campaign = %(campaign)s AND period_start BETWEEN {period_start} AND %(end)s
        ), totals AS ({stage_totals_sql()})
        SELECT json_build_object(
            'broker_id', %(broker)s, 'start', %(start)s::date, 'end', %(end)s::date, 'grain', %(grain)s,
            'channel', %(channel)s, 'source', %(source)s, 'campaign', %(campaign)s,
            'stages', coalesce((SELECT json_agg(t ORDER BY t.stage_position) FROM totals t), '[]'),
            'periods', coalesce((SELECT json_agg(p ORDER BY p.period_start, p.stage_position) FROM periods p), '[]')
        )::text""", {"broker": broker_id, "grain": f.grain, "channel": f.channel, "source": f.source,
                     "campaign": f.campaign, "start": f.start, "end": f.end})
    row = cur.fetchone()
    assert row is not None
    return str(row[0])


def conversion_by(cur: psycopg2.extensions.cursor, broker_id: int, dimension: Dimension, start: date,
                  end: date) -> list[dict[str, Any]]:
    """Per value of one dimension (the other two rolled up): leads per stage, won, entry-to-won rate."""
    others = [d for d in ("channel", "source", "campaign") if d != dimension]
    cur.execute(f"""
        WITH periods AS (
            SELECT f.{dimension} AS value, f.* FROM marts.fct_funnel_daily f
            WHERE f.broker_id = %(broker)s AND f.{dimension} <> 'all' AND f.{others[0]} = 'all'
              AND f.{others[1]} = 'all' AND f.period_start BETWEEN %(start)s AND %(end)s)
        {stage_totals_sql("value")}
        ORDER BY value, stage_position""", {"broker": broker_id, "start": start, "end": end})
    by_value: dict[str, list[dict[str, Any]]] = {}
    for row in _rows(cur):
        by_value.setdefault(row.pop("value"), []).append(row)
    names = campaign_names(cur, broker_id) if dimension == "campaign" else {}
    result = []
    for value, stages in by_value.items():
        entered = stages[0]["leads_entered"] if stages[0]["stage"] == "entrada" else 0
        won = max(s["leads_won"] for s in stages)
        label = names.get(value, "sin campaña" if value == "none" else value)
        result.append({"value": value, "label": label, "leads_entered": entered, "leads_won": won,
                       "conversion_to_won": rate(won, entered), "stages": stages})
    return sorted(result, key=lambda r: (-r["leads_entered"], r["value"]))


def campaign_names(cur: psycopg2.extensions.cursor, broker_id: int) -> dict[str, str]:
    cur.execute("SELECT campaign_id::text, name FROM leadflow.campaigns WHERE broker_id = %s", (broker_id,))
    return dict(cur.fetchall())


def cohorts(cur: psycopg2.extensions.cursor, broker_id: int, start: date, end: date) -> list[dict[str, Any]]:
    """Per first-contact week: the cohort's size and how many of it reached each stage."""
    cur.execute("""
        SELECT cohort_week, stage, stage_name, stage_position, leads_in_cohort, leads_reached, share_reached
        FROM marts.fct_cohorts_weekly
        WHERE broker_id = %s AND cohort_week BETWEEN date_trunc('week', %s::date)::date AND %s
        ORDER BY cohort_week, stage_position""", (broker_id, start, end))
    weeks: dict[date, dict[str, Any]] = {}
    for row in _rows(cur):
        week = weeks.setdefault(row["cohort_week"], {"cohort_week": row["cohort_week"],
                                                     "leads_in_cohort": row["leads_in_cohort"], "stages": []})
        week["stages"].append({k: row[k] for k in ("stage", "stage_name", "leads_reached", "share_reached")})
    return list(weeks.values())


def campaigns(cur: psycopg2.extensions.cursor, broker_id: int) -> list[dict[str, Any]]:
    """Every campaign of the broker with its send outcomes and attributed stage advances."""
    cur.execute("""
        SELECT c.campaign_id, c.name, c.status, c.activated_at, c.definition -> 'trigger' ->> 'type' AS trigger,
               coalesce(a.leads_touched, 0) AS leads_touched,
               coalesce(a.leads_advanced_after_touch, 0) AS leads_advanced_after_touch,
               coalesce(a.leads_won_after_touch, 0) AS leads_won_after_touch, a.advance_rate
        FROM leadflow.campaigns c
        LEFT JOIN marts.fct_campaign_attribution a USING (campaign_id)
        WHERE c.broker_id = %s
        ORDER BY c.created_at, c.campaign_id""", (broker_id,))
    found = _rows(cur)
    stats = {s["campaign_id"]: s for s in read_campaign_stats(cur, broker_id)}
    empty = {"sent": 0, "delivered": 0, "read": 0, "replied": 0, "failed": 0, "skipped": 0, "pending": 0,
             "advanced_after_touch": 0, "success_rate": None, "reply_rate": None}
    for campaign in found:
        s = stats.get(campaign["campaign_id"], empty)
        campaign["sends"] = {k: s[k] for k in empty}
    return found


LEAD_SORTS = {"score": "s.score", "last_message_at": "l.last_message_at", "lead_id": "l.lead_id",
              "stage_entered_at": "st.entered_at"}


@dataclass(frozen=True)
class LeadFilter:
    stage: str | None = None
    temperature: str | None = None
    min_score: int | None = None
    max_score: int | None = None
    channel: str | None = None
    operation: str | None = None
    stalled: bool | None = None
    search: str | None = None
    sort: str = "score"
    descending: bool = True
    limit: int = 50
    offset: int = 0


def leads(cur: psycopg2.extensions.cursor, broker_id: int, f: LeadFilter) -> dict[str, Any]:
    """One page of the broker's live leads (an AGENT's cursor sees only its assigned ones)."""
    order = f"{LEAD_SORTS[f.sort]} {'DESC' if f.descending else 'ASC'} NULLS LAST, l.lead_id"
    cur.execute(f"""
        SELECT l.lead_id, l.display_name, l.phone_e164, l.email, l.channels, l.message_count, l.first_message_at,
               l.last_message_at, l.assigned_user_id, s.score, s.temperature, s.financing_ready,
               st.stage, st.entered_at AS stage_entered_at, coalesce(st.stalled, false) AS stalled,
               q.operation, q.property_type, q.bedrooms_min, q.budget_min, q.budget_max, q.budget_currency,
               q.budget_period, q.locations, q.timeline_months, q.financing,
               count(*) OVER () AS total
        FROM leadflow.leads l
        LEFT JOIN leadflow.lead_scores s USING (lead_id)
        LEFT JOIN leadflow.lead_stages st USING (lead_id)
        LEFT JOIN leadflow.lead_qualifications q USING (lead_id)
        WHERE l.broker_id = %(broker)s AND l.merged_into IS NULL
          AND (%(stage)s::text IS NULL OR st.stage = %(stage)s)
          AND (%(temperature)s::text IS NULL OR s.temperature = %(temperature)s)
          AND (%(min_score)s::int IS NULL OR s.score >= %(min_score)s)
          AND (%(max_score)s::int IS NULL OR s.score <= %(max_score)s)
          AND (%(channel)s::text IS NULL OR %(channel)s = ANY(l.channels))
          AND (%(operation)s::text IS NULL OR q.operation = %(operation)s)
          AND (%(stalled)s::boolean IS NULL OR coalesce(st.stalled, false) = %(stalled)s)
          AND (%(search)s::text IS NULL OR l.display_name ILIKE %(search)s OR l.email ILIKE %(search)s
               OR l.phone_e164 LIKE %(search)s)
        ORDER BY {order}
        LIMIT %(limit)s OFFSET %(offset)s""",
                {"broker": broker_id, "stage": f.stage, "temperature": f.temperature, "min_score": f.min_score,
                 "max_score": f.max_score, "channel": f.channel, "operation": f.operation, "stalled": f.stalled,
                 "search": None if f.search is None else "%" + _escape_like(f.search) + "%",
                 "limit": f.limit, "offset": f.offset})
    items = _rows(cur)
    total = items[0]["total"] if items else _count_without_page(cur, broker_id, f)
    for item in items:
        item.pop("total")
    return {"total": total, "limit": f.limit, "offset": f.offset, "items": items}


def _count_without_page(cur: psycopg2.extensions.cursor, broker_id: int, f: LeadFilter) -> int:
    # A page past the end has no rows to carry the total; ask for the first row of the same filter.
    if f.offset == 0:
        return 0
    first = leads(cur, broker_id, LeadFilter(**{**f.__dict__, "offset": 0, "limit": 1}))
    return int(first["total"])


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def lead(cur: psycopg2.extensions.cursor, broker_id: int, lead_id: int) -> dict[str, Any] | None:
    """One lead with its qualification, score breakdown, current stage and stage history."""
    cur.execute("""
        SELECT l.lead_id, l.broker_id, l.display_name, l.phone_e164, l.email, l.channels, l.message_count,
               l.first_message_at, l.last_message_at, l.assigned_user_id, l.merged_into
        FROM leadflow.leads l WHERE l.lead_id = %s AND l.broker_id = %s""", (lead_id, broker_id))
    found = _rows(cur)
    if not found:
        return None
    result = found[0]
    cur.execute("""SELECT to_jsonb(q) - 'broker_id' - 'lead_id' FROM leadflow.lead_qualifications q
                   WHERE lead_id = %s""", (lead_id,))
    row = cur.fetchone()
    result["qualification"] = row[0] if row else None
    cur.execute("""SELECT score, temperature, financing_ready, breakdown, reasons, scored_at
                   FROM leadflow.lead_scores WHERE lead_id = %s""", (lead_id,))
    scores = _rows(cur)
    result["score"] = scores[0] if scores else None
    cur.execute("""SELECT stage, entered_at, stalled, stalled_days FROM leadflow.lead_stages
                   WHERE lead_id = %s""", (lead_id,))
    stages = _rows(cur)
    result["stage"] = stages[0] if stages else None
    cur.execute("""SELECT from_stage, to_stage, occurred_at, reason, automatic FROM leadflow.stage_events
                   WHERE lead_id = %s ORDER BY occurred_at, sequence, stage_event_id""", (lead_id,))
    result["stage_history"] = _rows(cur)
    return result


AppointmentPeriod = Literal["week", "month"]
_APPOINTMENT_COUNTS = ("leads", "leads_with_appointment", "appointments_set", "appointments_due", "appointments_held",
                       "appointments_no_show", "appointments_cancelled", "appointments_unmarked")


def _appointment_rates(row: dict[str, Any]) -> dict[str, Any]:
    """Rates from the summed counts (a rate of rates over periods would weigh a quiet week like a busy one)."""
    return {**row, "appointment_set_rate": rate(row["leads_with_appointment"], row["leads"]),
            "held_rate": rate(row["appointments_held"], row["appointments_due"]),
            "no_show_rate": rate(row["appointments_no_show"], row["appointments_due"])}


def appointment_rates(cur: psycopg2.extensions.cursor, broker_id: int, period: AppointmentPeriod, start: date,
                      end: date) -> dict[str, Any]:
    """The appointment funnel over the periods (weeks or months, in the broker's timezone) that start between
    ``start`` and ``end``: totals, per period, per agent and per channel. None for a rate with nothing to divide."""
    sums = ", ".join(f"sum({c})::int AS {c}" for c in _APPOINTMENT_COUNTS)
    cur.execute(f"""
        SELECT r.agent, r.channel, {sums}
        FROM marts.fct_appointment_rates r
        WHERE r.broker_id = %s AND r.period = %s AND r.period_start BETWEEN date_trunc(%s, %s::date)::date AND %s
          AND (r.agent = 'all' OR r.channel = 'all')
        GROUP BY r.agent, r.channel""", (broker_id, period, period, start, end))
    cells = _rows(cur)
    cur.execute(f"""
        SELECT r.period_start, {sums}
        FROM marts.fct_appointment_rates r
        WHERE r.broker_id = %s AND r.period = %s AND r.period_start BETWEEN date_trunc(%s, %s::date)::date AND %s
          AND r.agent = 'all' AND r.channel = 'all'
        GROUP BY r.period_start ORDER BY r.period_start""", (broker_id, period, period, start, end))
    periods = [_appointment_rates(p) for p in _rows(cur)]
    cur.execute("SELECT user_id::text, display_name FROM leadflow.users WHERE broker_id = %s", (broker_id,))
    names = dict(cur.fetchall())
    empty = dict.fromkeys(_APPOINTMENT_COUNTS, 0)
    totals = next((c for c in cells if c["agent"] == ALL and c["channel"] == ALL), None)
    by_agent = [{"agent": c["agent"], "agent_name": names.get(c["agent"]) or (
                    "Sin agente" if c["agent"] == "none" else f"Agente {c['agent']}"),
                 **_appointment_rates({k: c[k] for k in _APPOINTMENT_COUNTS})}
                for c in cells if c["channel"] == ALL and c["agent"] != ALL]
    by_channel = [{"channel": c["channel"], **_appointment_rates({k: c[k] for k in _APPOINTMENT_COUNTS})}
                  for c in cells if c["agent"] == ALL and c["channel"] != ALL]
    return {"period": period, "start": start, "end": end,
            "totals": _appointment_rates({k: (totals or empty)[k] for k in _APPOINTMENT_COUNTS}),
            "periods": periods,
            "by_agent": sorted(by_agent, key=lambda r: (-r["appointments_set"], r["agent_name"])),
            "by_channel": sorted(by_channel, key=lambda r: (-r["appointments_set"], r["channel"]))}
