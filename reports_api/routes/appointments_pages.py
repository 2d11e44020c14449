"""The visits' pages under /dashboard: the calendar (day and week, per person), booking from the lead page,
marking a visit held / missed / cancelled, rescheduling it, and the broker's visiting rules with each person's
schedule.

Same session cookie and CSRF token as the workspace's forms; reads and bookings on the scoped cursors, so an
AGENT's calendar holds its leads' visits and its own. A refusal comes back to the page it came from as a message
(its code in the URL, the text from ``reports_api.workspace.appointments.MESSAGES``); nothing is written then.
The visiting rules are a settings section (versions, revert: ``reports_api.admin.settings``) with a form of its
own: one or two windows per weekday. Left out of the OpenAPI document: the JSON is
``reports_api.routes.appointments``.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

import re
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import psycopg2.errors
import psycopg2.extensions
from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from leadflow.appointments import store
from leadflow.appointments.rules import WEEKDAYS, RulesError, hours_json, parse_hours
from leadflow.settings_schema import effective
from reports_api import queries
from reports_api.admin import people, schedules, settings
from reports_api.admin.access import AdminError
from reports_api.deps import MAX_ID, Id, Pool, Tokens, broker_cursor
from reports_api.routes.admin import Owner
from reports_api.routes.admin_forms import EXPIRED_FORM
from reports_api.routes.admin_forms import checked_form as _checked_form
from reports_api.routes.admin_forms import first as _form_one
from reports_api.routes.admin_forms import owner_run as _owner_run
from reports_api.routes.admin_forms import to_login as _to_login
from reports_api.routes.appointments import local_range, now_of
from reports_api.routes.workspace_pages import ERRORS, Session, SessionDep
from reports_api.security import Principal
from reports_api.workspace import appointments, csrf, db, reads
from reports_api.workspace.render import page

router = APIRouter(prefix="/dashboard/brokers/{broker_id}", tags=["appointments pages"], include_in_schema=False)
Code = Annotated[str | None, Query(max_length=40)]
DAY_NAMES = {"mon": "Lunes", "tue": "Martes", "wed": "Miércoles", "thu": "Jueves", "fri": "Viernes",
             "sat": "Sábado", "sun": "Domingo"}
SHORT_DAYS = appointments.SHORT_DAYS
MESSAGES = {**appointments.MESSAGES, "invalid": ERRORS["invalid"], "csrf": ERRORS["csrf"]}
SAVED = {"booked": "Visita agendada.", "status": "Visita actualizada.", "moved": "Visita reagendada.",
         "days_off": "Días libres guardados."}


def _local_day(value: str | None) -> date | None:
    if not value:
        return None
    try:
        found = date.fromisoformat(value)
    except ValueError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "no es una fecha (AAAA-MM-DD)") from None
    if found.year not in appointments.YEARS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "elige una fecha entre 2000 y 2100")
    return found


def _refusal(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else "invalid"


def _redirect(url: str, **query: str | None) -> RedirectResponse:
    kept = {k: v for k, v in query.items() if v}
    return RedirectResponse(f"{url}?{urlencode(kept)}" if kept else url, status_code=status.HTTP_303_SEE_OTHER)


# --- the calendar ---------------------------------------------------------------------------------------------

def _week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


@router.get("/calendar")
def calendar_page(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id,
                  view: Annotated[str, Query(pattern="^(day|week)$")] = "week",
                  day: Annotated[str | None, Query(max_length=10)] = None,
                  person: Annotated[str | None, Query(alias="agent", max_length=19)] = None,
                  error: Code = None, saved: Code = None) -> Response:
    if session is None:
        return _to_login()
    who = session.principal
    now = now_of(request)
    try:
        # The filter form sends an empty value for "everyone".
        if person and not (_digits(person) and 1 <= int(person) <= MAX_ID):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "no es una persona")
        agent = int(person) if person else None
        with broker_cursor(pool, who, broker_id) as cur:
            broker = queries.broker(cur, broker_id)
            if broker is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"there is no broker {broker_id}")
            zone = ZoneInfo(broker["timezone"])
            today = now.astimezone(zone).date()
            shown = _local_day(day) or today
            first = _week_start(shown) if view == "week" else shown
            count = 7 if view == "week" else 1
            lo, hi = local_range(broker["timezone"], first, count)
            found = appointments.listing(cur, broker_id, lo, hi, agent)
            persons = reads.people(cur, broker_id)
            cur.execute("SELECT blocked FROM leadflow.agent_schedules WHERE user_id = %s AND broker_id = %s",
                        (who.user_id, broker_id))
            own = cur.fetchone()
    except HTTPException as exc:
        return page("error.html", exc.status_code, who=who, message=exc.detail)
    columns = [{"day": first + timedelta(days=i), "items": []} for i in range(count)]
    for item in found:
        index = (item["starts_at"].astimezone(zone).date() - first).days
        if 0 <= index < count:
            columns[index]["items"].append(item)
    step = timedelta(days=count)
    base = f"/dashboard/brokers/{broker_id}/calendar"

    def link(target: date | None, shown_view: str = view) -> str:
        query = {"view": shown_view if shown_view != "week" else None, "day": target.isoformat() if target else None,
                 "agent": str(agent) if agent else None}
        kept = {k: v for k, v in query.items() if v}
        return f"{base}?{urlencode(kept)}" if kept else base

    return page("ws_calendar.html", who=who, broker=broker, view=view, columns=columns, today=today, now=now,
                first=first, last=first + step - timedelta(days=1), agent=agent, people=persons,
                prev_url=link(first - step), next_url=link(first + step), today_url=link(None),
                week_url=link(shown, "week"), day_url=link(shown, "day"), shown=shown,
                own_days_off="\n".join(d.isoformat() for d in sorted(own[0] or [])) if own else "",
                STATUS=appointments.STATUS_LABELS, KINDS=appointments.KIND_LABELS,
                CALENDAR=appointments.CALENDAR_LABELS, SHORT_DAYS=SHORT_DAYS,
                error=MESSAGES.get(error or ""), saved=SAVED.get(saved or ""),
                csrf=csrf.token_for(tokens.secret, session.token))


def _back_to(broker_id: int, form: dict[str, list[str]]) -> str:
    """Where a visit's form returns: the calendar view it came from or the lead page (ours, never a URL typed)."""
    back = _form_one(form, "back")
    base = f"/dashboard/brokers/{broker_id}"
    if re.fullmatch(r"lead:\d{1,18}", back):
        return f"{base}/leads/{back[5:]}"
    view, day, agent = _form_one(form, "view"), _form_one(form, "day"), _form_one(form, "agent")
    query = {"view": view if view in ("day", "week") else None,
             "day": day if re.fullmatch(r"\d{4}-\d{2}-\d{2}", day) else None,
             "agent": agent if _digits(agent) and len(agent) < 19 else None}
    kept = {k: v for k, v in query.items() if v}
    return f"{base}/calendar" + (f"?{urlencode(kept)}" if kept else "")


def _with(url: str, **query: str) -> RedirectResponse:
    return RedirectResponse(url + ("&" if "?" in url else "?") + urlencode(query),
                            status_code=status.HTTP_303_SEE_OTHER)


async def _visit_write(request: Request, pool: Any, tokens: Any, session: Session | None, broker_id: int,
                       action: Any, done: str, back: str | None = None) -> Response:
    """Session and CSRF, then ``action(cur, form, who)`` on a write cursor; back to the page with the outcome."""
    if session is None:
        return _to_login()
    form = await _checked_form(request, tokens, session)
    who = session.principal
    if form is None:
        return page("error.html", status.HTTP_403_FORBIDDEN, who=who, message=EXPIRED_FORM)
    url = back or _back_to(broker_id, form)

    def write() -> str | None:
        try:
            with db.write_cursor(pool, who, broker_id) as cur:
                action(cur, form, who)
        except (appointments.Conflict, appointments.Invalid) as exc:
            return exc.code
        except db.NotFound:
            return "not_found"
        except (db.Invalid, db.Conflict):
            return "invalid"
        except psycopg2.errors.InsufficientPrivilege:
            return "not_found"
        return None

    try:
        error = await run_in_threadpool(write)
    except HTTPException as exc:
        return page("error.html", exc.status_code, who=who, message=exc.detail)
    if error == "not_found":
        return page("error.html", status.HTTP_404_NOT_FOUND, who=who, message=MESSAGES["not_found"])
    return _with(url, error=error) if error else _with(url, saved=done)


@router.post("/appointments/{appointment_id}/status")
async def status_form(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id,
                      appointment_id: Id) -> Response:
    now = now_of(request)

    def change(cur: psycopg2.extensions.cursor, form: dict[str, list[str]], who: Principal) -> object:
        to = _form_one(form, "status")
        if to not in ("confirmed", "completed", "no_show", "cancelled"):
            raise db.Invalid("not a status a person sets")
        return appointments.set_status(cur, who, broker_id, appointment_id, to, now,  # type: ignore[arg-type]
                                       _form_one(form, "note") or None)

    return await _visit_write(request, pool, tokens, session, broker_id, change, "status")


def _local_start(form: dict[str, list[str]], timezone: str) -> datetime | None:
    """An ADMIN's typed date and time (the broker's wall clock), or None when neither was typed."""
    day, clock = _form_one(form, "date"), _form_one(form, "time")
    if not day and not clock:
        return None
    try:
        return datetime.combine(date.fromisoformat(day), time.fromisoformat(clock), ZoneInfo(timezone))
    except ValueError:
        raise appointments.Invalid("bad_time") from None


def _chosen_start(cur: psycopg2.extensions.cursor, broker_id: int,
                  form: dict[str, list[str]]) -> tuple[datetime, bool]:
    """The start a form asks for: a typed date and time (outside the grid) or one of the free slots."""
    typed = _local_start(form, store.broker_rules(cur, broker_id)[1])
    if typed is not None:
        return typed, True
    raw = _form_one(form, "slot")
    try:
        start = datetime.fromisoformat(raw)
    except ValueError:
        raise appointments.Invalid("no_slot") from None
    if start.tzinfo is None:
        raise appointments.Invalid("no_slot")
    return start, False


@router.get("/appointments/{appointment_id}/reschedule")
def reschedule_page(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id,
                    appointment_id: Id, error: Code = None) -> Response:
    if session is None:
        return _to_login()
    who = session.principal
    try:
        with broker_cursor(pool, who, broker_id) as cur:
            broker = queries.broker(cur, broker_id)
            try:
                visit = appointments.one(cur, broker_id, appointment_id)
            except db.NotFound as exc:
                raise HTTPException(status.HTTP_404_NOT_FOUND, MESSAGES["not_found"]) from exc
            rules, _ = store.broker_rules(cur, broker_id)
            days = appointments.days_of(cur, broker_id, now_of(request), rules.horizon_days)
    except HTTPException as exc:
        return page("error.html", exc.status_code, who=who, message=exc.detail)
    return page("ws_reschedule.html", who=who, broker=broker, visit=visit, days=days,
                STATUS=appointments.STATUS_LABELS, KINDS=appointments.KIND_LABELS, SHORT_DAYS=SHORT_DAYS,
                error=MESSAGES.get(error or ""), csrf=csrf.token_for(tokens.secret, session.token))


@router.post("/appointments/{appointment_id}/reschedule")
async def reschedule_form(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id,
                          appointment_id: Id) -> Response:
    now = now_of(request)

    def move(cur: psycopg2.extensions.cursor, form: dict[str, list[str]], who: Principal) -> object:
        start, outside = _chosen_start(cur, broker_id, form)
        return appointments.reschedule(cur, who, broker_id, appointment_id, start, now, outside_grid=outside)

    if session is None:
        return _to_login()
    # A refusal goes back to the reschedule page (to pick another); success to the calendar.
    refused = f"/dashboard/brokers/{broker_id}/appointments/{appointment_id}/reschedule"
    answer = await _visit_write(request, pool, tokens, session, broker_id, move, "moved", back=refused)
    location = answer.headers.get("location", "")
    if location.startswith(refused) and "saved=" in location:
        return _redirect(f"/dashboard/brokers/{broker_id}/calendar", saved="moved")
    return answer


@router.post("/leads/{lead_id}/appointments")
async def book_form(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id,
                    lead_id: Id) -> Response:
    now = now_of(request)

    def book(cur: psycopg2.extensions.cursor, form: dict[str, list[str]], who: Principal) -> object:
        start, outside = _chosen_start(cur, broker_id, form)
        agent = _form_one(form, "agent_id")
        if agent and not (_digits(agent) and len(agent) < 19):
            raise appointments.Invalid("not_person")
        kind = _form_one(form, "kind") or None
        if kind not in (None, "in_person", "virtual"):
            raise db.Invalid("not a kind of visit")
        wanted = _form_one(form, "status") or "proposed"
        if wanted not in ("proposed", "confirmed"):
            raise db.Invalid("not a status to book with")
        return appointments.book(cur, who, broker_id, lead_id, start, now, agent_id=int(agent) if agent else None,
                                 kind=kind, address=_form_one(form, "address") or None,  # type: ignore[arg-type]
                                 status=wanted, outside_grid=outside)  # type: ignore[arg-type]

    back = f"/dashboard/brokers/{broker_id}/leads/{lead_id}"
    answer = await _visit_write(request, pool, tokens, session, broker_id, book, "booked", back=back)
    if answer.status_code == status.HTTP_303_SEE_OTHER:
        return RedirectResponse(answer.headers["location"] + "#appointments", status_code=status.HTTP_303_SEE_OTHER)
    return answer


@router.post("/calendar/days-off")
async def own_days_off_form(request: Request, owner: Owner, tokens: Tokens, session: SessionDep,
                            broker_id: Id) -> Response:
    """A person's own days off (an AGENT too), from the calendar page."""
    if session is None:
        return _to_login()
    form = await _checked_form(request, tokens, session)
    who = session.principal
    if form is None:
        return page("error.html", status.HTTP_403_FORBIDDEN, who=who, message=EXPIRED_FORM)
    try:
        days = _dates(_form_one(form, "days_off"))
    except ValueError as exc:
        return page("error.html", status.HTTP_422_UNPROCESSABLE_CONTENT, who=who, message=str(exc))
    try:
        await run_in_threadpool(_owner_run, owner,
                                lambda cur: schedules.save_days_off(cur, who, broker_id, who.user_id, days))
    except AdminError as exc:
        return page("error.html", exc.status, who=who, message=f"No se guardó: {exc}")
    return _redirect(f"/dashboard/brokers/{broker_id}/calendar", saved="days_off")


# --- the visiting rules and each person's schedule (admins) ----------------------------------------------------

NUMBERS = {"visit_minutes": "Duración de la visita (minutos)", "buffer_minutes": "Margen entre visitas (minutos)",
           "min_notice_minutes": "Aviso mínimo (minutos)", "horizon_days": "Se ofrece hasta (días)",
           "offer_count": "Horarios por oferta"}
GRIDS = ("15", "20", "30", "60")


def _dates(text: str) -> list[date]:
    """Dates written one per line or separated by commas (AAAA-MM-DD); ValueError naming the bad one."""
    found: list[date] = []
    for part in re.split(r"[\s,;]+", text.strip()):
        if not part:
            continue
        try:
            found.append(date.fromisoformat(part))
        except ValueError:
            raise ValueError(f"«{part[:20]}» no es una fecha (AAAA-MM-DD)") from None
    return found


def rules_shown(value: dict[str, Any]) -> dict[str, str]:
    """The visiting rules as the form's fields show them."""
    out: dict[str, str] = {}
    hours = value.get("hours") or {}
    for day in WEEKDAYS:
        windows = list(hours.get(day) or [])
        for i in (1, 2):
            window = windows[i - 1] if len(windows) >= i else None
            out[f"{day}_start{i}"] = str(window["start"])[:5] if window else ""
            out[f"{day}_end{i}"] = str(window["end"])[:5] if window else ""
    for name in (*NUMBERS, "step_minutes"):
        out[name] = str(value.get(name, ""))
    out["holidays"] = "\n".join(str(d) for d in value.get("holidays") or [])
    out["reminder_hours"] = ", ".join(str(h) for h in value.get("reminder_hours") or [])
    out["default_kind"] = str(value.get("default_kind") or "in_person")
    out["virtual_allowed"] = "true" if value.get("virtual_allowed") else ""
    out["address"] = str(value.get("address") or "")
    return out


def rules_parsed(form: dict[str, list[str]]) -> tuple[dict[str, Any], dict[str, str]]:
    """The form as the section's JSON, and the fields that could not even be read."""
    value: dict[str, Any] = {}
    bad: dict[str, str] = {}
    hours: dict[str, list[dict[str, str]]] = {}
    for day in WEEKDAYS:
        for i in (1, 2):
            start, end = _form_one(form, f"{day}_start{i}"), _form_one(form, f"{day}_end{i}")
            if not start and not end:
                continue
            if not (re.fullmatch(r"\d{2}:\d{2}", start) and re.fullmatch(r"\d{2}:\d{2}", end)):
                bad[f"hours.{day}"] = "cada franja necesita inicio y término (HH:MM)"
                continue
            hours.setdefault(day, []).append({"start": start, "end": end})
    value["hours"] = hours
    for name in NUMBERS:
        raw = _form_one(form, name)
        if raw:
            try:
                value[name] = int(raw)
            except ValueError:
                bad[name] = "no es un número entero"
    grid = _form_one(form, "step_minutes")
    if grid:
        value["step_minutes"] = int(grid) if grid in GRIDS else grid
    try:
        value["holidays"] = [d.isoformat() for d in _dates(_form_one(form, "holidays"))]
    except ValueError as exc:
        bad["holidays"] = str(exc)
    reminders = [p for p in re.split(r"[\s,;]+", _form_one(form, "reminder_hours")) if p]
    if all(_digits(p) and len(p) < 6 for p in reminders):
        value["reminder_hours"] = [int(p) for p in reminders]
    else:
        bad["reminder_hours"] = "horas enteras separadas por comas (p. ej. 24, 1)"
    value["default_kind"] = _form_one(form, "default_kind") or "in_person"
    value["virtual_allowed"] = _form_one(form, "virtual_allowed") == "true"
    value["address"] = _form_one(form, "address") or None
    return value, bad


def _field_of(problem: str) -> str:
    """The form's field a problem is about: "hours.mon[0]" is Monday's row, "holidays[2]" the holidays'."""
    match = re.match(r"hours\.(\w{3})", problem)
    if match:
        return f"hours.{match.group(1)}"
    return re.split(r"[.\[]", problem, maxsplit=1)[0]


def person_hours_shown(hours: dict[str, Any] | None) -> str:
    """A person's own hours as one line per day: "mon 09:00-13:00 15:00-19:00"."""
    if not hours:
        return ""
    return "\n".join(f"{day} " + " ".join(f"{str(w['start'])[:5]}-{str(w['end'])[:5]}" for w in hours[day])
                     for day in WEEKDAYS if day in hours)


def person_hours_parsed(text: str) -> dict[str, Any] | None:
    """The lines of ``person_hours_shown`` back as hours (empty: the broker's); ValueError saying what is wrong."""
    if not text.strip():
        return None
    hours: dict[str, list[dict[str, str]]] = {}
    for line in text.strip().splitlines():
        parts = line.split()
        if not parts:
            continue
        day = parts[0].lower()[:3]
        if day not in WEEKDAYS or len(parts) < 2:
            raise ValueError(f"«{line.strip()[:40]}»: escribe el día (mon…sun) y las franjas, p. ej. "
                             "mon 09:00-13:00 15:00-19:00")
        for window in parts[1:]:
            match = re.fullmatch(r"(\d{1,2}:\d{2})-(\d{1,2}:\d{2})", window)
            if not match:
                raise ValueError(f"«{window[:20]}» no es una franja (HH:MM-HH:MM)")
            hours.setdefault(day, []).append({"start": match.group(1).zfill(5), "end": match.group(2).zfill(5)})
    try:
        return hours_json(parse_hours(hours))
    except RulesError as exc:
        raise ValueError(str(exc)) from None


async def _rules_page(owner: Any, tokens: Any, session: Session, broker_id: int, status_code: int = 200, *,
                      typed: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                      general: list[str] | None = None, person_errors: dict[int, str] | None = None,
                      saved: str | None = None) -> Response:
    who = session.principal

    def read(cur: psycopg2.extensions.cursor) -> tuple[Any, Any, Any, Any]:
        return (people.broker(cur, who, broker_id), settings.read(cur, who, broker_id, "appointments"),
                settings.versions(cur, who, broker_id, "appointments"), schedules.people(cur, who, broker_id))

    try:
        broker, state, history, persons = await run_in_threadpool(_owner_run, owner, read)
    except AdminError as exc:
        return page("error.html", exc.status, who=who, message=str(exc))
    listed = [p for p in persons if p["listed"] and p["takes_visits"]]
    return page("admin_appointments.html", status_code, who=who, broker=broker, state=state, versions=history,
                values=typed or rules_shown(state["value"]), errors=errors or {}, general=general or [],
                people=[{**p, "hours_text": person_hours_shown(p["hours"]),
                         "days_off_text": "\n".join(d.isoformat() for d in p["days_off"])} for p in persons],
                nobody_listed=not listed, person_errors=person_errors or {}, WEEKDAYS=WEEKDAYS,
                DAY_NAMES=DAY_NAMES, NUMBERS=NUMBERS, GRIDS=GRIDS, saved=saved,
                csrf=csrf.token_for(tokens.secret, session.token))


@router.get("/admin/appointments")
async def rules_page(owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id,
                     saved: Code = None) -> Response:
    if session is None:
        return _to_login()
    return await _rules_page(owner, tokens, session, broker_id, saved=saved)


def _based_on(raw: str) -> int:
    return int(raw) if _digits(raw) and len(raw) < 10 else 0


@router.post("/admin/appointments")
async def rules_form(request: Request, owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id) -> Response:
    if session is None:
        return _to_login()
    form = await _checked_form(request, tokens, session)
    who = session.principal
    if form is None:
        return page("error.html", status.HTTP_403_FORBIDDEN, who=who, message=EXPIRED_FORM)
    typed = {key: _form_one(form, key) for key in rules_shown(effective("appointments", {}))}
    value, unreadable = rules_parsed(form)
    if unreadable:
        return await _rules_page(owner, tokens, session, broker_id, status.HTTP_422_UNPROCESSABLE_CONTENT,
                                 typed=typed, errors=unreadable)
    try:
        await run_in_threadpool(_owner_run, owner, lambda cur: settings.save(
            cur, who, broker_id, "appointments", value, _based_on(_form_one(form, "based_on"))))
    except settings.SettingsInvalid as exc:
        by_field: dict[str, str] = {}
        for problem in exc.problems:
            name = _field_of(problem.field)
            message = f"{problem.field}: {problem.message}"
            by_field[name] = f"{by_field[name]}; {message}" if name in by_field else message
        return await _rules_page(owner, tokens, session, broker_id, exc.status, typed=typed, errors=by_field)
    except AdminError as exc:
        return await _rules_page(owner, tokens, session, broker_id, exc.status, typed=typed, general=[str(exc)])
    return _redirect(f"/dashboard/brokers/{broker_id}/admin/appointments", saved="rules")


@router.post("/admin/appointments/revert")
async def rules_revert_form(request: Request, owner: Owner, tokens: Tokens, session: SessionDep,
                            broker_id: Id) -> Response:
    if session is None:
        return _to_login()
    form = await _checked_form(request, tokens, session)
    who = session.principal
    if form is None:
        return page("error.html", status.HTTP_403_FORBIDDEN, who=who, message=EXPIRED_FORM)
    version = _based_on(_form_one(form, "version"))
    try:
        await run_in_threadpool(_owner_run, owner, lambda cur: settings.revert(
            cur, who, broker_id, "appointments", version, _based_on(_form_one(form, "based_on")) or None))
    except AdminError as exc:
        return await _rules_page(owner, tokens, session, broker_id, exc.status,
                                 general=[f"No se pudo volver a la versión {version}: {exc}"])
    return _redirect(f"/dashboard/brokers/{broker_id}/admin/appointments", saved="rules")


@router.post("/admin/appointments/people/{user_id}")
async def person_form(request: Request, owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id,
                      user_id: Id) -> Response:
    if session is None:
        return _to_login()
    form = await _checked_form(request, tokens, session)
    who = session.principal
    if form is None:
        return page("error.html", status.HTTP_403_FORBIDDEN, who=who, message=EXPIRED_FORM)
    try:
        hours = person_hours_parsed(_form_one(form, "hours")) if _form_one(form, "own_hours") == "true" else None
        days = _dates(_form_one(form, "days_off"))
    except ValueError as exc:
        return await _rules_page(owner, tokens, session, broker_id, status.HTTP_422_UNPROCESSABLE_CONTENT,
                                 person_errors={user_id: str(exc)})
    try:
        await run_in_threadpool(_owner_run, owner, lambda cur: schedules.save(
            cur, who, broker_id, user_id, takes_visits=_form_one(form, "takes_visits") == "true", hours=hours,
            days_off=days))
    except AdminError as exc:
        if exc.status in (status.HTTP_403_FORBIDDEN, status.HTTP_404_NOT_FOUND):
            return page("error.html", exc.status, who=who, message=str(exc))
        return await _rules_page(owner, tokens, session, broker_id, exc.status, person_errors={user_id: str(exc)})
    return _redirect(f"/dashboard/brokers/{broker_id}/admin/appointments", saved="people")


def _digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts "²", which ``int`` refuses (a 500, found by review)."""
    return text.isascii() and text.isdigit()
