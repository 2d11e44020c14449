"""Access tokens, the principal a request acts for, and the login rate limit.

Tokens are JWTs (HS256) signed with LEADFLOW_REPORTS_JWT_SECRET and carry the user's role and
broker; the API scopes every query to that broker in PostgreSQL (``reports_api.scope``).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import jwt
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from leadflow.config import ConfigurationError, Settings
from leadflow.users import Role, User, authenticate

ALGORITHM = "HS256"
ISSUER = "leadflow-reports"
MIN_SECRET_LENGTH = 32


class InvalidToken(Exception):
    """The token is missing, malformed, tampered with, expired or for another issuer."""


@dataclass(frozen=True)
class Principal:
    user_id: int
    email: str
    role: Role
    broker_id: int | None  # None: a SUPERADMIN, who may read any broker

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
              "iss": ISSUER, "iat": now, "exp": now + settings.ttl}
    return jwt.encode(claims, settings.secret, algorithm=ALGORITHM)


def read_token(settings: TokenSettings, token: str) -> Principal:
    try:
        claims: dict[str, Any] = jwt.decode(token, settings.secret, algorithms=[ALGORITHM], issuer=ISSUER,
                                            options={"require": ["exp", "iat", "sub", "iss"]})
        role = claims["role"]
        broker_id = claims["broker_id"]
        if role not in ("SUPERADMIN", "ADMIN", "AGENT") or (role == "SUPERADMIN") != (broker_id is None):
            raise InvalidToken("the token's role and broker do not fit together")
        return Principal(int(claims["sub"]), str(claims["email"]), cast(Role, role),
                         None if broker_id is None else int(broker_id))
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("the token has expired; log in again") from exc
    except (jwt.InvalidTokenError, KeyError, TypeError, ValueError) as exc:
        raise InvalidToken("the token is not valid") from exc


class LoginLimiter:
    """At most ``attempts`` logins per ``window_s`` for one client address, and as many for one email.

    Kept in the process: run one reports-API process per database, or put a shared limit in front.
    """

    def __init__(self, attempts: int = 5, window_s: float = 60.0) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._seen: defaultdict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def retry_after(self, *keys: str, now: float | None = None) -> float:
        """Seconds to wait when any key is over the limit; else 0, and the attempt is counted."""
        now = time.monotonic() if now is None else now
        with self._lock:
            waits = []
            for key in keys:
                seen = self._seen[key]
                while seen and seen[0] <= now - self.window_s:
                    seen.popleft()
                if len(seen) >= self.attempts:
                    waits.append(seen[0] + self.window_s - now)
            if waits:
                return max(waits)
            for key in keys:
                self._seen[key].append(now)
            if len(self._seen) > 10_000:  # forget keys whose window has passed
                for key in [k for k, seen in self._seen.items() if seen[-1] <= now - self.window_s]:
                    del self._seen[key]
            return 0.0


async def attempt_login(request: Request, email: str, password: str) -> tuple[User | None, float]:
    """The API's and the dashboard's login: (the user, 0) on success, (None, 0) on wrong credentials,
    (None, seconds to wait) when the address or the email is over the limit (nothing is checked then)."""
    client = request.client.host if request.client else "unknown"
    wait: float = request.app.state.limiter.retry_after(f"ip:{client}", f"email:{email.strip().lower()}")
    if wait:
        return None, wait
    user = await run_in_threadpool(authenticate, request.app.state.database_url, email, password) \
        if email and password else None
    return user, 0.0
