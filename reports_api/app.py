"""The reports API application: login, the broker-scoped JSON reports, the dashboard and dbt docs."""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases defined in create_app.

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

import psycopg2.extensions
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from leadflow.config import env_int, export_environment
from reports_api import dashboard, queries
from reports_api.schemas import (
    Broker,
    Campaign,
    Cohort,
    Conversion,
    Funnel,
    LeadDetail,
    LeadPage,
    LoginRequest,
    Me,
    Problem,
    Token,
)
from reports_api.scope import ScopedPool
from reports_api.security import (
    InvalidToken,
    LoginLimiter,
    Principal,
    TokenSettings,
    attempt_login,
    issue_token,
    read_token,
)

MAX_ID = 2**63 - 1
MAX_RANGE_DAYS = 3 * 366
DEFAULT_RANGE_DAYS = 90
Id = Annotated[int, PathParam(ge=1, le=MAX_ID)]
Slug = Annotated[str, Query(min_length=1, max_length=40, pattern=r"^[a-z0-9_:-]+$")]
ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": Problem}, 403: {"model": Problem}, 404: {"model": Problem},
                                           422: {"description": "invalid parameters"}}
_bearer = HTTPBearer(auto_error=False, description="the access_token from POST /auth/token")


def create_app(database_url: str, tokens: TokenSettings, *, pool_size: int | None = None,
               limiter: LoginLimiter | None = None, docs_dir: Path | None = None) -> FastAPI:
    """The reports API on ``database_url``; ``docs_dir`` (dbt docs) is served at /dbt-docs/."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = ScopedPool(database_url, pool_size or env_int("LEADFLOW_REPORTS_POOL_SIZE", 8))
        try:
            yield
        finally:
            app.state.pool.close()

    app = FastAPI(
        title="Leadflow reports API", version="1", lifespan=lifespan,
        description="Each broker's funnel, cohorts, campaigns and leads. Log in at POST /auth/token and send the "
                    "token as `Authorization: Bearer …`. A token reads only its own broker (a SUPERADMIN reads any); "
                    "PostgreSQL's row-level security enforces it. The dashboard is at /dashboard.")
    app.state.database_url = database_url
    app.state.tokens = tokens
    app.state.limiter = limiter or LoginLimiter(attempts=env_int("LEADFLOW_REPORTS_LOGIN_ATTEMPTS", 5),
                                                window_s=env_int("LEADFLOW_REPORTS_LOGIN_WINDOW_S", 60))

    def principal(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "log in at POST /auth/token and send the token as "
                                "'Authorization: Bearer <token>'", headers={"WWW-Authenticate": "Bearer"})
        try:
            return read_token(tokens, credentials.credentials)
        except InvalidToken as exc:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc),
                                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from exc

    Caller = Annotated[Principal, Depends(principal)]

    @contextmanager
    def broker_cursor(request: Request, who: Principal, broker_id: int) -> Iterator[psycopg2.extensions.cursor]:
        if not who.may_read(broker_id):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this account may not read that broker")
        with request.app.state.pool.cursor(who, broker_id) as cur:
            # Only a SUPERADMIN can name a broker that does not exist; a token's own broker does.
            if who.role == "SUPERADMIN" and queries.broker(cur, broker_id) is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"there is no broker {broker_id}")
            yield cur

    def date_range(start: date | None, end: date | None) -> tuple[date, date]:
        end = end or date.today()
        start = start or end - timedelta(days=DEFAULT_RANGE_DAYS - 1)
        if start > end:
            raise HTTPException(422, "start is after end")
        if (end - start).days > MAX_RANGE_DAYS:
            raise HTTPException(422, f"ask for at most {MAX_RANGE_DAYS} days")
        return start, end

    Start = Annotated[date | None, Query(description=f"first day (default: {DEFAULT_RANGE_DAYS} days before end)")]
    End = Annotated[date | None, Query(description="last day, included (default: today)")]

    @app.post("/auth/token", response_model=Token, tags=["auth"],
              responses={401: {"model": Problem}, 429: {"model": Problem}})
    async def login(body: LoginRequest, request: Request) -> Token | JSONResponse:
        """Exchange email and password for an access token (rate-limited per address and per email)."""
        user, wait = await attempt_login(request, body.email, body.password)
        if wait:
            return JSONResponse({"detail": "too many login attempts; try again later"}, status_code=429,
                                headers={"Retry-After": str(max(1, round(wait)))})
        if user is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong email or password")
        return Token(access_token=issue_token(tokens, user), expires_in=int(tokens.ttl.total_seconds()),
                     role=user.role, broker_id=user.broker_id)

    @app.get("/me", response_model=Me, tags=["auth"], responses=ERRORS)
    def me(who: Caller) -> Me:
        return Me(user_id=who.user_id, email=who.email, role=who.role, broker_id=who.broker_id)

    @app.get("/brokers", response_model=list[Broker], tags=["reports"], responses=ERRORS)
    def list_brokers(request: Request, who: Caller) -> list[dict[str, Any]]:
        """The brokers this account reads: all for a SUPERADMIN, its own otherwise."""
        with request.app.state.pool.all_brokers_cursor(who) as cur:
            return queries.brokers(cur)

    @app.get("/brokers/{broker_id}/funnel", response_model=Funnel, tags=["reports"], responses=ERRORS)
    def funnel(request: Request, who: Caller, broker_id: Id, start: Start = None, end: End = None,
               grain: Annotated[queries.Grain, Query()] = "week", channel: Slug = "all", source: Slug = "all",
               campaign: Slug = "all") -> Response:
        """Leads entering each stage per day or week, with totals per stage over the range.

        Filter by channel (whatsapp, telegram, vapi, bland, form), source (ad, link, form, call, direct) or
        campaign (an id, or `none`); `all` rolls a dimension up. Periods start on the day (or the Monday)
        leads entered the stage.
        """
        start, end = date_range(start, end)
        f = queries.FunnelFilter(start, end, grain, channel, source, campaign)
        with broker_cursor(request, who, broker_id) as cur:
            # The busiest report: PostgreSQL writes the JSON (shaped as Funnel), no row passes through Python.
            return Response(queries.funnel_json(cur, broker_id, f), media_type="application/json")

    @app.get("/brokers/{broker_id}/conversion", response_model=list[Conversion], tags=["reports"], responses=ERRORS)
    def conversion(request: Request, who: Caller, broker_id: Id,
                   by: Annotated[queries.Dimension, Query()] = "channel", start: Start = None,
                   end: End = None) -> list[dict[str, Any]]:
        """Per channel, source or campaign: leads per stage and the rate from entry to won."""
        start, end = date_range(start, end)
        with broker_cursor(request, who, broker_id) as cur:
            return queries.conversion_by(cur, broker_id, by, start, end)

    @app.get("/brokers/{broker_id}/cohorts", response_model=list[Cohort], tags=["reports"], responses=ERRORS)
    def cohorts(request: Request, who: Caller, broker_id: Id, start: Start = None,
                end: End = None) -> list[dict[str, Any]]:
        """Weekly cohorts by first contact: of the leads first seen that week, how many reached each stage."""
        start, end = date_range(start, end)
        with broker_cursor(request, who, broker_id) as cur:
            return queries.cohorts(cur, broker_id, start, end)

    @app.get("/brokers/{broker_id}/campaigns", response_model=list[Campaign], tags=["reports"], responses=ERRORS)
    def campaigns(request: Request, who: Caller, broker_id: Id) -> list[dict[str, Any]]:
        """Every campaign with its sends (sent, delivered, read, replied, failed…) and attributed advances."""
        with broker_cursor(request, who, broker_id) as cur:
            return queries.campaigns(cur, broker_id)

    @app.get("/brokers/{broker_id}/leads", response_model=LeadPage, tags=["reports"], responses=ERRORS)
    def leads(request: Request, who: Caller, broker_id: Id,
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
        f = queries.LeadFilter(stage, temperature, min_score, max_score, channel, operation, stalled,
                               q.replace("\x00", "") if q else None, sort, order == "desc", limit, offset)
        with broker_cursor(request, who, broker_id) as cur:
            return queries.leads(cur, broker_id, f)

    @app.get("/brokers/{broker_id}/leads/{lead_id}", response_model=LeadDetail, tags=["reports"], responses=ERRORS)
    def lead(request: Request, who: Caller, broker_id: Id, lead_id: Id) -> dict[str, Any]:
        """One lead: qualification, score with its breakdown, current stage and stage history."""
        with broker_cursor(request, who, broker_id) as cur:
            found = queries.lead(cur, broker_id, lead_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"broker {broker_id} has no lead {lead_id} you may read")
        return found

    @app.get("/health", tags=["ops"])
    def health(request: Request) -> dict[str, str]:
        """PostgreSQL reachability (a 500 when it does not answer)."""
        request.app.state.pool.ping()
        return {"status": "ok"}

    app.include_router(dashboard.router(tokens, broker_cursor, date_range))
    if docs_dir is not None:
        # Mounted even before the first `dbt docs generate` has written it: it 404s until then.
        app.mount("/dbt-docs", StaticFiles(directory=docs_dir, html=True, check_dir=False), name="dbt-docs")
    return app


def from_environment() -> FastAPI:
    """For `uvicorn --factory reports_api.app:from_environment`: LEADFLOW_DATABASE_URL (or the embedded
    PostgreSQL) and LEADFLOW_REPORTS_JWT_SECRET, which is required here."""
    from assets.analytics import docs_dir

    return create_app(export_environment().database_url, TokenSettings.from_environment(), docs_dir=docs_dir())
