"""Access tokens, the principal a request acts for, and the login rate limit.

Tokens are JWTs (HS256) signed with LEADFLOW_REPORTS_JWT_SECRET and carry the user's role and
broker, the user's token version and a session id (``jti``); the API scopes every query to that
broker in PostgreSQL (``reports_api.scope``). A signature is not enough to be let in: every request's
token is checked against the account (``reports_api.sessions``), so disabling, removing or changing a
user, or logging out, ends its sessions.
"""

from __future__ import annotations

import ipaddress
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar, cast

import jwt
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from leadflow.config import ConfigurationError, Settings
from leadflow.users import Role, User, authenticate

ALGORITHM = "HS256"
ISSUER = "leadflow-reports"
MIN_SECRET_LENGTH = 32
_V = TypeVar("_V")


class InvalidToken(Exception):
    """The token is missing, malformed, tampered with, expired or for another issuer."""


@dataclass(frozen=True)
class Principal:
    user_id: int
    email: str
    role: Role
    broker_id: int | None  # None: a SUPERADMIN, who may read any broker
    token_version: int = 0  # the account's users.token_version when the token was issued
    session_id: str = ""  # the token's jti: logging out revokes this one session
    expires_at: float = 0.0  # the token's exp (Unix time), until which a revocation must be kept

    def may_read(self, broker_id: int) -> bool:
        return self.role == "SUPERADMIN" or self.broker_id == broker_id


@dataclass(frozen=True)
class TokenSettings:
    secret: str
    ttl: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenSettings:
        """LEADFLOW_REPORTS_JWT_SECRET (at least 32 characters) and LEADFLOW_REPORTS_TOKEN_MINUTES."""
        if len(settings.reports_jwt_secret) < MIN_SECRET_LENGTH:
            raise ConfigurationError(
                f"LEADFLOW_REPORTS_JWT_SECRET must hold at least {MIN_SECRET_LENGTH} random characters "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)")
        return cls(settings.reports_jwt_secret, timedelta(minutes=settings.reports_token_minutes))

    @classmethod
    def ephemeral(cls, settings: Settings | None = None) -> TokenSettings:
        """A random secret for one process (`make up`): tokens die with it."""
        minutes = (settings or Settings.from_environment()).reports_token_minutes
        return cls(secrets.token_urlsafe(48), timedelta(minutes=minutes))


def issue_token(settings: TokenSettings, user: User, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    claims = {"sub": str(user.user_id), "email": user.email, "role": user.role, "broker_id": user.broker_id,
              "ver": user.token_version, "jti": secrets.token_urlsafe(16), "iss": ISSUER, "iat": now,
              "exp": now + settings.ttl}
    return jwt.encode(claims, settings.secret, algorithm=ALGORITHM)


def read_token(settings: TokenSettings, token: str) -> Principal:
    try:
        claims: dict[str, Any] = jwt.decode(token, settings.secret, algorithms=[ALGORITHM], issuer=ISSUER,
                                            options={"require": ["exp", "iat", "sub", "iss", "jti"]})
        role = claims["role"]
        broker_id = claims["broker_id"]
        if role not in ("SUPERADMIN", "ADMIN", "AGENT") or (role == "SUPERADMIN") != (broker_id is None):
            raise InvalidToken("the token's role and broker do not fit together")
        if type(claims["ver"]) is not int or not isinstance(claims["jti"], str) or not claims["jti"]:
            raise InvalidToken("the token is not valid")
        return Principal(int(claims["sub"]), str(claims["email"]), cast(Role, role),
                         None if broker_id is None else int(broker_id), claims["ver"], claims["jti"],
                         float(claims["exp"]))
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("the token has expired; log in again") from exc
    except (jwt.InvalidTokenError, KeyError, TypeError, ValueError) as exc:
        raise InvalidToken("the token is not valid") from exc


class Accounts(Protocol):
    """What the reports API asks of the accounts database besides the password check
    (``reports_api.sessions.PgAccounts``; tests without a database give a stand-in)."""

    def confirm(self, principal: Principal) -> bool:
        """Whether the token's session still stands: the account is enabled, not removed, unchanged since the
        token was issued, and the session was not logged out."""

    def end_session(self, principal: Principal) -> None:
        """Log the token's session out (its other sessions stay)."""

    def login_limiter(self, attempts: int, window_s: float) -> LoginLimiter:
        """The login limit of this API process, shared with every other process on the same database."""

    def close(self) -> None:
        """Let go of the connections."""


def backoff_delay(failures: int, attempts: int, window_s: float, max_delay_s: float) -> float:
    """How long an email waits after ``failures`` failures in a row: nothing for the first ``attempts``, then
    ``window_s / attempts``, doubling with each further failure, at most ``max_delay_s``."""
    over = failures - attempts
    if over < 0:
        return 0.0
    # The exponent is capped so a huge count costs nothing to compute; the delay is capped anyway.
    return float(min(window_s / attempts * 2 ** min(over, 64), max_delay_s))


class LoginLimiter:
    """Login throttling, kept in this process: a hard limit per client address and a backoff per email.

    Per address: at most ``attempts`` logins per ``window_s`` (sliding), whatever their outcome; the
    next waits until the oldest leaves the window. Per email: only failures count, and a success
    clears them. The first ``attempts`` failures cost nothing; after that each attempt waits for a
    delay that starts at ``window_s / attempts`` and doubles with every further failure, up to
    ``max_delay_s``; an email quiet for ``window_s`` after its delay is forgotten. A hard lock per
    email would let anyone lock a person out with a few wrong passwords (issue 17, finding 6b);
    the backoff still slows a guesser spread over many addresses to a few guesses an hour, and the
    person waits at most ``max_delay_s``.

    Memory is bounded (issue 17, finding 1): a refused attempt stores nothing, and each table keeps
    at most ``max_entries`` keys, dropping expired keys first, then the least recently used.

    A second process has its own counts; ``reports_api.sessions.SharedLoginLimiter`` adds the same limits
    counted in PostgreSQL across processes, behind this one (which spares the database a flood).
    """

    def __init__(self, attempts: int = 5, window_s: float = 60.0, *, max_delay_s: float = 900.0,
                 max_entries: int = 10_000) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self.max_delay_s = max_delay_s
        self.max_entries = max_entries
        # Ordered by last use, so the front holds what expires or is evicted first.
        self._addresses: OrderedDict[str, deque[float]] = OrderedDict()
        self._emails: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    def entries(self) -> int:
        """How many addresses and emails are remembered (not ``__len__``: an empty limiter would be falsy)."""
        return len(self._addresses) + len(self._emails)

    def delay(self, failures: int) -> float:
        """How long an email waits after ``failures`` failures in a row."""
        return backoff_delay(failures, self.attempts, self.window_s, self.max_delay_s)

    def _address_expired(self, seen: deque[float], now: float) -> bool:
        return not seen or seen[-1] <= now - self.window_s

    def _email_expired(self, failures: _Failures, now: float) -> bool:
        return now >= failures.last + self.delay(failures.count) + self.window_s

    def check(self, address: str, email: str, now: float | None = None) -> float:
        """Seconds to wait when the address or the email is over its limit (nothing is stored then);
        else 0, and the attempt is counted: against the address, and as a failure of the email until
        ``succeeded`` clears it (so concurrent guesses cannot all pass before the first one fails)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            waits = []
            seen = self._addresses.get(address)
            if seen is not None:
                while seen and seen[0] <= now - self.window_s:
                    seen.popleft()
                if not seen:
                    del self._addresses[address]
                    seen = None
                elif len(seen) >= self.attempts:
                    waits.append(seen[0] + self.window_s - now)
            failures = self._emails.get(email)
            if failures is not None:
                ready = failures.last + self.delay(failures.count)
                if ready > now:
                    waits.append(ready - now)
            if waits:
                return max(waits)
            if seen is None:
                seen = self._addresses[address] = self._room(self._addresses, self._address_expired, now, deque())
            seen.append(now)
            self._addresses.move_to_end(address)
            if failures is None or self._email_expired(failures, now):
                failures = self._emails[email] = self._room(self._emails, self._email_expired, now, _Failures())
            failures.count += 1
            failures.last = now
            self._emails.move_to_end(email)
            return 0.0

    def succeeded(self, email: str) -> None:
        """The email's password was right: its failures are forgotten."""
        with self._lock:
            self._emails.pop(email, None)

    def _room(self, table: OrderedDict[str, _V], expired: Callable[[_V, float], bool], now: float, new: _V) -> _V:
        """Make room in ``table`` for one more key, then give back ``new``."""
        while table:
            key, value = next(iter(table.items()))
            if not expired(value, now):
                break
            del table[key]
        while len(table) >= self.max_entries:
            table.popitem(last=False)
        return new


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0


def address_key(host: str) -> str:
    """The login limit's key for a client address: an IPv6 client counts by its /64, which one subscriber
    usually holds whole (one key per address would give each a fresh limit)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def email_key(email: str) -> str:
    # Cut: the dashboard's form has no length limit, and the key is kept in memory.
    return email.strip().lower()[:320]


def cookie_secure(settings: Settings, bind_host: str | None = None) -> bool:
    """Whether the session cookie is Secure: LEADFLOW_COOKIE_SECURE when set; else on, unless the reports
    API listens on a loopback address (``bind_host``, default LEADFLOW_REPORTS_HOST; e.g. `make up`), where
    the browser is on the same machine and plain http is all there is."""
    if settings.cookie_secure is not None:
        return settings.cookie_secure
    host = (bind_host or settings.reports_host).strip("[]")
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


async def attempt_login(request: Request, email: str, password: str) -> tuple[User | None, float]:
    """The API's and the dashboard's login: (the user, 0) on success, (None, 0) on wrong credentials,
    (None, seconds to wait) when the address or the email is over the limit (nothing is checked then).

    The address is ``request.client``, which ``reports_api.proxies`` resolved from trusted proxies only.
    """
    limiter: LoginLimiter = request.app.state.limiter
    client = request.client.host if request.client else "unknown"
    key = email_key(email)
    # In a thread: the default limiter also counts in PostgreSQL.
    wait = await run_in_threadpool(limiter.check, address_key(client), key)
    if wait:
        return None, wait
    user = await run_in_threadpool(authenticate, request.app.state.database_url, email, password) \
        if email and password else None
    if user is not None:
        await run_in_threadpool(limiter.succeeded, key)
    return user, 0.0
