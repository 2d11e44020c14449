"""What a broker's LLM calls cost: ``leadflow.llm_usage`` (per day, provider and model, written by the qualification
and the agent) read for its admins, with the range's totals."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg2.extensions

from reports_api.admin import people
from reports_api.admin.access import Invalid
from reports_api.security import Principal

DEFAULT_DAYS = 30
MAX_DAYS = 3 * 366
_FIGURES = ("calls", "fallbacks", "input_tokens", "output_tokens", "cost_usd")


def date_range(start: date | None, end: date | None, today: date | None = None) -> tuple[date, date]:
    """``start``..``end`` with the defaults filled in (the last 30 days); Invalid when reversed or too long."""
    end = end or today or date.today()
    if start is None:
        if end.toordinal() <= DEFAULT_DAYS:
            raise Invalid("end is too early; give start and end", "start")
        start = end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise Invalid("start is after end", "start")
    if (end - start).days >= MAX_DAYS:
        raise Invalid(f"ask for at most {MAX_DAYS} days", "start")
    return start, end


def _figures(row: tuple[Any, ...]) -> dict[str, Any]:
    calls, fallbacks, input_tokens, output_tokens, cost = row
    return {"calls": int(calls or 0), "fallbacks": int(fallbacks or 0), "input_tokens": int(input_tokens or 0),
            "output_tokens": int(output_tokens or 0), "cost_usd": Decimal(cost or 0)}


def read(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, start: date, end: date) -> dict[str, Any]:
    people.broker(cur, who, broker_id)  # the guard (ADMIN of the broker or SUPERADMIN) and a 404
    sums = ", ".join(f"sum({f})" for f in _FIGURES)
    where = "WHERE broker_id = %s AND day BETWEEN %s AND %s"
    cur.execute(f"""SELECT day, provider, model, {", ".join(_FIGURES)} FROM leadflow.llm_usage {where}
                    ORDER BY day DESC, provider, model""", (broker_id, start, end))
    days = [{"day": r[0], "provider": r[1], "model": r[2], **_figures(r[3:])} for r in cur.fetchall()]
    cur.execute(f"""SELECT provider, model, {sums} FROM leadflow.llm_usage {where}
                    GROUP BY provider, model ORDER BY sum(cost_usd) DESC, provider, model""", (broker_id, start, end))
    models = [{"day": None, "provider": r[0], "model": r[1], **_figures(r[2:])} for r in cur.fetchall()]
    cur.execute(f"SELECT {sums} FROM leadflow.llm_usage {where}", (broker_id, start, end))
    row = cur.fetchone()
    totals = {"day": None, "provider": None, "model": None, **_figures(tuple(row) if row else (0,) * 5)}
    return {"start": start, "end": end, "days": days, "models": models, "totals": totals}
