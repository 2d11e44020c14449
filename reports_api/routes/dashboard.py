"""The funnel dashboard's pages under /dashboard: login form, broker list and one broker's funnel.

Server-rendered (``reports_api.dashboard``), no JavaScript; left out of the OpenAPI document.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

import json
from datetime import date
from typing import Annotated, Any
from urllib.parse import parse_qs

import psycopg2.errors
import psycopg2.extensions
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from reports_api import queries
from reports_api.dashboard import BAR_MAX_WIDTH, COOKIE, funnel_bars, later_stages, page
from reports_api.deps import Id, Pool, Tokens, broker_cursor, date_range
from reports_api.security import InvalidToken, Principal, attempt_login, issue_token, read_token

router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)


# async: decoding a JWT is quicker than a hop to the thread pool.
async def _session(request: Request, tokens: Tokens) -> Principal | None:
    """The principal of the session cookie; None (log in again) when it is missing, expired or forged."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        return read_token(tokens, token)
    except InvalidToken:
        return None


Session = Annotated[Principal | None, Depends(_session)]


def _to_login() -> RedirectResponse:
    return RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER)


@router.get("", response_class=HTMLResponse)
def home(pool: Pool, who: Session) -> Response:
    if who is None:
        return _to_login()
    if who.broker_id is not None:
        return RedirectResponse(f"/dashboard/brokers/{who.broker_id}", status_code=status.HTTP_303_SEE_OTHER)
    with pool.all_brokers_cursor(who) as cur:
        brokers = queries.brokers(cur)
    return page("brokers.html", who=who, brokers=brokers)


@router.get("/login", response_class=HTMLResponse)
def login_form(welcome: Annotated[str | None, Query(max_length=1)] = None) -> HTMLResponse:
    """The login form; ``welcome=1`` after an invited person set a password."""
    return page("login.html", error=None, welcome=welcome == "1")


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, tokens: Tokens) -> Response:
    # Parsed by hand: FastAPI's Form() would need python-multipart, which is not a dependency.
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    email = (form.get("email") or [""])[0].replace("\x00", "")
    password = (form.get("password") or [""])[0].replace("\x00", "")
    user, wait = await attempt_login(request, email, password)
    if wait:
        return page("login.html", 429, error="Demasiados intentos. Espera un minuto e intenta de nuevo.")
    if user is None:
        return page("login.html", 401, error="Correo o contraseña incorrectos.")
    response = RedirectResponse("/dashboard", status_code=status.HTTP_303_SEE_OTHER)
    # Secure by setting (reports_api.security.cookie_secure), not only when this process itself sees https:
    # behind a TLS-terminating proxy it sees http.
    secure = bool(request.app.state.cookie_secure) or request.url.scheme == "https"
    response.set_cookie(COOKIE, issue_token(tokens, user), max_age=int(tokens.ttl.total_seconds()),
                        httponly=True, samesite="strict", secure=secure, path="/")
    return response


@router.post("/logout")
def logout(request: Request, tokens: Tokens) -> Response:
    """Ends this session in the database too: a copy of the cookie kept elsewhere stops working. The
    account's other sessions (another browser, an API token) stay."""
    try:
        who = read_token(tokens, request.cookies.get(COOKIE) or "")
    except InvalidToken:
        who = None  # none, forged or expired: nothing to end
    if who is not None:
        request.app.state.accounts.end_session(who)
    response = _to_login()
    response.delete_cookie(COOKIE, path="/")
    return response


NOT_BUILT = ("Los informes todavía no están construidos: se construyen cuando llegan los primeros leads. "
             "Mientras tanto, la bandeja ya funciona.")


@router.get("/brokers/{broker_id}", response_class=HTMLResponse)
def broker_page(pool: Pool, who: Session, broker_id: Id, start: date | None = None, end: date | None = None,
                grain: Annotated[queries.Grain, Query()] = "week") -> Response:
    if who is None:
        return _to_login()
    start, end = date_range(start, end)
    try:
        with broker_cursor(pool, who, broker_id) as cur:
            broker = queries.broker(cur, broker_id)
            funnel = json.loads(queries.funnel_json(cur, broker_id, queries.FunnelFilter(start, end, grain)))
            by_channel = queries.conversion_by(cur, broker_id, "channel", start, end)
            by_campaign = queries.conversion_by(cur, broker_id, "campaign", start, end)
            cohorts = queries.cohorts(cur, broker_id, start, end)
            appointments = _appointments(cur, broker_id, start, end)
    except HTTPException as exc:
        # A page, not the API's JSON problem: the 403/404 is read by a person in a browser.
        message = NOT_BUILT if exc.status_code == 503 else exc.detail
        return page("error.html", exc.status_code, who=who, message=message)
    stages = funnel["stages"]
    return page("dashboard.html", who=who, broker=broker, start=start, end=end, grain=grain,
                bars=funnel_bars(stages), stages=stages, by_channel=by_channel, by_campaign=by_campaign,
                cohorts=cohorts, later_stages=later_stages(*by_channel, *by_campaign),
                cohort_stages=[s["stage_name"] for s in (cohorts[0]["stages"] if cohorts else [])],
                lost=next((s for s in stages if s["stage"] == "perdido"), None), bar_max=BAR_MAX_WIDTH,
                appointments=appointments)


def _appointments(cur: psycopg2.extensions.cursor, broker_id: int, start: date, end: date) -> dict[str, Any] | None:
    """The appointment funnel, or None while its marts are not built (an install upgraded before its next analytics
    build): the rest of the page does not wait for them."""
    cur.execute("SAVEPOINT appointments")
    try:
        found = queries.appointment_rates(cur, broker_id, "week", start, end)
    except psycopg2.errors.UndefinedTable:
        cur.execute("ROLLBACK TO SAVEPOINT appointments")
        return None
    cur.execute("RELEASE SAVEPOINT appointments")
    return found
