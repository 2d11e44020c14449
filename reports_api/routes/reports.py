"""The broker-scoped JSON reports: brokers, funnel, conversion, cohorts, campaigns and leads.

Every broker route reads through ``deps.broker_cursor``, so PostgreSQL's row-level security sees
only the broker in the path (and, for an AGENT, only its own leads).
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import Response

from reports_api import queries
from reports_api.deps import ERRORS, Caller, End, Id, Pool, Slug, Start, broker_cursor, date_range
from reports_api.schemas import (
    AppointmentRates,
    Broker,
    Campaign,
    Cohort,
    Conversion,
    Funnel,
    LeadDetail,
    LeadPage,
)

router = APIRouter(tags=["reports"], responses=ERRORS)


@router.get("/brokers", response_model=list[Broker])
def list_brokers(pool: Pool, who: Caller) -> list[dict[str, Any]]:
    """The brokers this account reads: all for a SUPERADMIN, its own otherwise."""
    with pool.all_brokers_cursor(who) as cur:
        return queries.brokers(cur)


@router.get("/brokers/{broker_id}/funnel", response_model=Funnel)
def funnel(pool: Pool, who: Caller, broker_id: Id, start: Start = None, end: End = None,
           grain: Annotated[queries.Grain, Query()] = "week", channel: Slug = "all", source: Slug = "all",
           campaign: Slug = "all") -> Response:
    """Leads entering each stage per day or week, with totals per stage over the range.

    Filter by channel (whatsapp, telegram, vapi, bland, form), source (ad, link, form, call, direct) or
    campaign (an id, or `none`); `all` rolls a dimension up. Periods start on the day (or the Monday)
    leads entered the stage.
    """
    start, end = date_range(start, end)
    f = queries.FunnelFilter(start, end, grain, channel, source, campaign)
    with broker_cursor(pool, who, broker_id) as cur:
        # The busiest report: PostgreSQL writes the JSON (shaped as Funnel), no row passes through Python.
        return Response(queries.funnel_json(cur, broker_id, f), media_type="application/json")


@router.get("/brokers/{broker_id}/conversion", response_model=list[Conversion])
def conversion(pool: Pool, who: Caller, broker_id: Id, by: Annotated[queries.Dimension, Query()] = "channel",
               start: Start = None, end: End = None) -> list[dict[str, Any]]:
    """Per channel, source or campaign: leads per stage and the rate from entry to won."""
    start, end = date_range(start, end)
    with broker_cursor(pool, who, broker_id) as cur:
        return queries.conversion_by(cur, broker_id, by, start, end)


@router.get("/brokers/{broker_id}/cohorts", response_model=list[Cohort])
def cohorts(pool: Pool, who: Caller, broker_id: Id, start: Start = None, end: End = None) -> list[dict[str, Any]]:
    """Weekly cohorts by first contact: of the leads first seen that week, how many reached each stage."""
    start, end = date_range(start, end)
    with broker_cursor(pool, who, broker_id) as cur:
        return queries.cohorts(cur, broker_id, start, end)


@router.get("/brokers/{broker_id}/campaigns", response_model=list[Campaign])
def campaigns(pool: Pool, who: Caller, broker_id: Id) -> list[dict[str, Any]]:
    """Every campaign with its sends (sent, delivered, read, replied, failed…) and attributed advances."""
    with broker_cursor(pool, who, broker_id) as cur:
        return queries.campaigns(cur, broker_id)


@router.get("/brokers/{broker_id}/appointments/rates", response_model=AppointmentRates)
def appointment_rates(pool: Pool, who: Caller, broker_id: Id, start: Start = None, end: End = None,
                      period: Annotated[queries.AppointmentPeriod, Query()] = "week") -> dict[str, Any]:
    """The appointment funnel over the weeks (or months) starting between start and end, in the broker's timezone:
    set rate (leads first contacted then that got an appointment / those leads), held rate (visits completed /
    visits that came due) and no-show rate, in total, per period, per agent and per channel."""
    start, end = date_range(start, end)
    with broker_cursor(pool, who, broker_id) as cur:
        return queries.appointment_rates(cur, broker_id, period, start, end)


@router.get("/brokers/{broker_id}/leads", response_model=LeadPage)
def leads(pool: Pool, who: Caller, broker_id: Id,
          stage: Annotated[str | None, Query(max_length=40, pattern="^[a-z_]+$")] = None,
          temperature: Annotated[str | None, Query(pattern="^(cold|warm|hot)$")] = None,
          min_score: Annotated[int | None, Query(ge=0, le=100)] = None,
          max_score: Annotated[int | None, Query(ge=0, le=100)] = None,
          channel: Annotated[str | None, Query(max_length=20, pattern="^[a-z]+$")] = None,
          operation: Annotated[str | None, Query(pattern="^(buy|rent|sell|invest)$")] = None,
          stalled: bool | None = None,
          q: Annotated[str | None, Query(min_length=1, max_length=100, description="name, email or phone")] = None,
          sort: Annotated[str, Query(pattern="^(score|last_message_at|lead_id|stage_entered_at)$")] = "score",
          order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
          limit: Annotated[int, Query(ge=1, le=200)] = 50,
          offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> dict[str, Any]:
    """The broker's live leads with score, temperature, stage and qualification; an AGENT sees its own."""
    # PostgreSQL rejects NUL in text parameters; a search for it would otherwise be a 500.
    f = queries.LeadFilter(stage, temperature, min_score, max_score, channel, operation, stalled,
                           q.replace("\x00", "") if q else None, sort, order == "desc", limit, offset)
    with broker_cursor(pool, who, broker_id) as cur:
        return queries.leads(cur, broker_id, f)


@router.get("/brokers/{broker_id}/leads/{lead_id}", response_model=LeadDetail)
def lead(pool: Pool, who: Caller, broker_id: Id, lead_id: Id) -> dict[str, Any]:
    """One lead: qualification, score with its breakdown, current stage and stage history."""
    with broker_cursor(pool, who, broker_id) as cur:
        found = queries.lead(cur, broker_id, lead_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"broker {broker_id} has no lead {lead_id} you may read")
    return found
