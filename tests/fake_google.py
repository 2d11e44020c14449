"""A local stand-in for Google's OAuth server and the Calendar API (127.0.0.1 only), as far as Leadflow uses them.

- ``GET /o/oauth2/v2/auth``: the consent screen, consented at once: redirects to ``redirect_uri`` with a code and
  the ``state`` (checks the client, the scopes, ``access_type=offline``, ``prompt=consent`` and an S256 challenge).
- ``POST /token``: ``authorization_code`` (the PKCE verifier must match the challenge, the redirect URI the one
  authorized) and ``refresh_token`` grants; a revoked refresh token gets ``invalid_grant``.
- ``/calendar/v3``: ``freeBusy``; events insert (our ``id`` honoured, 409 on a second insert of it; a Meet link for
  ``conferenceData.createRequest`` with ``conferenceDataVersion=1``), get, patch (``If-Match`` against the etag:
  412 when stale) and delete (404 when gone). An access token that expired (``expire_access_tokens``) or is unknown
  gets 401.

Scripted faults: ``script`` queues replies (status, Retry-After) that the next Calendar API calls get before any
real handling. Every request is recorded (method, path, query, headers, body) so tests assert what was sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.local_http import LocalServer, send_json

CLIENT_ID = "fake-client.apps.googleusercontent.com"
CLIENT_SECRET = "fake-client-secret-not-real"


@dataclass
class Scripted:
    status: int
    retry_after: int | None = None


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]
    status: int = 0


@dataclass
class FakeGoogle(LocalServer):
    email: str = "agenda@corredora.example"
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    access: dict[str, bool] = field(default_factory=dict)  # access token → still valid
    refresh_tokens: dict[str, bool] = field(default_factory=dict)  # refresh token → not revoked
    # "<account>/<calendar>" → id → event: each Google account has its own "primary".
    events: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    account_of: dict[str, str] = field(default_factory=dict)  # access or refresh token → the account it opens
    deleted: set[str] = field(default_factory=set)
    busy: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # calendar → [{start, end}]
    scripts: deque[Scripted] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    # Every access token is refused (401), even fresh ones: Google has cut the app off.
    refuse_all: bool = False
    _serial: int = 0

    @property
    def api_url(self) -> str:
        return f"{self.url}/calendar/v3"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/o/oauth2/v2/auth"

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    def script(self, *replies: Scripted) -> None:
        self.scripts.extend(replies)

    def calendar(self, account: str = "agenda@corredora.example", calendar: str = "primary") -> dict[str, Any]:
        return self.events.setdefault(f"{account}/{calendar}", {})

    def expire_access_tokens(self) -> None:
        for token in self.access:
            self.access[token] = False

    def revoke(self) -> None:
        for token in self.refresh_tokens:
            self.refresh_tokens[token] = False

    def calendar_calls(self, method: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith("/calendar/v3")
                and (method is None or r.method == method)]

    def token_calls(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/token"]

    def secrets_issued(self) -> list[str]:
        return [*self.access, *self.refresh_tokens]

    def _new_access(self, account: str) -> tuple[str, int]:
        token = f"ya29.fake-{secrets.token_urlsafe(24)}"
        self.access[token] = True
        self.account_of[token] = account
        return token, 3599

    def start(self) -> FakeGoogle:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _record(self) -> Recorded:
                parts = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("content-length", 0) or 0))
                if self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                    body: dict[str, Any] = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                else:
                    body = json.loads(raw or b"{}")
                record = Recorded(self.command, parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()},
                                  {k.lower(): v for k, v in self.headers.items()}, body)
                fake.requests.append(record)
                return record

            def _reply(self, record: Recorded, status: int, payload: dict[str, Any] | None = None,
                       headers: dict[str, str] | None = None) -> None:
                record.status = status
                if payload is None:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    return
                send_json(self, status, payload, headers)

            def do_GET(self) -> None:
                record = self._record()
                if record.path == "/o/oauth2/v2/auth":
                    self._consent(record)
                else:
                    self._calendar(record)

            def do_POST(self) -> None:
                record = self._record()
                if record.path == "/token":
                    self._token(record)
                else:
                    self._calendar(record)

            def do_PATCH(self) -> None:
                self._calendar(self._record())

            def do_DELETE(self) -> None:
                self._calendar(self._record())

            # --- OAuth ---------------------------------------------------------------------------------

            def _consent(self, record: Recorded) -> None:
                q = record.query
                scopes = set(q.get("scope", "").split())
                ok = (q.get("client_id") == CLIENT_ID and q.get("response_type") == "code"
                      and q.get("access_type") == "offline" and q.get("prompt") == "consent"
                      and q.get("code_challenge_method") == "S256" and q.get("code_challenge")
                      and "https://www.googleapis.com/auth/calendar.events" in scopes
                      and "https://www.googleapis.com/auth/calendar.freebusy" in scopes)
                if not ok:
                    self._reply(record, 400, {"error": "invalid_request"})
                    return
                code = f"4/fake-code-{secrets.token_urlsafe(12)}"
                fake.codes[code] = {"challenge": q["code_challenge"], "redirect_uri": q["redirect_uri"],
                                    "account": fake.email}
                location = f"{q['redirect_uri']}?{urlencode({'state': q.get('state', ''), 'code': code})}"
                self._reply(record, 302, None, {"location": location})

            def _token(self, record: Recorded) -> None:
                form = record.body
                if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
                    self._reply(record, 401, {"error": "invalid_client"})
                    return
                if form.get("grant_type") == "authorization_code":
                    issued = fake.codes.pop(form.get("code", ""), None)
                    verifier = form.get("code_verifier", "")
                    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode()
                    if (issued is None or issued["challenge"] != challenge.rstrip("=")
                            or issued["redirect_uri"] != form.get("redirect_uri")):
                        self._reply(record, 400, {"error": "invalid_grant"})
                        return
                    access, expires = fake._new_access(issued["account"])
                    refresh = f"1//fake-refresh-{secrets.token_urlsafe(24)}"
                    fake.refresh_tokens[refresh] = True
                    fake.account_of[refresh] = issued["account"]
                    claims = base64.urlsafe_b64encode(json.dumps({"email": issued["account"]}).encode()).decode()
                    claims = claims.rstrip("=")
                    self._reply(record, 200, {"access_token": access, "refresh_token": refresh, "expires_in": expires,
                                              "scope": "https://www.googleapis.com/auth/calendar.events",
                                              "token_type": "Bearer", "id_token": f"e30.{claims}.sig"})
                elif form.get("grant_type") == "refresh_token":
                    if not fake.refresh_tokens.get(form.get("refresh_token", ""), False):
                        self._reply(record, 400, {"error": "invalid_grant", "error_description": "Token revoked"})
                        return
                    access, expires = fake._new_access(fake.account_of[form["refresh_token"]])
                    self._reply(record, 200, {"access_token": access, "expires_in": expires, "token_type": "Bearer"})
                else:
                    self._reply(record, 400, {"error": "unsupported_grant_type"})

            # --- Calendar ------------------------------------------------------------------------------

            def _calendar(self, record: Recorded) -> None:
                token = record.headers.get("authorization", "").removeprefix("Bearer ")
                if fake.refuse_all or not fake.access.get(token, False):
                    self._reply(record, 401, {"error": {"code": 401, "message": "Invalid Credentials"}})
                    return
                if fake.scripts:
                    scripted = fake.scripts.popleft()
                    headers = {"retry-after": str(scripted.retry_after)} if scripted.retry_after is not None else None
                    self._reply(record, scripted.status, {"error": {"code": scripted.status,
                                                                    "message": f"scripted {scripted.status}"}},
                                headers)
                    return
                parts = record.path.removeprefix("/calendar/v3").split("/")
                if record.path.endswith("/freeBusy"):
                    items = {i["id"]: {"busy": fake.busy.get(i["id"], [])} for i in record.body.get("items", [])}
                    self._reply(record, 200, {"kind": "calendar#freeBusy", "calendars": items})
                    return
                # /calendars/{cal}/events[/{id}]
                calendar = f"{fake.account_of[token]}/{parts[2]}"
                events = fake.events.setdefault(calendar, {})
                ident = parts[4] if len(parts) > 4 else None
                gone = f"{calendar}/{ident}"
                if record.method == "POST":
                    self._insert(record, events, calendar)
                elif ident is None or ident not in events:
                    self._reply(record, 410 if gone in fake.deleted else 404,
                                {"error": {"code": 404, "message": "Not Found"}})
                elif record.method == "GET":
                    self._reply(record, 200, events[ident])
                elif record.method == "DELETE":
                    del events[ident]
                    fake.deleted.add(gone)
                    self._reply(record, 204)
                else:
                    current = events[ident]
                    if record.headers.get("if-match") not in (None, current["etag"]):
                        self._reply(record, 412, {"error": {"code": 412, "message": "Precondition Failed"}})
                        return
                    current.update(record.body)
                    self._conference(current, record)
                    fake._serial += 1
                    current["etag"] = f'"{fake._serial}"'
                    self._reply(record, 200, current)

            def _insert(self, record: Recorded, events: dict[str, dict[str, Any]], calendar: str) -> None:
                fake._serial += 1
                ident = record.body.get("id") or f"evt{fake._serial}"
                if ident in events or f"{calendar}/{ident}" in fake.deleted:
                    self._reply(record, 409, {"error": {"code": 409, "message": "The requested identifier "
                                                                               "already exists."}})
                    return
                event = {**record.body, "id": ident, "etag": f'"{fake._serial}"', "status": "confirmed",
                         "kind": "calendar#event"}
                self._conference(event, record)
                events[ident] = event
                self._reply(record, 200, event)

            def _conference(self, event: dict[str, Any], record: Recorded) -> None:
                request = (event.get("conferenceData") or {}).get("createRequest")
                if request and record.query.get("conferenceDataVersion") == "1" and "hangoutLink" not in event:
                    link = f"https://meet.google.com/fak-{secrets.token_hex(2)}-{secrets.token_hex(2)}"
                    event["hangoutLink"] = link
                    event["conferenceData"] = {"createRequest": {**request, "status": {"statusCode": "success"}},
                                               "entryPoints": [{"entryPointType": "video", "uri": link}]}

        self.serve(Handler)
        return self
