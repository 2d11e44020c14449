"""Visits (tag "appointments"): the broker's calendar, its free slots, booking by hand, status changes and
rescheduling, and who takes visits when.

Reads and bookings run on the scoped cursors (``reports_api.workspace.appointments``): an AGENT sees the visits of
its leads and its own, and books and changes only its leads' visits. A booking at a taken time is a 409 and writes
nothing (the database's exclusion constraint decides, however many book at once). The people's schedules are the
admins' (written as the owner after ``reports_api.admin.access``'s check); a person sets their own days off.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from leadflow.appointments import store
from leadflow.appointments.rules import Kind
from reports_api.admin import schedules
from reports_api.deps import ERRORS, MAX_ID, Caller, Id, Pool, broker_cursor
from reports_api.routes.admin import Owner, run
from reports_api.schemas import Problem
from reports_api.workspace import appointments, db
from reports_api.workspace.appointments import now_of

api = APIRouter(tags=["appointments"], responses=ERRORS)
MAX_DAYS = 62
REFUSED: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "the time is taken (another visit of that person, its buffer "
                                           "included) or the visit's status does not allow the change; nothing "
                                           "was written"},
    422: {"description": "invalid input (a virtual visit where the broker takes none, an AGENT booking outside "
                         "the free slots, …)"}}


class Event(BaseModel):
    from_status: str | None
    to_status: str
    actor: str = Field(description="lead, bot, campaign, person or system")
    user_id: int | None = Field(description="the person who made the change (actor person)")
    by_name: str | None
    note: str | None
    at: datetime


class Appointment(BaseModel):
    appointment_id: int
    lead_id: int
    lead_name: str | None = Field(description="null when the caller may see the visit but not its lead (an "
                                              "AGENT's own visit of someone else's lead)")
    agent_id: int | None = Field(description="who takes the visit; null: the broker's own calendar")
    agent_name: str | None
    kind: str = Field(description="in_person or virtual")
    address: str | None
    starts_at: datetime
    ends_at: datetime
    timezone: str = Field(description="the broker's, in which the lead was told the time")
    status: str = Field(description="proposed, confirmed, completed, no_show, cancelled or rescheduled")
    source: str
    channel: str | None
    meet_link: str | None
    calendar_state: str = Field(description="the Google Calendar event: pending, synced, failed, not_connected")
    calendar_error: str | None
    rescheduled_from: int | None
    created_at: datetime


class AppointmentWithEvents(Appointment):
    events: list[Event]


class SlotOut(BaseModel):
    start: datetime
    end: datetime
    agents: list[int | None] = Field(description="the people free then, best first (null: the broker's calendar)")


class BookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: AwareDatetime = Field(description="one of GET …/availability's starts (with its offset)")
    agent_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="who takes it (default: the first "
                                                                           "free person of the slot)")
    kind: Kind | None = Field(default=None, description="default: the broker's default kind")
    address: str | None = Field(default=None, max_length=appointments.MAX_ADDRESS,
                                description="default: the broker's meeting address")
    status: Literal["proposed", "confirmed"] = Field(default="proposed", description="confirmed: the lead agreed "
                                                     "(moves the lead to agendado); proposed: not yet")
    outside_grid: bool = Field(default=False, description="an ADMIN's time outside the free slots (past ones "
                                                          "too); still refused when the person is booked then")


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: appointments.PersonStatus = Field(description="completed / no_show only once the visit has started")
    note: str | None = Field(default=None, max_length=appointments.MAX_NOTE)


class RescheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: AwareDatetime
    outside_grid: bool = False


class Schedule(BaseModel):
    user_id: int
    display_name: str | None
    email: str
    role: str
    listed: bool = Field(description="false: no schedule yet, so no visits (unless nobody is listed: then the "
                                     "broker's own calendar takes them)")
    takes_visits: bool
    hours: dict[str, Any] | None = Field(description="own hours by weekday; null: the broker's")
    days_off: list[date]


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    takes_visits: bool = True
    hours: dict[str, Any] | None = Field(default=None, description='{"mon": [{"start": "09:00", "end": "13:00"}], '
                                                                   '…}; a day left out is not worked; null: the '
                                                                   "broker's hours")
    days_off: list[date] = Field(default_factory=list, max_length=schedules.MAX_DAYS_OFF)


class DaysOffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days_off: list[date] = Field(max_length=schedules.MAX_DAYS_OFF)


def local_range(timezone: str, first: date, days: int) -> tuple[datetime, datetime]:
    zone = ZoneInfo(timezone)
    return (datetime.combine(first, time(), zone), datetime.combine(first + timedelta(days=days), time(), zone))


@api.get("/brokers/{broker_id}/appointments", response_model=list[Appointment])
def list_appointments(request: Request, pool: Pool, who: Caller, broker_id: Id,
                      start: Annotated[date | None, Query(alias="from", description="first local day (default: "
                                                                                     "today)")] = None,
                      end: Annotated[date | None, Query(alias="to", description="last local day, included "
                                                                                "(default: 6 days after from)")] = None,
                      agent: Annotated[int | None, Query(ge=1, le=MAX_ID, description="one person's visits")] = None,
                      ) -> list[dict[str, Any]]:
    """The broker's visits starting between two local days (the broker's timezone), earliest first, every
    status. An AGENT gets its leads' visits and its own."""
    with broker_cursor(pool, who, broker_id) as cur:
        _, timezone = store.broker_rules(cur, broker_id)
        first = start or now_of(request).astimezone(ZoneInfo(timezone)).date()
        last = end or first + timedelta(days=6)
        if last < first:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "to is before from")
        if first.year not in appointments.YEARS or last.year not in appointments.YEARS:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "ask for days between 2000 and 2100")
        if (last - first).days >= MAX_DAYS:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"ask for at most {MAX_DAYS} days")
        lo, hi = local_range(timezone, first, (last - first).days + 1)
        return appointments.listing(cur, broker_id, lo, hi, agent)


@api.get("/brokers/{broker_id}/appointments/{appointment_id}", response_model=AppointmentWithEvents)
def get_appointment(pool: Pool, who: Caller, broker_id: Id, appointment_id: Id) -> dict[str, Any]:
    """One visit with its history: every status change, who made it and when."""
    with broker_cursor(pool, who, broker_id) as cur:
        try:
            return appointments.one(cur, broker_id, appointment_id)
        except db.NotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@api.get("/brokers/{broker_id}/availability", response_model=list[SlotOut])
def availability(request: Request, pool: Pool, who: Caller, broker_id: Id,
                 days: Annotated[int | None, Query(ge=1, le=90, description="days from today (default: the "
                                                                            "rules' horizon)")] = None,
                 ) -> list[dict[str, Any]]:
    """Every free slot from now on: the broker's working hours and each person's, minus holidays, days off,
    their visits (buffer included) and their calendars' busy times, never within the minimum notice."""
    with broker_cursor(pool, who, broker_id) as cur:
        return [s.to_json() for s in store.available(cur, broker_id, now_of(request), days=days)]


@api.get("/brokers/{broker_id}/leads/{lead_id}/appointments", response_model=list[AppointmentWithEvents])
def lead_appointments(pool: Pool, who: Caller, broker_id: Id, lead_id: Id) -> list[dict[str, Any]]:
    """The lead's visits, newest first, each with its history."""
    with broker_cursor(pool, who, broker_id) as cur:
        return appointments.of_lead(cur, broker_id, lead_id)


@api.post("/brokers/{broker_id}/leads/{lead_id}/appointments", response_model=AppointmentWithEvents,
          status_code=status.HTTP_201_CREATED, responses=REFUSED)
def book(request: Request, pool: Pool, who: Caller, broker_id: Id, lead_id: Id, body: BookIn) -> dict[str, Any]:
    """Book a visit for the lead by hand at one of the free slots (or, an ADMIN, at any time with
    `outside_grid`); audited, signed by the caller. `confirmed` moves the lead to agendado."""
    now = now_of(request)
    return db.write(pool, who, broker_id, lambda cur: appointments.book(
        cur, who, broker_id, lead_id, body.start, now, agent_id=body.agent_id, kind=body.kind, address=body.address,
        status=body.status, outside_grid=body.outside_grid))


@api.post("/brokers/{broker_id}/appointments/{appointment_id}/status", response_model=AppointmentWithEvents,
          responses=REFUSED)
def change_status(request: Request, pool: Pool, who: Caller, broker_id: Id, appointment_id: Id,
                  body: StatusIn) -> dict[str, Any]:
    """Confirm, cancel, or mark the visit completed / no_show (once it has started); signed by the caller.
    completed moves the lead to seguimiento."""
    now = now_of(request)
    return db.write(pool, who, broker_id, lambda cur: appointments.set_status(
        cur, who, broker_id, appointment_id, body.status, now, body.note))


@api.post("/brokers/{broker_id}/appointments/{appointment_id}/reschedule", response_model=AppointmentWithEvents,
          responses=REFUSED)
def reschedule(request: Request, pool: Pool, who: Caller, broker_id: Id, appointment_id: Id,
               body: RescheduleIn) -> dict[str, Any]:
    """Move an active visit to another free slot: a new visit pointing back to this one, which becomes
    rescheduled. A taken time is a 409 and the visit stays where it was."""
    now = now_of(request)
    return db.write(pool, who, broker_id, lambda cur: appointments.reschedule(
        cur, who, broker_id, appointment_id, body.start, now, outside_grid=body.outside_grid))


@api.get("/brokers/{broker_id}/schedules", response_model=list[Schedule])
def list_schedules(owner: Owner, who: Caller, broker_id: Id) -> list[dict[str, Any]]:
    """Who takes visits and when (the broker's ADMINs and a SUPERADMIN)."""
    return run(owner, lambda cur: schedules.people(cur, who, broker_id))


@api.put("/brokers/{broker_id}/schedules/{user_id}", response_model=Schedule, responses=REFUSED)
def put_schedule(owner: Owner, who: Caller, broker_id: Id, user_id: Id, body: ScheduleIn) -> dict[str, Any]:
    """Set whether a person takes visits, their own hours (or the broker's) and their days off (the broker's
    ADMINs and a SUPERADMIN; audited)."""
    return run(owner, lambda cur: schedules.save(cur, who, broker_id, user_id, takes_visits=body.takes_visits,
                                                 hours=body.hours, days_off=body.days_off))


@api.put("/brokers/{broker_id}/schedules/{user_id}/days-off", response_model=Schedule, responses=REFUSED)
def put_days_off(owner: Owner, who: Caller, broker_id: Id, user_id: Id, body: DaysOffIn) -> dict[str, Any]:
    """A person's days off: anyone sets their own (an AGENT too), the broker's admins anyone's; audited."""
    return run(owner, lambda cur: schedules.save_days_off(cur, who, broker_id, user_id, body.days_off))


router = APIRouter()
router.include_router(api)
