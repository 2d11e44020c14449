"""A broker's automatic assignment of new leads (its ADMIN's settings), and a person's edit of a lead's name,
phone and email: the JSON routes and their dashboard pages and forms.

Writes go through ``reports_api.workspace.db.write_cursor`` (row security, the acting person, audited);
the forms carry the session's CSRF token, as the other workspace forms do. An AGENT may edit the leads it
may see, and neither read nor change the assignment settings (403).
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

from datetime import datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs

import psycopg2.extensions
from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from leadflow.leads.assignment import CHANNELS, AssignmentConfig, Rule
from reports_api import queries
from reports_api.deps import ERRORS, Caller, Id, Pool, Tokens, broker_cursor
from reports_api.routes.workspace_pages import SessionDep
from reports_api.schemas import Problem
from reports_api.security import Principal
from reports_api.workspace import csrf, db, reads
from reports_api.workspace import settings as assignment_settings
from reports_api.workspace.render import page
from reports_api.workspace.schemas import Person

_T = TypeVar("_T")
api = APIRouter(tags=["workspace"], responses=ERRORS)
pages = APIRouter(prefix="/dashboard/brokers/{broker_id}", tags=["workspace pages"], include_in_schema=False)
ADMINS_ONLY = "only the broker's admins change how new leads are assigned"
MAX_FORM_RULES = 20


class AssignmentSettings(BaseModel):
    config: AssignmentConfig
    applies_after_lead_id: int | None = Field(description="assignment applies to the broker's leads after this "
                                                          "one (set when it was switched on)")
    updated_at: datetime | None
    updated_by: int | None
    updated_by_name: str | None
    people: list[Person] = Field(description="the broker's active ADMINs and AGENTs a rule may name; the plain "
                                             "round robin takes the AGENTs")


class LeadContactIn(BaseModel):
    display_name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40, description="as people write it; the broker's country "
                                                                       "is assumed without +<country code>")
    email: str | None = Field(default=None, max_length=254)


class IdentityAdded(BaseModel):
    kind: str
    value: str
    reason: str


class LeadContact(BaseModel):
    lead_id: int
    display_name: str | None
    phone_e164: str | None
    email: str | None
    identities_added: list[IdentityAdded]


def _refuse_agents(who: Principal) -> None:
    if who.role == "AGENT":
        raise HTTPException(status.HTTP_403_FORBIDDEN, ADMINS_ONLY)


_write = db.write


def _settings(cur: psycopg2.extensions.cursor, broker_id: int) -> dict[str, Any]:
    return {**assignment_settings.assignment(cur, broker_id), "people": reads.people(cur, broker_id)}


@api.get("/brokers/{broker_id}/settings/assignment", response_model=AssignmentSettings)
def get_assignment(pool: Pool, who: Caller, broker_id: Id) -> dict[str, Any]:
    """How the broker's new leads are assigned (ADMIN and SUPERADMIN only): `off`, `round_robin` among its
    active AGENTs, or `rules` by channel and area to a person or a group (in turn), with a fallback."""
    _refuse_agents(who)
    with broker_cursor(pool, who, broker_id) as cur:
        return _settings(cur, broker_id)


@api.put("/brokers/{broker_id}/settings/assignment", response_model=AssignmentSettings,
            responses={422: {"description": "an invalid config, or a rule naming someone who is not an active "
                                             "person of the broker"}})
def put_assignment(pool: Pool, who: Caller, broker_id: Id, body: AssignmentConfig) -> dict[str, Any]:
    """Replace the broker's automatic assignment (ADMIN and SUPERADMIN only; audited). Applies to leads that
    arrive after it is switched on, from the next run of the leads job; a lead a person assigned or unassigned
    by hand is never assigned automatically."""
    _refuse_agents(who)

    def save(cur: psycopg2.extensions.cursor) -> dict[str, Any]:
        assignment_settings.save_assignment(cur, broker_id, body)
        return _settings(cur, broker_id)

    return _write(pool, who, broker_id, save)


@api.put("/brokers/{broker_id}/leads/{lead_id}/contact", response_model=LeadContact,
            responses={409: {"model": Problem, "description": "the phone or email is another lead's identity"},
                       422: {"description": "not a phone number or email, or nothing to set"}})
def edit_contact(pool: Pool, who: Caller, broker_id: Id, lead_id: Id, body: LeadContactIn) -> dict[str, Any]:
    """Set the lead's name, phone or email by hand (omitted or blank fields stay as they are); audited. What a
    person sets is kept when new messages arrive. A phone or email becomes an identity of the lead, so later
    messages from it join this lead; one that is already another lead's is refused (409: merge them instead)."""
    return _write(pool, who, broker_id,
                  lambda cur: db.edit_lead(cur, broker_id, lead_id, who, body.display_name, body.phone, body.email))


# --- pages -------------------------------------------------------------------------------------------

async def form_lists(request: Request) -> dict[str, list[str]]:
    # Every value of a field (checkboxes, a multiple select), not only the first as the other forms read.
    body = await request.body()
    if len(body) > 64 * 1024:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "form too large")
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: [v.replace("\x00", "") for v in values] for key, values in parsed.items()}


def _config_from_form(form: dict[str, list[str]]) -> AssignmentConfig:
    """The settings form as a config; a row with nothing in it is no rule. ValueError when it is not valid."""
    def one(name: str, default: str = "") -> str:
        return (form.get(name) or [default])[0].strip()

    rules: list[Rule] = []
    for i in range(MAX_FORM_RULES):
        channels = [c for c in form.get(f"rule{i}_channels", []) if c]
        areas = [a.strip() for a in one(f"rule{i}_areas").replace(";", ",").split(",") if a.strip()]
        people = form.get(f"rule{i}_people", [])
        if not (channels or areas or any(p.strip() for p in people)):
            continue
        if any(not (p.isdigit() and len(p) < 19) for p in people):
            raise ValueError("not a person of this broker")
        rules.append(Rule(channels=channels, areas=areas, assign_to=[int(p) for p in people]))
    return AssignmentConfig.model_validate({"mode": one("mode", "off"), "fallback": one("fallback", "round_robin"),
                                            "rules": [r.model_dump() for r in rules]})


def _problem(exc: ValidationError | ValueError) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(str(e["msg"]) for e in exc.errors())
    return str(exc)


@pages.get("/settings/assignment")
def assignment_page(pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id,
                    saved: Annotated[str | None, Query(max_length=5)] = None) -> Response:
    if session is None:
        return RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER)
    who = session.principal
    try:
        _refuse_agents(who)
        with broker_cursor(pool, who, broker_id) as cur:
            broker = queries.broker(cur, broker_id)
            found = _settings(cur, broker_id)
    except HTTPException as exc:
        return page("error.html", exc.status_code, who=who, message=exc.detail)
    config: AssignmentConfig = found["config"]
    rows = [*config.rules, *([None] * 2)][:MAX_FORM_RULES]  # two empty rows to add rules
    return page("ws_settings_assignment.html", who=who, broker=broker, settings=found, config=config, rows=rows,
                channels=CHANNELS, saved=saved == "1", csrf=csrf.token_for(tokens.secret, session.token))


@pages.post("/settings/assignment")
async def assignment_form(request: Request, pool: Pool, tokens: Tokens, session: SessionDep,
                          broker_id: Id) -> Response:
    if session is None:
        return RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER)
    who = session.principal
    form = await form_lists(request)
    if not csrf.valid(tokens.secret, session.token, (form.get(csrf.FIELD) or [""])[0]):
        return page("error.html", status.HTTP_403_FORBIDDEN, who=who,
                    message="El formulario venció. Vuelve a intentarlo.")
    try:
        _refuse_agents(who)
        config = _config_from_form(form)
        await run_in_threadpool(_write, pool, who, broker_id,
                                lambda cur: assignment_settings.save_assignment(cur, broker_id, config))
    except (ValidationError, ValueError) as exc:
        return page("error.html", status.HTTP_422_UNPROCESSABLE_CONTENT, who=who,
                    message=f"No se guardó la configuración: {_problem(exc)}")
    except HTTPException as exc:
        return page("error.html", exc.status_code, who=who, message=f"No se guardó la configuración: {exc.detail}")
    return RedirectResponse(f"/dashboard/brokers/{broker_id}/settings/assignment?saved=1",
                            status_code=status.HTTP_303_SEE_OTHER)


@pages.post("/leads/{lead_id}/contact")
async def contact_form(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id,
                       lead_id: Id) -> Response:
    if session is None:
        return RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER)
    who = session.principal
    form = {k: v[0] for k, v in (await form_lists(request)).items()}
    if not csrf.valid(tokens.secret, session.token, form.get(csrf.FIELD)):
        return page("error.html", status.HTTP_403_FORBIDDEN, who=who,
                    message="El formulario venció. Vuelve a intentarlo.")
    try:
        body = LeadContactIn(display_name=form.get("display_name"), phone=form.get("phone"), email=form.get("email"))
        await run_in_threadpool(_write, pool, who, broker_id,
                                lambda cur: db.edit_lead(cur, broker_id, lead_id, who, body.display_name, body.phone,
                                                         body.email))
    except ValidationError as exc:
        return page("error.html", status.HTTP_422_UNPROCESSABLE_CONTENT, who=who,
                    message=f"No se guardó: {_problem(exc)}")
    except HTTPException as exc:
        # A page a person reads: the conflict names the lead that has the phone or email.
        return page("error.html", exc.status_code, who=who, message=f"No se guardó: {exc.detail}")
    return RedirectResponse(f"/dashboard/brokers/{broker_id}/leads/{lead_id}", status_code=status.HTTP_303_SEE_OTHER)


# One router for the app to include: the JSON routes (in /docs) and the pages (left out of it).
router = APIRouter()
router.include_router(api)
router.include_router(pages)
