"""The funnel dashboard: server-rendered pages (Jinja2, inline SVG, no JavaScript) behind a login cookie.

The session cookie holds the same JWT the API issues (HttpOnly, SameSite=Strict), so the page
reads through the same broker-scoped cursor as the JSON endpoints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

import psycopg2.extensions
from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from reports_api import queries
from reports_api.security import InvalidToken, Principal, TokenSettings, attempt_login, issue_token, read_token

COOKIE = "leadflow_session"
BAR_MAX_WIDTH = 440  # pixels of the widest funnel bar; the test measures bars against it
_templates = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                         autoescape=select_autoescape(["html"]))

BrokerCursor = Callable[[Request, Principal, int], AbstractContextManager[psycopg2.extensions.cursor]]
DateRange = Callable[[date | None, date | None], tuple[date, date]]


def _page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_templates.get_template(name).render(**context), status_code=status_code)


def funnel_bars(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bar widths in pixels, proportional to the leads that entered each stage (lost leads left out)."""
    shown = [s for s in stages if s["stage"] != "perdido"]
    widest = max((s["leads_entered"] for s in shown), default=0)
    return [{**s, "width": round(BAR_MAX_WIDTH * s["leads_entered"] / widest) if widest else 0} for s in shown]


def router(tokens: TokenSettings, broker_cursor: BrokerCursor, date_range: DateRange) -> APIRouter:
    pages = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)

    def session(request: Request) -> Principal | None:
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        try:
            return read_token(tokens, token)
        except InvalidToken:
            return None

    @pages.get("", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        who = session(request)
        if who is None:
            return RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER)
        if who.broker_id is not None:
            return RedirectResponse(f"/dashboard/brokers/{who.broker_id}", status_code=status.HTTP_303_SEE_OTHER)
        with request.app.state.pool.all_brokers_cursor(who) as cur:
            brokers = queries.brokers(cur)
        return _page("brokers.html", who=who, brokers=brokers)

    @pages.get("/login", response_class=HTMLResponse)
    def login_form() -> HTMLResponse:
        return _page("login.html", error=None)

    @pages.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        email = (form.get("email") or [""])[0].replace("\x00", "")
        password = (form.get("password") or [""])[0].replace("\x00", "")
        user, wait = await attempt_login(request, email, password)
        if wait:
            return _page("login.html", 429, error="Demasiados intentos. Espera un minuto e intenta de nuevo.")
        if user is None:
            return _page("login.html", 401, error="Correo o contraseña incorrectos.")
        response = RedirectResponse("/dashboard", status_code=status.HTTP_303_SEE_OTHER)
        response.set_cookie(COOKIE, issue_token(tokens, user), max_age=int(tokens.ttl.total_seconds()),
                            httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/")
        return response

    @pages.post("/logout")
    def logout() -> Response:
        response = RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER)
        response.delete_cookie(COOKIE, path="/")
        return response

    @pages.get("/brokers/{broker_id}", response_class=HTMLResponse)
    def broker_page(request: Request, broker_id: Annotated[int, PathParam(ge=1, le=2**63 - 1)],
                    start: date | None = None, end: date | None = None,
                    grain: Annotated[queries.Grain, Query()] = "week") -> Response:
        who = session(request)
        if who is None:
            return RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER)
        start, end = date_range(start, end)
        try:
            with broker_cursor(request, who, broker_id) as cur:
                broker = queries.broker(cur, broker_id)
                funnel = json.loads(queries.funnel_json(cur, broker_id, queries.FunnelFilter(start, end, grain)))
                by_channel = queries.conversion_by(cur, broker_id, "channel", start, end)
                by_campaign = queries.conversion_by(cur, broker_id, "campaign", start, end)
                cohorts = queries.cohorts(cur, broker_id, start, end)
        except HTTPException as exc:
            return _page("error.html", exc.status_code, who=who, message=exc.detail)
        stages = funnel["stages"]
        later: dict[str, dict[str, Any]] = {}
        for row in (*by_channel, *by_campaign):
            row["reached"] = {s["stage"]: s["leads_entered"] for s in row["stages"]}
            later.update({s["stage"]: s for s in row["stages"] if s["stage"] != "entrada"})
        return _page("dashboard.html", who=who, broker=broker, start=start, end=end, grain=grain,
                     bars=funnel_bars(stages), stages=stages, by_channel=by_channel, by_campaign=by_campaign,
                     cohorts=cohorts, later_stages=sorted(later.values(), key=lambda s: s["stage_position"]),
                     cohort_stages=[s["stage_name"] for s in (cohorts[0]["stages"] if cohorts else [])],
                     lost=next((s for s in stages if s["stage"] == "perdido"), None), bar_max=BAR_MAX_WIDTH)

    return pages
