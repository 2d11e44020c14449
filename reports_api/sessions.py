"""Whether a token's session still stands, and the login limit every API process shares (issue 17,
findings 1 and 2): the reports API's own bookkeeping in PostgreSQL, as the database owner.

A valid signature is not enough. ``SessionCheckMiddleware`` looks up every request's bearer token and
session cookie: the account must exist, be enabled and not removed, have the ``token_version`` the
token was issued with (any change of role, broker, email, password or disabled flag raises it) and the
role and broker the token names, and the session (the token's ``jti``) must not have been logged out.
A bearer token that fails gets a 401; a cookie that fails is dropped from the request, so the page
asks for a login. Answers are kept ``SESSION_CACHE_S`` seconds per session in each process, so a
change reaches another process's requests within that time; in the process that logged a session
out, at once.

Logging out revokes that one session (``revoked_sessions``, kept until the token expires), not the
account's other sessions: a person leaving the dashboard does not cut off their own API scripts.
Ending every session is what disabling or changing the account does.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.pool
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from leadflow.config import to_libpq_url
from reports_api.dashboard import COOKIE
from reports_api.security import (
    Accounts,
    InvalidToken,
    LoginLimiter,
    Principal,
    TokenSettings,
    backoff_delay,
    read_token,
)

SESSION_CACHE_S = 2.0
CACHE_ENTRIES = 10_000
OWNER_POOL_SIZE = 4
# One in this many allowed logins also deletes every expired row of the shared limit (each login deletes
# its own address's expired rows anyway).
SWEEP_EVERY = 100


class OwnerConnections:
    """A few owner connections, opened on first use (creating the app connects to nothing)."""

    def __init__(self, url: str, size: int = OWNER_POOL_SIZE) -> None:
        self._url = url
        self._size = size
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._opening = threading.Lock()
        self._free = threading.BoundedSemaphore(size)

    @contextmanager
    def cursor(self) -> Iterator[psycopg2.extensions.cursor]:
        """One transaction: committed at the end of the block, rolled back on an exception."""
        with self._free:
            pool = self._open()
            conn = pool.getconn()
            broken = False
            try:
                with conn, conn.cursor() as cur:
                    yield cur
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                broken = True
                raise
            finally:
                pool.putconn(conn, close=broken or bool(conn.closed))

    def _open(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._opening:
            if self._pool is None:
                # minconn = maxconn: psycopg2's pool closes every connection given back beyond minconn.
                self._pool = psycopg2.pool.ThreadedConnectionPool(self._size, self._size, to_libpq_url(self._url),
                                                                  connect_timeout=5,
                                                                  application_name="leadflow-reports-accounts")
            return self._pool

    def close(self) -> None:
        with self._opening:
            if self._pool is not None:
                self._pool.closeall()
                self._pool = None


class PgAccounts:
    """``reports_api.security.Accounts`` on the application database (LEADFLOW_DATABASE_URL)."""

    def __init__(self, url: str, *, cache_s: float = SESSION_CACHE_S, max_entries: int = CACHE_ENTRIES) -> None:
        self._db = OwnerConnections(url)
        self.cache_s = cache_s
        self.max_entries = max_entries
        # session id → (until when the answer holds, the answer, the account), oldest first.
        self._cache: OrderedDict[str, tuple[float, bool, int]] = OrderedDict()
        self._lock = threading.Lock()

    def confirm(self, principal: Principal) -> bool:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(principal.session_id)
            if cached is not None and cached[0] > now:
                return cached[1]
        with self._db.cursor() as cur:
            cur.execute("""
                SELECT u.role, u.broker_id, u.token_version, u.disabled OR u.removed_at IS NOT NULL,
                       EXISTS (SELECT 1 FROM leadflow.revoked_sessions r WHERE r.session_id = %s)
                FROM leadflow.users u WHERE u.user_id = %s""", (principal.session_id, principal.user_id))
            row = cur.fetchone()
        valid = row is not None and (row[0], row[1], row[2]) == (
            principal.role, principal.broker_id, principal.token_version) and not row[3] and not row[4]
        self._remember(principal.session_id, valid, now, principal.user_id)
        return valid

    def end_session(self, principal: Principal) -> None:
        with self._db.cursor() as cur:
            # Expired tokens fail on their own: their revocations are only dead weight.
            cur.execute("DELETE FROM leadflow.revoked_sessions WHERE expires_at < now()")
            cur.execute("""INSERT INTO leadflow.revoked_sessions (session_id, user_id, expires_at)
                           VALUES (%s, %s, to_timestamp(%s)) ON CONFLICT (session_id) DO NOTHING""",
                        (principal.session_id, principal.user_id, principal.expires_at))
        self._remember(principal.session_id, False, time.monotonic(), principal.user_id)

    def forget_user(self, user_id: int) -> None:
        """Drop this process's answers about the account's sessions: after an admin changed it here, its very
        next request is checked against the database (other processes still within ``cache_s``)."""
        with self._lock:
            for session_id in [s for s, (_, _, user) in self._cache.items() if user == user_id]:
                del self._cache[session_id]

    def _remember(self, session_id: str, valid: bool, now: float, user_id: int) -> None:
        with self._lock:
            self._cache[session_id] = (now + self.cache_s, valid, user_id)
            self._cache.move_to_end(session_id)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)

    def login_limiter(self, attempts: int, window_s: float) -> LoginLimiter:
        return SharedLoginLimiter(self._db, attempts=attempts, window_s=window_s)

    def close(self) -> None:
        self._db.close()


def _lock_key(kind: str, value: str) -> int:
    """A 64-bit advisory lock key for one address or email."""
    return int.from_bytes(hashlib.blake2b(f"leadflow-login:{kind}:{value}".encode(), digest_size=8).digest(),
                          "big", signed=True)


class SharedLoginLimiter(LoginLimiter):
    """The in-process limiter, then the same limits counted in PostgreSQL for every API process.

    The process's own limiter answers first: a flood from one address is refused without a query, and this
    process's memory stays bounded as before. An attempt it lets through is checked against
    ``login_attempts`` (per address, sliding window) and ``login_failures`` (per email, the same backoff),
    under advisory locks on the address and the email so concurrent processes cannot all pass; a refused
    attempt writes nothing. Rows are deleted once they no longer count, so the tables hold at most what
    the allowed logins of one window (and the emails still backing off) wrote, and each allowed login
    costs a bcrypt check first.
    """

    def __init__(self, db: OwnerConnections, attempts: int = 5, window_s: float = 60.0, *,
                 max_delay_s: float = 900.0, max_entries: int = 10_000) -> None:
        super().__init__(attempts, window_s, max_delay_s=max_delay_s, max_entries=max_entries)
        self._db = db
        self._calls = 0

    def check(self, address: str, email: str, now: float | None = None) -> float:
        wait = super().check(address, email, now)
        if wait:
            return wait
        return self._shared_check(address, email)

    def succeeded(self, email: str) -> None:
        super().succeeded(email)
        with self._db.cursor() as cur:
            cur.execute("DELETE FROM leadflow.login_failures WHERE email = %s", (email,))

    def _shared_check(self, address: str, email: str) -> float:
        self._calls += 1
        sweep = self._calls % SWEEP_EVERY == 0
        with self._db.cursor() as cur:
            # In one order for everyone: two logins never wait for each other's second lock.
            for key in sorted({_lock_key("address", address), _lock_key("email", email)}):
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            cur.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
            now = float(_one(cur)[0])
            since = now - self.window_s
            cur.execute("""SELECT count(*), min(extract(epoch FROM attempted_at))::float8 FROM leadflow.login_attempts
                           WHERE address = %s AND attempted_at > to_timestamp(%s)""", (address, since))
            seen, oldest = _one(cur)
            cur.execute("""SELECT failures, extract(epoch FROM ready_at)::float8, extract(epoch FROM forget_at)::float8
                           FROM leadflow.login_failures WHERE email = %s""", (email,))
            failures = cur.fetchone()
            waits = []
            if seen >= self.attempts:
                waits.append(float(oldest) + self.window_s - now)
            if failures is not None and failures[1] > now:
                waits.append(float(failures[1]) - now)
            if waits:
                return max(max(waits), 0.001)
            count = 1 if failures is None or failures[2] <= now else int(failures[0]) + 1
            ready = now + backoff_delay(count, self.attempts, self.window_s, self.max_delay_s)
            cur.execute("DELETE FROM leadflow.login_attempts WHERE address = %s AND attempted_at <= to_timestamp(%s)",
                        (address, since))
            cur.execute("INSERT INTO leadflow.login_attempts (address, attempted_at) VALUES (%s, to_timestamp(%s))",
                        (address, now))
            cur.execute("""INSERT INTO leadflow.login_failures (email, failures, ready_at, forget_at)
                           VALUES (%s, %s, to_timestamp(%s), to_timestamp(%s))
                           ON CONFLICT (email) DO UPDATE SET failures = EXCLUDED.failures,
                               ready_at = EXCLUDED.ready_at, forget_at = EXCLUDED.forget_at""",
                        (email, count, ready, ready + self.window_s))
            if sweep:
                cur.execute("DELETE FROM leadflow.login_attempts WHERE attempted_at <= to_timestamp(%s)", (since,))
                cur.execute("DELETE FROM leadflow.login_failures WHERE forget_at <= to_timestamp(%s)", (now,))
            return 0.0


def _one(cur: psycopg2.extensions.cursor) -> tuple[Any, ...]:
    row = cur.fetchone()
    assert row is not None
    return tuple(row)


class SessionCheckMiddleware:
    """Every request's bearer token and session cookie, checked against the account before any route runs
    (the dashboard's pages, the dbt docs and the JSON reports alike)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        headers = Headers(scope=scope)
        kind, _, credentials = headers.get("authorization", "").partition(" ")
        if kind.lower() == "bearer" and credentials.strip() and \
                not await _stands(state.tokens, state.accounts, credentials.strip()):
            if scope["type"] == "http":
                answer = JSONResponse({"detail": "this session has ended; log in again"}, status_code=401,
                                      headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
                await answer(scope, receive, send)
                return
            scope = _without(scope, b"authorization")  # a websocket cannot be answered 401: it gets no token
        cookies = cookie_parser(headers.get("cookie", ""))
        if cookies.get(COOKIE) and not await _stands(state.tokens, state.accounts, cookies[COOKIE]):
            # As if the browser had sent none: the page asks for a login.
            del cookies[COOKIE]
            others = "; ".join(f"{name}={value}" for name, value in cookies.items())
            scope = _without(scope, b"cookie", others.encode("latin-1", "replace") if others else None)
        await self.app(scope, receive, send)


def _without(scope: Scope, header: bytes, replacement: bytes | None = None) -> Scope:
    """``scope`` with the request header ``header`` left out, or replaced by one ``replacement``."""
    kept = [(k, v) for k, v in scope["headers"] if k != header]
    return {**scope, "headers": kept + ([(header, replacement)] if replacement is not None else [])}


async def _stands(tokens: TokenSettings, accounts: Accounts, token: str) -> bool:
    """False when the token is genuine but its session has ended. A token that is not genuine (forged,
    expired) is left to the route, which refuses it with its own answer."""
    try:
        principal = read_token(tokens, token)
    except InvalidToken:
        return True
    return bool(await run_in_threadpool(accounts.confirm, principal))
