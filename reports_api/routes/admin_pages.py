"""The admin pages under /dashboard: brokers (SUPERADMIN), a broker's people and its audit log (its ADMINs),
and the invitation link's page where an invited person sets a password.

The same checks and writes as the JSON API (``reports_api.admin``, as the database owner). Every form carries
the session's CSRF token (the invitation's form, which has no session, one derived from its link); a form the
backend refuses comes back with the values typed and a message naming the field, with the refusal's status
(422, 409, 403), never a 500. Left out of the OpenAPI document: the JSON API is ``reports_api.routes.admin``.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

from typing import Annotated, Any
from urllib.parse import parse_qs

import psycopg2.extensions
from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from leadflow.users import UserError, hash_password
from reports_api.admin import audit, people
from reports_api.admin.access import AdminError, Invalid, NotFound
from reports_api.deps import MAX_ID, Id, Tokens
from reports_api.routes.admin import Owner, forget_sessions, invitation_url
from reports_api.routes.admin_forms import EXPIRED_FORM
from reports_api.routes.admin_forms import owner_run as _owner_run
from reports_api.routes.admin_forms import to_login as _to_login
from reports_api.routes.workspace_pages import Session, SessionDep
from reports_api.security import Principal
from reports_api.sessions import OwnerConnections
from reports_api.workspace import csrf
from reports_api.workspace.render import page

router = APIRouter(prefix="/dashboard", tags=["admin pages"], include_in_schema=False)
MAX_FORM = 16 * 1024
INVALID_LINK = "Este enlace de invitación no sirve: ya se usó, se reemplazó por uno más nuevo o venció. " \
               "Pide uno nuevo a un administrador de tu corredora."
# How a form names each field in its messages.
LABELS = {"slug": "Identificador (slug)", "name": "Nombre", "country": "País", "timezone": "Zona horaria",
          "admin_email": "Correo del administrador", "admin_display_name": "Nombre del administrador",
          "email": "Correo", "display_name": "Nombre", "role": "Rol", "disabled": "Estado",
          "password": "Contraseña", "password_confirmation": "Repite la contraseña"}
BROKER_FIELDS = ("slug", "name", "country", "timezone", "admin_email", "admin_display_name")
INVITE_FIELDS = ("email", "display_name", "role")



async def _form(request: Request) -> dict[str, str]:
    """The form's fields (first value of each), without NUL characters, which PostgreSQL refuses in text."""
    body = await request.body()
    if len(body) > MAX_FORM:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "form too large")
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0].replace("\x00", "") for key, values in parsed.items()}


def _message(exc: AdminError) -> str:
    label = LABELS.get(exc.field or "")
    return f"{label}: {exc}" if label else str(exc)



def _shown(request: Request, invitation: people.Invitation, email: str, timezone: str) -> dict[str, Any]:
    return {"email": email, "url": invitation_url(request, invitation), "expires_at": invitation.expires_at,
            "timezone": timezone}


# --- brokers (SUPERADMIN) ------------------------------------------------------------------------------

async def _brokers_page(owner: OwnerConnections, tokens: Tokens, session: Session, status_code: int = 200,
                        **context: Any) -> Response:
    try:
        brokers = await run_in_threadpool(_owner_run, owner, lambda cur: people.list_brokers(cur, session.principal))
    except AdminError as exc:
        return page("error.html", exc.status, who=session.principal, message=str(exc))
    return page("admin_brokers.html", status_code, who=session.principal, brokers=brokers,
                csrf=csrf.token_for(tokens.secret, session.token),
                **{"values": {}, "bad": None, "error": None, "created": None, "invited": None, **context})


@router.get("/admin/brokers")
async def brokers_page(owner: Owner, tokens: Tokens, session: SessionDep) -> Response:
    if session is None:
        return _to_login()
    return await _brokers_page(owner, tokens, session)


@router.post("/admin/brokers")
async def broker_form(request: Request, owner: Owner, tokens: Tokens, session: SessionDep) -> Response:
    if session is None:
        return _to_login()
    form = await _form(request)
    if not csrf.valid(tokens.secret, session.token, form.get(csrf.FIELD)):
        return page("error.html", status.HTTP_403_FORBIDDEN, who=session.principal, message=EXPIRED_FORM)
    values = {name: form.get(name, "") for name in BROKER_FIELDS}
    who = session.principal

    def create(cur: psycopg2.extensions.cursor) -> tuple[dict[str, Any], dict[str, Any], people.Invitation]:
        return people.create_broker(cur, who, slug=values["slug"], name=values["name"], country=values["country"],
                                    timezone=values["timezone"], admin_email=values["admin_email"],
                                    admin_display_name=values["admin_display_name"])

    try:
        broker, admin, invitation = await run_in_threadpool(_owner_run, owner, create)
    except AdminError as exc:
        return await _brokers_page(owner, tokens, session, exc.status, values=values, bad=exc.field,
                                   error=_message(exc))
    return await _brokers_page(owner, tokens, session, created=broker,
                               invited=_shown(request, invitation, admin["email"], broker["timezone"]))


# --- a broker's people (its ADMINs) --------------------------------------------------------------------

async def _people_page(owner: OwnerConnections, tokens: Tokens, session: Session, broker_id: int,
                       status_code: int = 200, **context: Any) -> Response:
    who = session.principal

    def read(cur: psycopg2.extensions.cursor) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return people.broker(cur, who, broker_id), people.list_people(cur, who, broker_id)

    try:
        broker, found = await run_in_threadpool(_owner_run, owner, read)
    except AdminError as exc:
        return page("error.html", exc.status, who=who, message=str(exc))
    return page("admin_users.html", status_code, who=who, broker=broker, people=found,
                csrf=csrf.token_for(tokens.secret, session.token),
                **{"values": {"role": "AGENT"}, "bad": None, "error": None, "invited": None, "saved": False,
                   **context})


@router.get("/brokers/{broker_id}/admin/users")
async def people_page(owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id,
                      saved: Annotated[str | None, Query(max_length=5)] = None) -> Response:
    if session is None:
        return _to_login()
    return await _people_page(owner, tokens, session, broker_id, saved=saved == "1")


@router.post("/brokers/{broker_id}/admin/users")
async def invite_form(request: Request, owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id) -> Response:
    if session is None:
        return _to_login()
    form = await _form(request)
    if not csrf.valid(tokens.secret, session.token, form.get(csrf.FIELD)):
        return page("error.html", status.HTTP_403_FORBIDDEN, who=session.principal, message=EXPIRED_FORM)
    values = {name: form.get(name, "") for name in INVITE_FIELDS}
    who = session.principal

    def invite(cur: psycopg2.extensions.cursor) -> tuple[dict[str, Any], people.Invitation, str]:
        person, invitation = people.invite(cur, who, broker_id, email=values["email"],
                                           display_name=values["display_name"], role=values["role"])
        return person, invitation, people.broker(cur, who, broker_id)["timezone"]

    try:
        person, invitation, timezone = await run_in_threadpool(_owner_run, owner, invite)
    except AdminError as exc:
        return await _people_page(owner, tokens, session, broker_id, exc.status, values=values, bad=exc.field,
                                  error=_message(exc))
    return await _people_page(owner, tokens, session, broker_id, status.HTTP_201_CREATED,
                              invited=_shown(request, invitation, person["email"], timezone))


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    if value not in ("true", "false"):
        raise Invalid("disabled: use true or false", "disabled")
    return value == "true"


@router.post("/brokers/{broker_id}/admin/users/{user_id}")
async def person_form(request: Request, owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id,
                      user_id: Id) -> Response:
    if session is None:
        return _to_login()
    form = await _form(request)
    if not csrf.valid(tokens.secret, session.token, form.get(csrf.FIELD)):
        return page("error.html", status.HTTP_403_FORBIDDEN, who=session.principal, message=EXPIRED_FORM)
    who = session.principal

    def change(cur: psycopg2.extensions.cursor) -> dict[str, Any]:
        return people.update(cur, who, broker_id, user_id, role=form.get("role"),
                             disabled=_flag(form.get("disabled")), display_name=form.get("display_name"))

    try:
        await run_in_threadpool(_owner_run, owner, change)
    except AdminError as exc:
        return await _people_page(owner, tokens, session, broker_id, exc.status, error=_message(exc))
    forget_sessions(request, user_id)
    return RedirectResponse(f"/dashboard/brokers/{broker_id}/admin/users?saved=1",
                            status_code=status.HTTP_303_SEE_OTHER)


@router.post("/brokers/{broker_id}/admin/users/{user_id}/invitation")
async def reinvite_form(request: Request, owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id,
                        user_id: Id) -> Response:
    if session is None:
        return _to_login()
    form = await _form(request)
    if not csrf.valid(tokens.secret, session.token, form.get(csrf.FIELD)):
        return page("error.html", status.HTTP_403_FORBIDDEN, who=session.principal, message=EXPIRED_FORM)
    who = session.principal

    def reinvite(cur: psycopg2.extensions.cursor) -> tuple[dict[str, Any], people.Invitation, str]:
        person, invitation = people.reinvite(cur, who, broker_id, user_id)
        return person, invitation, people.broker(cur, who, broker_id)["timezone"]

    try:
        person, invitation, timezone = await run_in_threadpool(_owner_run, owner, reinvite)
    except AdminError as exc:
        return await _people_page(owner, tokens, session, broker_id, exc.status, error=_message(exc))
    return await _people_page(owner, tokens, session, broker_id, status.HTTP_201_CREATED,
                              invited=_shown(request, invitation, person["email"], timezone))


# --- the audit log -------------------------------------------------------------------------------------

@router.get("/brokers/{broker_id}/admin/audit")
async def audit_page(owner: Owner, session: SessionDep, broker_id: Id,
                     before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None) -> Response:
    if session is None:
        return _to_login()
    who: Principal = session.principal

    def read(cur: psycopg2.extensions.cursor) -> tuple[dict[str, Any], list[dict[str, Any]], int | None]:
        broker = people.broker(cur, who, broker_id)
        return (broker, *audit.entries(cur, broker_id, before_id, 50))

    try:
        broker, entries, next_id = await run_in_threadpool(_owner_run, owner, read)
    except AdminError as exc:
        return page("error.html", exc.status, who=who, message=str(exc))
    return page("admin_audit.html", who=who, broker=broker, entries=entries, next_before_id=next_id)


# --- an invitation's link ------------------------------------------------------------------------------

Token = Annotated[str, PathParam(max_length=200)]


def _invite_csrf(tokens: Tokens, token: str) -> str:
    # No session yet: the form's token is tied to the link instead.
    return csrf.token_for(tokens.secret, "invitation:" + token)


@router.get("/invite/{token}")
async def invitation_page(owner: Owner, tokens: Tokens, token: Token) -> Response:
    person = await run_in_threadpool(_owner_run, owner, lambda cur: people.invitation(cur, token))
    if person is None:
        return page("error.html", status.HTTP_404_NOT_FOUND, who=None, message=INVALID_LINK)
    return page("invite.html", person=person, csrf=_invite_csrf(tokens, token), error=None, bad=None, who=None)


@router.post("/invite/{token}")
async def invitation_form(request: Request, owner: Owner, tokens: Tokens, token: Token) -> Response:
    form = await _form(request)
    person = await run_in_threadpool(_owner_run, owner, lambda cur: people.invitation(cur, token))
    if person is None:
        return page("error.html", status.HTTP_404_NOT_FOUND, who=None, message=INVALID_LINK)
    if not csrf.valid(tokens.secret, "invitation:" + token, form.get(csrf.FIELD)):
        return page("error.html", status.HTTP_403_FORBIDDEN, who=None, message=EXPIRED_FORM)

    def refused(field: str, message: str) -> Response:
        return page("invite.html", status.HTTP_422_UNPROCESSABLE_CONTENT, person=person,
                    csrf=_invite_csrf(tokens, token), error=f"{LABELS[field]}: {message}", bad=field, who=None)

    password = form.get("password", "")
    if password != form.get("password_confirmation", ""):
        return refused("password_confirmation", "no coincide con la contraseña")
    try:
        # Hashed outside the transaction: bcrypt takes a quarter of a second.
        password_hash = await run_in_threadpool(hash_password, password)
    except UserError as exc:
        return refused("password", str(exc))
    try:
        await run_in_threadpool(_owner_run, owner, lambda cur: people.accept(cur, token, password_hash))
    except NotFound:
        return page("error.html", status.HTTP_404_NOT_FOUND, who=None, message=INVALID_LINK)
    return RedirectResponse("/dashboard/login?welcome=1", status_code=status.HTTP_303_SEE_OTHER)

