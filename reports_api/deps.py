"""What the routers share: the caller, the pool, the broker-scoped cursor, the date range and parameter types.

Everything comes from ``request.app.state`` (set by ``reports_api.app.create_app``), so the routers are
plain module-level objects and one process can hold several apps.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Annotated, Any

import psycopg2.errors
import psycopg2.extensions
from fastapi import Depends, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from reports_api import queries
from reports_api.schemas import Problem
from reports_api.scope import ScopedPool
from reports_api.security import InvalidToken, Principal, TokenSettings, read_token

MAX_ID = 2**63 - 1  # the largest bigint
MAX_RANGE_DAYS = 3 * 366
DEFAULT_RANGE_DAYS = 90

Id = Annotated[int, PathParam(ge=1, le=MAX_ID)]
Slug = Annotated[str, Query(min_length=1, max_length=40, pattern=r"^[a-z0-9_:-]+$")]
Start = Annotated[date | None, Query(description=f"first day (default: {DEFAULT_RANGE_DAYS} days before end)")]
End = Annotated[date | None, Query(description="last day, included (default: today)")]
ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": Problem}, 403: {"model": Problem}, 404: {"model": Problem},
                                           422: {"description": "invalid parameters"}}

# auto_error=False: current_principal answers the 401 itself, saying where to log in.
_bearer = HTTPBearer(auto_error=False, description="the access_token from POST /auth/token")


# async: a bare attribute read is not worth a hop to the thread pool.
async def get_tokens(request: Request) -> TokenSettings:
    tokens: TokenSettings = request.app.state.tokens
    return tokens


async def get_pool(request: Request) -> ScopedPool:
    pool: ScopedPool = request.app.state.pool
    return pool


Tokens = Annotated[TokenSettings, Depends(get_tokens)]
Pool = Annotated[ScopedPool, Depends(get_pool)]


def current_principal(tokens: Tokens,
                      credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    """The principal of the bearer token; a 401 without a valid one. Its session was checked against the
    account before the route was reached (``reports_api.sessions.SessionCheckMiddleware``)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "log in at POST /auth/token and send the token as "
                            "'Authorization: Bearer <token>'", headers={"WWW-Authenticate": "Bearer"})
    try:
        return read_token(tokens, credentials.credentials)
    except InvalidToken as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc),
                            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from exc


Caller = Annotated[Principal, Depends(current_principal)]


# A helper rather than a dependency: the route validates its dates (422) before the broker is checked (403/404).
@contextmanager
def broker_cursor(pool: ScopedPool, who: Principal, broker_id: int) -> Iterator[psycopg2.extensions.cursor]:
    """A cursor that sees ``broker_id`` only: a 403 when ``who`` may not read it, a 404 when it does not exist."""
    if not who.may_read(broker_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this account may not read that broker")
    try:
        with pool.cursor(who, broker_id) as cur:
            # Only a SUPERADMIN can name a broker that does not exist; a token's own broker does.
            if who.role == "SUPERADMIN" and queries.broker(cur, broker_id) is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"there is no broker {broker_id}")
            yield cur
    except psycopg2.errors.UndefinedTable as exc:
        # A report read before the first analytics build made its mart (a fresh install): say so, not a 500.
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "the reports are not built yet: they are, once the first leads have landed "
                            "(the analytics job)") from exc


def date_range(start: date | None, end: date | None) -> tuple[date, date]:
    """``start``..``end`` with the defaults filled in; a 422 when reversed or longer than MAX_RANGE_DAYS."""
    end = end or date.today()
    if start is None:
        if end.toordinal() < DEFAULT_RANGE_DAYS:  # year 1: no default start before it exists
            raise HTTPException(422, "end is too early; give start and end")
        start = end - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if start > end:
        raise HTTPException(422, "start is after end")
    if (end - start).days > MAX_RANGE_DAYS:
        raise HTTPException(422, f"ask for at most {MAX_RANGE_DAYS} days")
    return start, end
