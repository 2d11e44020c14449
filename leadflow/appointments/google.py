"""Google Calendar for appointments: OAuth with refresh tokens per person or per broker, and the Calendar API calls
the sync makes (freeBusy, events insert / get / patch / delete).

**OAuth.** ``begin`` makes the authorization URL (scopes calendar.events and calendar.freebusy, plus openid/email
so the page can say which Google account is connected; ``access_type=offline`` and ``prompt=consent`` so Google
hands a refresh token every time; PKCE S256) and records the ``state``: only its SHA-256 is stored, with the
broker, the person and the connection it will make, its PKCE verifier sealed, and a 15-minute expiry. ``take``
consumes it once, for that same person. ``exchange`` trades the code for tokens, ``refresh`` a refresh token for a
new access token. The OAuth client is the broker's own when its admin stored one (``google_oauth_client_id`` and
``_secret`` on the Canales page), else ``LEADFLOW_GOOGLE_OAUTH_CLIENT_ID`` / ``_SECRET``.

**Connections** (``leadflow.google_calendar_connections``, migration 0029): one per broker and ``agent_key`` (the
person's user id, 0 for the broker's calendar). The tokens are one JSON value sealed with
``leadflow.credentials.seal`` under the kind ``google_calendar_connection:<agent_key>``: the associated data binds
the ciphertext to the broker and the connection, so a row copied elsewhere does not open.

**Calls** (``CalendarSession``): an access token that has expired (by its ``expires_at``) is refreshed before the
call; a 401 refreshes and retries once, and a second 401 (or a refresh Google refuses: ``invalid_grant``, a
revoked consent) raises ``ConnectionBroken`` — the caller marks the connection broken and the admin is told.
429 and 5xx (and transport errors) are retried after Retry-After or 1, 2, 4… seconds, bounded in count and in
each wait, then ``TryLater`` with the reason: the caller keeps the work pending. 409/412 on a patch raise
``Conflict`` (the caller re-reads the event for its etag and patches again); 404/410 on a delete mean it is
already gone. Nothing here logs, and no error message carries a token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import psycopg2.extensions

from leadflow import logredact
from leadflow.config import Settings
from leadflow.credentials import CredentialSource, MasterKeys, Sealed, seal, unseal

logredact.install()

SCOPES = ("openid", "email", "https://www.googleapis.com/auth/calendar.events",
          "https://www.googleapis.com/auth/calendar.freebusy")
STATE_TTL = timedelta(minutes=15)
# An access token this close to its expiry is refreshed before the call rather than refused during it.
EXPIRY_MARGIN = timedelta(seconds=60)
Cursor = psycopg2.extensions.cursor
Interval = tuple[datetime, datetime]


class GoogleError(Exception):
    """A Google call that did not do what was asked; the message says why (never a token)."""


class NotConfigured(GoogleError):
    """No OAuth client for this broker: neither stored by its admin nor in the environment."""


class ConnectionBroken(GoogleError):
    """Google refused the connection's tokens even after a refresh: a person must connect again."""


class TryLater(GoogleError):
    """Google is busy or away (429, 5xx, no answer) after the bounded retries: keep the work pending."""


class Refused(GoogleError):
    """Google refused the request for good (a 4xx other than those handled)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Conflict(GoogleError):
    """The event changed since its etag was read (409/412)."""


class Gone(GoogleError):
    """The event is not there any more (404/410)."""


@dataclass(frozen=True)
class OAuthClient:
    client_id: str
    client_secret: str = field(repr=False)
    auth_url: str
    token_url: str


@dataclass(frozen=True)
class Tokens:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime
    scope: str = ""
    email: str | None = None

    def to_json(self) -> str:
        return json.dumps({"access_token": self.access_token, "refresh_token": self.refresh_token,
                           "expires_at": self.expires_at.isoformat(), "scope": self.scope})

    @classmethod
    def from_json(cls, text: str) -> Tokens:
        data = json.loads(text)
        return cls(data["access_token"], data["refresh_token"], datetime.fromisoformat(data["expires_at"]),
                   data.get("scope", ""))


@dataclass(frozen=True)
class Google:
    """Where Google is and which OAuth client to use: built once per process (``from_settings``); tests point the
    URLs at a local fake. ``sleep`` and the bounds of the backoff are here so a test waits for nothing."""

    api_url: str
    auth_url: str
    token_url: str
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    credentials: CredentialSource | None = None
    timeout_s: float = 10.0
    tries: int = 3
    max_wait_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_settings(cls, settings: Settings, credentials: CredentialSource | None = None) -> Google:
        return cls(settings.google_calendar_api_url.rstrip("/"), settings.google_oauth_auth_url,
                   settings.google_oauth_token_url, settings.google_oauth_client_id,
                   settings.google_oauth_client_secret, credentials)

    def oauth(self, slug: str) -> OAuthClient:
        """The broker's stored OAuth client when its admin stored one, else the environment's."""
        client_id = self.credentials.get(slug, "google_oauth_client_id") if self.credentials else None
        client_secret = self.credentials.get(slug, "google_oauth_client_secret") if self.credentials else None
        if not (client_id and client_secret):
            client_id, client_secret = self.client_id, self.client_secret
        if not (client_id and client_secret):
            raise NotConfigured("no Google OAuth client: set LEADFLOW_GOOGLE_OAUTH_CLIENT_ID and "
                                "LEADFLOW_GOOGLE_OAUTH_CLIENT_SECRET, or store the broker's own on the Canales page")
        return OAuthClient(client_id, client_secret, self.auth_url, self.token_url)

    def http(self) -> httpx.Client:
        return httpx.Client(timeout=self.timeout_s)


# --- OAuth ------------------------------------------------------------------------------------------------

def _state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def _state_kind(state_hash: str) -> str:
    return f"google_oauth_state:{state_hash}"


def connection_kind(agent_key: int) -> str:
    """What a connection's sealed tokens are bound to (with the broker id): ``credentials.seal``'s kind."""
    return f"google_calendar_connection:{agent_key}"


def begin(cur: Cursor, keys: MasterKeys, client: OAuthClient, broker_id: int, user_id: int, agent_key: int,
          redirect_uri: str, now: datetime, login_hint: str | None = None) -> str:
    """Record a new authorization and return the URL to send the person to."""
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)  # 86 characters of the unreserved set: within PKCE's 43-128
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    hashed = _state_hash(state)
    sealed = seal(keys, broker_id, _state_kind(hashed), verifier)
    cur.execute("DELETE FROM leadflow.google_oauth_states WHERE expires_at < %s", (now,))
    cur.execute("""INSERT INTO leadflow.google_oauth_states (state_hash, broker_id, user_id, agent_key, redirect_uri,
                       key_id, wrapped_key, verifier, created_at, expires_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (hashed, broker_id, user_id, agent_key, redirect_uri, sealed.key_id, sealed.wrapped_key,
                 sealed.ciphertext, now, now + STATE_TTL))
    params = {"client_id": client.client_id, "redirect_uri": redirect_uri, "response_type": "code",
              "scope": " ".join(SCOPES), "access_type": "offline", "prompt": "consent",
              "include_granted_scopes": "true", "state": state, "code_challenge": challenge,
              "code_challenge_method": "S256", **({"login_hint": login_hint} if login_hint else {})}
    return f"{client.auth_url}?{urlencode(params, quote_via=quote)}"


@dataclass(frozen=True)
class Pending:
    """An authorization begun by ``user_id`` for the connection ``agent_key`` of ``broker_id``."""

    broker_id: int
    user_id: int
    agent_key: int
    redirect_uri: str
    verifier: str = field(repr=False)


def take(cur: Cursor, keys: MasterKeys, state: str, user_id: int, now: datetime) -> Pending | None:
    """The authorization this ``state`` names, consumed; None when it is unknown, expired, or another person's
    (someone else's state is left alone: a forged callback cannot spend a real one)."""
    if not state or len(state) > 512:
        return None
    hashed = _state_hash(state)
    cur.execute("""SELECT broker_id, user_id, agent_key, redirect_uri, key_id, wrapped_key, verifier, expires_at
                   FROM leadflow.google_oauth_states WHERE state_hash = %s FOR UPDATE""", (hashed,))
    row = cur.fetchone()
    if row is None or row[1] != user_id:
        return None
    cur.execute("DELETE FROM leadflow.google_oauth_states WHERE state_hash = %s", (hashed,))
    if row[7] < now:
        return None
    verifier = unseal(keys, row[0], _state_kind(hashed), Sealed(row[4], bytes(row[5]), bytes(row[6])))
    return Pending(row[0], row[1], row[2], row[3], verifier)


def _email_of(id_token: str | None) -> str | None:
    """The account's email from the ID token Google's token endpoint just handed us over TLS: read, not verified
    (Google's guidance for a token received directly from it), and only ever shown, never trusted for access."""
    if not id_token or id_token.count(".") != 2:
        return None
    try:
        payload = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    email = claims.get("email") if isinstance(claims, dict) else None
    return email if isinstance(email, str) and len(email) <= 320 else None


def _token_call(http: httpx.Client, client: OAuthClient, form: dict[str, str]) -> dict[str, Any]:
    try:
        response = http.post(client.token_url, data={"client_id": client.client_id,
                                                     "client_secret": client.client_secret, **form},
                             headers={"Accept": "application/json"})
    except httpx.TransportError as exc:
        raise TryLater(f"Google's token endpoint did not answer ({type(exc).__name__})") from exc
    body = _json(response)
    if response.status_code == 429 or response.status_code >= 500:
        raise TryLater(f"Google's token endpoint answered {response.status_code}")
    if response.status_code >= 400:
        # Google's error codes (invalid_grant, invalid_client…) name the problem and carry no secret.
        code = str(body.get("error") or "")[:60]
        if code in ("invalid_grant", "unauthorized_client", "invalid_client") or response.status_code == 401:
            raise ConnectionBroken(f"Google refused the token request: {code or response.status_code}")
        raise Refused(f"Google refused the token request: {response.status_code} {code}".strip(),
                      response.status_code)
    if not body.get("access_token"):
        raise Refused("Google's token endpoint answered without an access token", response.status_code)
    return body


def exchange(http: httpx.Client, client: OAuthClient, code: str, verifier: str, redirect_uri: str,
             now: datetime) -> Tokens:
    """The tokens for an authorization code (and the account's email when Google gave an ID token)."""
    body = _token_call(http, client, {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
                                      "redirect_uri": redirect_uri})
    if not body.get("refresh_token"):
        raise Refused("Google gave no refresh token: remove Leadflow's access in the Google account and connect "
                      "again", 400)
    return Tokens(str(body["access_token"]), str(body["refresh_token"]),
                  now + timedelta(seconds=int(body.get("expires_in", 3600))), str(body.get("scope", "")),
                  _email_of(body.get("id_token")))


def refresh(http: httpx.Client, client: OAuthClient, tokens: Tokens, now: datetime) -> Tokens:
    """A new access token from the refresh token (Google keeps the refresh token unless it sends a new one)."""
    body = _token_call(http, client, {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token})
    return Tokens(str(body["access_token"]), str(body.get("refresh_token") or tokens.refresh_token),
                  now + timedelta(seconds=int(body.get("expires_in", 3600))), str(body.get("scope", tokens.scope)))


# --- connections ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Connection:
    connection_id: int
    broker_id: int
    agent_key: int
    user_id: int | None
    status: str
    account_email: str | None
    calendar_id: str
    connected_by: int
    connected_at: datetime
    updated_at: datetime
    last_error: str | None
    last_busy_at: datetime | None


_CONNECTION = """connection_id, broker_id, agent_key, user_id, status, account_email, calendar_id, connected_by,
                 connected_at, updated_at, last_error, last_busy_at"""


def connections(cur: Cursor, broker_id: int) -> list[Connection]:
    cur.execute(f"SELECT {_CONNECTION} FROM leadflow.google_calendar_connections WHERE broker_id = %s "
                "ORDER BY agent_key", (broker_id,))
    return [Connection(*row) for row in cur.fetchall()]


def connection(cur: Cursor, broker_id: int, agent_key: int) -> Connection | None:
    cur.execute(f"SELECT {_CONNECTION} FROM leadflow.google_calendar_connections WHERE broker_id = %s "
                "AND agent_key = %s", (broker_id, agent_key))
    row = cur.fetchone()
    return Connection(*row) if row else None


def save(cur: Cursor, keys: MasterKeys, broker_id: int, agent_key: int, tokens: Tokens, connected_by: int,
         now: datetime, calendar_id: str = "primary") -> Connection:
    """Store (or replace) a connection as connected, its tokens sealed; audited without them. Visits left
    ``not_connected`` that this calendar now takes go back to the sync."""
    sealed = seal(keys, broker_id, connection_kind(agent_key), tokens.to_json())
    cur.execute(f"""INSERT INTO leadflow.google_calendar_connections AS c (broker_id, agent_key, user_id, status,
                        account_email, calendar_id, key_id, wrapped_key, ciphertext, scopes, connected_by,
                        connected_at, updated_at)
                    VALUES (%s, %s, %s, 'connected', %s, %s, %s, %s, %s, %s, %s, %s, %s)
                    ON CONFLICT (broker_id, agent_key) DO UPDATE SET status = 'connected',
                        account_email = EXCLUDED.account_email, calendar_id = EXCLUDED.calendar_id,
                        key_id = EXCLUDED.key_id, wrapped_key = EXCLUDED.wrapped_key,
                        ciphertext = EXCLUDED.ciphertext, scopes = EXCLUDED.scopes,
                        connected_by = EXCLUDED.connected_by, connected_at = EXCLUDED.connected_at,
                        updated_at = EXCLUDED.updated_at, last_error = NULL
                    RETURNING {_CONNECTION}""",
                (broker_id, agent_key, agent_key or None, tokens.email, calendar_id, sealed.key_id,
                 sealed.wrapped_key, sealed.ciphertext, tokens.scope, connected_by, now, now))
    saved = Connection(*cur.fetchone())  # type: ignore[misc]
    # The broker's calendar takes the visits of people without one of their own.
    cur.execute("""UPDATE leadflow.appointments a SET calendar_state = 'pending', calendar_error = NULL
                   WHERE a.broker_id = %s AND a.calendar_state = 'not_connected'
                     AND (a.agent_key = %s OR %s = 0)""", (broker_id, agent_key, agent_key))
    audit(cur, broker_id, connected_by, "calendar.connected",
          {"agent_key": agent_key, "account_email": tokens.email, "calendar_id": calendar_id})
    return saved


def tokens_of(cur: Cursor, keys: MasterKeys, found: Connection) -> Tokens:
    cur.execute("""SELECT key_id, wrapped_key, ciphertext FROM leadflow.google_calendar_connections
                   WHERE connection_id = %s""", (found.connection_id,))
    row = cur.fetchone()
    if row is None:
        raise ConnectionBroken("the connection was removed")
    return Tokens.from_json(unseal(keys, found.broker_id, connection_kind(found.agent_key),
                                   Sealed(row[0], bytes(row[1]), bytes(row[2]))))


def store_tokens(cur: Cursor, keys: MasterKeys, found: Connection, tokens: Tokens, now: datetime) -> None:
    sealed = seal(keys, found.broker_id, connection_kind(found.agent_key), tokens.to_json())
    cur.execute("""UPDATE leadflow.google_calendar_connections SET key_id = %s, wrapped_key = %s, ciphertext = %s,
                       updated_at = %s WHERE connection_id = %s""",
                (sealed.key_id, sealed.wrapped_key, sealed.ciphertext, now, found.connection_id))


def mark_broken(cur: Cursor, found: Connection, reason: str, now: datetime) -> None:
    """The connection no longer works: shown as broken on the page, and an audit row tells the admins (once per
    breakage: a connection already broken is not audited again)."""
    cur.execute("""UPDATE leadflow.google_calendar_connections SET status = 'broken', last_error = %s, updated_at = %s
                   WHERE connection_id = %s AND status = 'connected' RETURNING 1""",
                (reason, now, found.connection_id))
    if cur.fetchone() is not None:
        audit(cur, found.broker_id, found.connected_by, "calendar.broken",
              {"agent_key": found.agent_key, "account_email": found.account_email, "reason": reason})


def record_error(cur: Cursor, found: Connection, reason: str | None, now: datetime) -> None:
    cur.execute("UPDATE leadflow.google_calendar_connections SET last_error = %s, updated_at = %s "
                "WHERE connection_id = %s", (reason, now, found.connection_id))


def disconnect(cur: Cursor, broker_id: int, agent_key: int, by: int) -> bool:
    """Forget a connection and the busy times read from it (audited). Its events stay in the Google calendar."""
    cur.execute("DELETE FROM leadflow.google_calendar_connections WHERE broker_id = %s AND agent_key = %s "
                "RETURNING account_email", (broker_id, agent_key))
    row = cur.fetchone()
    if row is None:
        return False
    cur.execute("DELETE FROM leadflow.calendar_busy WHERE broker_id = %s AND agent_key = %s", (broker_id, agent_key))
    audit(cur, broker_id, by, "calendar.disconnected", {"agent_key": agent_key, "account_email": row[0]})
    return True


def audit(cur: Cursor, broker_id: int, user_id: int, action: str, after: dict[str, Any]) -> None:
    cur.execute("INSERT INTO leadflow.audit_log (broker_id, user_id, action, after) VALUES (%s, %s, %s, %s::jsonb)",
                (broker_id, user_id, action, json.dumps(after, default=str)))


# --- the Calendar API -------------------------------------------------------------------------------------

class CalendarSession:
    """One connection's Calendar API calls. ``save`` is called with every refreshed token (to store it sealed)."""

    def __init__(self, google: Google, http: httpx.Client, oauth: OAuthClient, tokens: Tokens, calendar_id: str,
                 save: Callable[[Tokens], None], now: datetime) -> None:
        self.google, self.http, self.oauth = google, http, oauth
        self.tokens, self.calendar_id, self.save, self.now = tokens, calendar_id, save, now
        self.refreshed = 0

    def _refresh(self) -> None:
        self.tokens = replace(refresh(self.http, self.oauth, self.tokens, self.now), email=self.tokens.email)
        self.refreshed += 1
        self.save(self.tokens)

    def _send(self, method: str, path: str, body: dict[str, Any] | None, params: dict[str, str] | None,
              headers: dict[str, str]) -> httpx.Response:
        """One request with the bounded backoff on 429/5xx/no answer; TryLater once the tries are spent."""
        reason = ""
        for attempt in range(self.google.tries):
            wait = min(2.0 ** attempt, self.google.max_wait_s)
            try:
                response = self.http.request(method, f"{self.google.api_url}{path}", json=body, params=params,
                                             headers={"Authorization": f"Bearer {self.tokens.access_token}",
                                                      **headers})
            except httpx.TransportError as exc:
                reason = f"Google Calendar did not answer ({type(exc).__name__})"
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response
                reason = f"Google Calendar answered {response.status_code}"
                wait = min(_retry_after(response, wait), self.google.max_wait_s)
            if attempt + 1 < self.google.tries:
                self.google.sleep(wait)
        raise TryLater(f"{reason} after {self.google.tries} tries")

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             params: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
        """A Calendar API call: refreshed first if the access token has expired; a 401 refreshes and retries once,
        a second 401 is ``ConnectionBroken``."""
        if self.tokens.expires_at <= self.now + EXPIRY_MARGIN:
            self._refresh()
        response = self._send(method, path, body, params, headers or {})
        if response.status_code == 401:
            self._refresh()
            response = self._send(method, path, body, params, headers or {})
            if response.status_code == 401:
                raise ConnectionBroken("Google refused a freshly refreshed access token (401)")
        return response

    def _events(self, event_id: str = "") -> str:
        path = f"/calendars/{quote(self.calendar_id, safe='@.')}/events"
        return f"{path}/{quote(event_id, safe='')}" if event_id else path

    def freebusy(self, start: datetime, end: datetime) -> list[Interval]:
        response = self.call("POST", "/freeBusy", {"timeMin": start.astimezone(UTC).isoformat(),
                                                   "timeMax": end.astimezone(UTC).isoformat(),
                                                   "items": [{"id": self.calendar_id}]})
        body = _verdict(response)
        calendar = (body.get("calendars") or {}).get(self.calendar_id) or {}
        if calendar.get("errors"):
            reasons = ", ".join(str(e.get("reason")) for e in calendar["errors"] if isinstance(e, dict))
            raise Refused(f"Google Calendar could not read the calendar's busy times: {reasons}", 200)
        busy = []
        for item in calendar.get("busy") or ():
            start_at, end_at = _instant(item.get("start")), _instant(item.get("end"))
            if start_at and end_at and end_at > start_at:
                busy.append((start_at, end_at))
        return busy

    def insert(self, event: dict[str, Any], *, meet: bool) -> dict[str, Any]:
        """Insert ``event`` (its ``id`` is ours: a second insert of it is a ``Conflict``, never a duplicate)."""
        response = self.call("POST", self._events(), event,
                             params={"conferenceDataVersion": "1"} if meet else None)
        if response.status_code == 409:
            raise Conflict("the event already exists")
        return _verdict(response)

    def get(self, event_id: str) -> dict[str, Any]:
        response = self.call("GET", self._events(event_id))
        if response.status_code in (404, 410):
            raise Gone("the event is not in the calendar")
        return _verdict(response)

    def patch(self, event_id: str, changes: dict[str, Any], etag: str | None, *, meet: bool = False) -> dict[str, Any]:
        response = self.call("PATCH", self._events(event_id), changes,
                             params={"conferenceDataVersion": "1"} if meet else None,
                             headers={"If-Match": etag} if etag else None)
        if response.status_code in (409, 412):
            raise Conflict(f"the event changed in Google Calendar ({response.status_code})")
        if response.status_code in (404, 410):
            raise Gone("the event is not in the calendar")
        return _verdict(response)

    def delete(self, event_id: str) -> bool:
        """True when deleted now, False when it was already gone."""
        response = self.call("DELETE", self._events(event_id))
        if response.status_code in (404, 410):
            return False
        _verdict(response)
        return True


def _retry_after(response: httpx.Response, default: float) -> float:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default  # an HTTP date, or nothing: our own backoff


def _verdict(response: httpx.Response) -> dict[str, Any]:
    body = _json(response)
    if response.status_code >= 400:
        error = body.get("error")
        detail = error.get("message", "") if isinstance(error, dict) else str(error or "")
        raise Refused(f"Google Calendar refused: {response.status_code} {detail[:200]}".strip(), response.status_code)
    return body


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
