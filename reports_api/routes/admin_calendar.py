"""Google Calendar connections, from the browser: a broker's ADMIN connects the broker's calendar and sees every
person's connection; any person of the broker (an AGENT too) connects their own calendar and can disconnect it.

``POST …/calendar-connections/connect`` records an authorization (``leadflow.appointments.google.begin``: the state
bound to the broker, the person and the connection, a PKCE verifier) and sends the browser to Google. Google sends
it back to ``/dashboard/google-calendar/callback``, one fixed address for every broker (the one redirect URI to
register with the OAuth client): the state is taken, for the same person only, the code exchanged, the tokens
stored sealed, and the person returned to the page. A state that is unknown, expired or another person's answers
400 and stores nothing.

These run as the database owner (the reports role has no rights on the connections), so every check is here:
the session's person and role against the broker in the path, and against the state at the callback.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

import html
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from leadflow.appointments import google
from leadflow.appointments.google import GoogleError, NotConfigured
from leadflow.config import ConfigurationError
from leadflow.credentials import CredentialError, MasterKeys
from reports_api.admin import channels
from reports_api.deps import Id, Tokens
from reports_api.routes.workspace_pages import Session, SessionDep
from reports_api.routes.workspace_settings import form_lists
from reports_api.security import Principal
from reports_api.workspace import csrf
from reports_api.workspace.render import page

pages = APIRouter(prefix="/dashboard/brokers/{broker_id}/admin/calendar-connections", tags=["admin pages"],
                  include_in_schema=False)
callback = APIRouter(include_in_schema=False)
CALLBACK_PATH = "/dashboard/google-calendar/callback"
STATE_REFUSED = ("El enlace de autorización no es válido, ya se usó o venció (o es de otra persona). Vuelve a "
                 "conectar desde la página Google Calendar.")


def _admin(who: Principal, broker_id: int) -> bool:
    return who.role == "SUPERADMIN" or (who.role == "ADMIN" and who.broker_id == broker_id)


def _require_member(who: Principal, broker_id: int) -> None:
    if not who.may_read(broker_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "solo las personas de la corredora ven sus calendarios")


def _may_manage(who: Principal, broker_id: int, agent_key: int) -> None:
    """The broker's calendar (key 0) and other people's: its admins; one's own: oneself."""
    if _admin(who, broker_id):
        return
    if agent_key != 0 and agent_key == who.user_id and who.broker_id == broker_id:
        return
    raise HTTPException(status.HTTP_403_FORBIDDEN,
                        "solo los administradores de la corredora conectan su calendario o el de otras personas")


def _keys(request: Request) -> MasterKeys:
    try:
        keys: MasterKeys = request.app.state.master_keys()
    except ConfigurationError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"no se pueden guardar credenciales: {exc}") from exc
    return keys


def _rows(cur: Any, broker_id: int, who: Principal) -> list[dict[str, Any]]:
    """One row for the broker's calendar and one per active person: their connection, or none. An AGENT sees the
    broker's row and its own."""
    found = {c.agent_key: c for c in google.connections(cur, broker_id)}
    cur.execute("""SELECT user_id, display_name, email, role FROM leadflow.users
                   WHERE broker_id = %s AND NOT disabled ORDER BY display_name, user_id""", (broker_id,))
    people = [(int(r[0]), str(r[1] or r[2]), str(r[3])) for r in cur.fetchall()]
    names = {uid: name for uid, name, _role in people}
    missing = {c.connected_by for c in found.values()} - set(names)
    if missing:
        cur.execute("SELECT user_id, display_name FROM leadflow.users WHERE user_id = ANY(%s)", (list(missing),))
        names.update({int(r[0]): str(r[1]) for r in cur.fetchall()})
    rows: list[dict[str, Any]] = [{"agent_key": 0, "name": "Calendario de la corredora", "role": "", "own": False,
             "connection": found.get(0)}]
    rows += [{"agent_key": uid, "name": name, "role": role, "own": uid == who.user_id, "connection": found.get(uid)}
             for uid, name, role in people]
    if not _admin(who, broker_id):
        rows = [r for r in rows if r["agent_key"] in (0, who.user_id)]
    for row in rows:
        conn = row["connection"]
        row["connected_by"] = names.get(conn.connected_by, "") if conn else ""
        row["may_manage"] = _admin(who, broker_id) or row["own"]
    return rows


def _render(request: Request, tokens: Any, session: Session, broker_id: int, status_code: int = 200,
            **extra: Any) -> Response:
    who = session.principal
    with request.app.state.owner.cursor() as cur:
        found = channels.broker(cur, broker_id)
        rows = _rows(cur, broker_id, who)
    return page("admin_calendar.html", status_code, who=who, broker=found, rows=rows, admin=_admin(who, broker_id),
                member=who.broker_id == broker_id, csrf=csrf.token_for(tokens.secret, session.token), **extra)


@pages.get("")
def calendar_page(request: Request, tokens: Tokens, session: SessionDep, broker_id: Id,
                  done: str | None = None) -> Response:
    if session is None:
        return RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER)
    try:
        _require_member(session.principal, broker_id)
        return _render(request, tokens, session, broker_id, done=done if done in ("connected",) else None)
    except HTTPException as exc:
        return page("error.html", exc.status_code, who=session.principal, message=exc.detail)


async def _form(request: Request, tokens: Any, session: Session) -> dict[str, str] | Response:
    form = {key: values[0] for key, values in (await form_lists(request)).items() if values}
    if not csrf.valid(tokens.secret, session.token, form.get(csrf.FIELD)):
        return page("error.html", status.HTTP_403_FORBIDDEN, who=session.principal,
                    message="El formulario venció. Vuelve a intentarlo.")
    return form


@pages.post("/connect")
async def connect_form(request: Request, tokens: Tokens, session: SessionDep, broker_id: Id) -> Response:
    """Start connecting the broker's calendar (``for=broker``) or one's own (``for=me``): off to Google."""
    if session is None:
        return RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER)
    form = await _form(request, tokens, session)
    if isinstance(form, Response):
        return form
    who = session.principal
    redirect_uri = str(request.url_for("google_calendar_callback"))

    def begin() -> str:
        _require_member(who, broker_id)
        target = form.get("for", "")
        if target not in ("broker", "me"):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "for: broker o me")
        if target == "me" and who.broker_id != broker_id:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "solo las personas de la corredora conectan su calendario")
        agent_key = 0 if target == "broker" else who.user_id
        _may_manage(who, broker_id, agent_key)
        keys = _keys(request)
        with request.app.state.owner.cursor() as cur:
            found = channels.broker(cur, broker_id)
            try:
                oauth = request.app.state.google.oauth(found.slug)
            except NotConfigured as exc:
                raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
            return google.begin(cur, keys, oauth, broker_id, who.user_id, agent_key, redirect_uri,
                                datetime.now(UTC), login_hint=who.email if agent_key else None)

    try:
        where = await run_in_threadpool(begin)
    except HTTPException as exc:
        if exc.status_code in (status.HTTP_403_FORBIDDEN, status.HTTP_404_NOT_FOUND):
            return page("error.html", exc.status_code, who=who, message=exc.detail)
        return await run_in_threadpool(_render, request, tokens, session, broker_id, exc.status_code,
                                       error=str(exc.detail))
    return RedirectResponse(where, status_code=status.HTTP_303_SEE_OTHER)


@pages.post("/{agent_key}/disconnect")
async def disconnect_form(request: Request, tokens: Tokens, session: SessionDep, broker_id: Id,
                          agent_key: int) -> Response:
    if session is None:
        return RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER)
    form = await _form(request, tokens, session)
    if isinstance(form, Response):
        return form
    who = session.principal

    def disconnect() -> bool:
        _require_member(who, broker_id)
        _may_manage(who, broker_id, agent_key)
        with request.app.state.owner.cursor() as cur:
            channels.broker(cur, broker_id)
            return google.disconnect(cur, broker_id, agent_key, who.user_id)

    try:
        gone = await run_in_threadpool(disconnect)
    except HTTPException as exc:
        return page("error.html", exc.status_code, who=who, message=exc.detail)
    return await run_in_threadpool(_render, request, tokens, session, broker_id,
                                   done="disconnected" if gone else None)


@callback.get(CALLBACK_PATH, name="google_calendar_callback")
def google_callback(request: Request, tokens: Tokens, session: SessionDep, state: str = "", code: str = "",
                    error: str = "", hop: str = "") -> Response:
    """Google's redirect after consent: the state taken (this person's only), the code exchanged, tokens stored."""
    if session is None and not hop:
        # The session cookie is SameSite=Strict, so a browser leaves it off this navigation, which comes from
        # accounts.google.com. A page of ours sends the browser on to the same address: that second request is
        # same-site and carries the cookie, and the state stays bound to the person who began.
        return _hop(state, code, error)
    if session is None:
        # The state is bound to a person: without the session that began it, it cannot be used.
        return page("error.html", status.HTTP_400_BAD_REQUEST, who=None, message=STATE_REFUSED)
    who = session.principal
    now = datetime.now(UTC)
    try:
        keys = _keys(request)
        with request.app.state.owner.cursor() as cur:
            pending = google.take(cur, keys, state, who.user_id, now)
    except (HTTPException, CredentialError):
        pending = None
    if pending is None:
        return page("error.html", status.HTTP_400_BAD_REQUEST, who=who, message=STATE_REFUSED)
    try:
        # Rights may have changed since the link was made (a role taken away): checked again.
        _require_member(who, pending.broker_id)
        _may_manage(who, pending.broker_id, pending.agent_key)
    except HTTPException as exc:
        return page("error.html", exc.status_code, who=who, message=exc.detail)
    if error or not code:
        reason = error[:60] if error else "sin código"
        return _render(request, tokens, session, pending.broker_id, status.HTTP_400_BAD_REQUEST,
                       error=f"Google no dio la autorización ({reason}). Nada se guardó.")
    try:
        with request.app.state.owner.cursor() as cur:
            found = channels.broker(cur, pending.broker_id)
        oauth = request.app.state.google.oauth(found.slug)
        with httpx.Client(timeout=10.0) as http:
            received = google.exchange(http, oauth, code[:2048], pending.verifier, pending.redirect_uri, now)
        with request.app.state.owner.cursor() as cur:
            google.save(cur, keys, pending.broker_id, pending.agent_key, received, who.user_id, now)
    except GoogleError as exc:
        return _render(request, tokens, session, pending.broker_id, status.HTTP_502_BAD_GATEWAY,
                       error=f"Google no entregó los permisos: {exc}. Nada se guardó; vuelve a intentarlo.")
    return RedirectResponse(f"/dashboard/brokers/{pending.broker_id}/admin/calendar-connections?done=connected",
                            status_code=status.HTTP_303_SEE_OTHER)


def _hop(state: str, code: str, error: str) -> Response:
    query = urlencode({"state": state[:512], "code": code[:2048], "error": error[:60], "hop": "1"})
    target = html.escape(f"{CALLBACK_PATH}?{query}", quote=True)
    body = (f'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={target}">'
            f'<title>Google Calendar</title><p><a href="{target}">Continuar</a></p>')
    # No referrer: the code must not travel to anything the page could load (it loads nothing, but keep it so).
    return HTMLResponse(body, headers={"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})


router = APIRouter()
router.include_router(pages)
router.include_router(callback)
