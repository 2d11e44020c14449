"""A local stand-in for the Telegram Bot API, the WhatsApp Cloud API, VAPI and Bland calls and the
Google Calendar API (127.0.0.1 only).

Each request takes the next scripted reply for its provider (success by default when nothing is
scripted — unlike the LLM fake, a send that is not scripted is an ordinary success): an HTTP error
status, a 429 with the provider's retry hint, or a delay longer than the client's timeout. Every
request is recorded with its path and body, so tests assert exactly what was sent to whom.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.local_http import LocalServer, send_json


@dataclass
class Reply:
    status: int = 200
    delay_s: float = 0.0
    retry_after: int = 1


PROVIDERS = ("telegram", "whatsapp", "vapi", "bland", "calendar")


def _provider(path: str) -> str:
    if "/sendMessage" in path or "/setWebhook" in path:
        return "telegram"
    if path.endswith("/v1/calls"):
        return "bland"
    if path.endswith("/call"):
        return "vapi"
    if "/calendars/" in path:
        return "calendar"
    return "whatsapp"


@dataclass
class FakeChannels(LocalServer):
    scripts: dict[str, deque[Reply]] = field(default_factory=lambda: {p: deque() for p in PROVIDERS})
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # provider, path, body
    # The one WhatsApp access token the fake accepts (others get Meta's 401).
    whatsapp_token: str = "wa-token-not-a-secret"
    _ids: int = 0


    def script(self, provider: str, *replies: Reply) -> None:
        self.scripts[provider].extend(replies)

    def sent(self, provider: str) -> list[dict[str, Any]]:
        """Bodies the provider accepted (answered 200)."""
        return [body for p, path, body in self.requests if p == provider and not path.startswith("!")]

    def start(self) -> FakeChannels:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                provider = _provider(self.path)
                script = fake.scripts[provider]
                reply = script.popleft() if script else Reply()
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                fake.requests.append((provider, self.path if reply.status == 200 else "!" + self.path, body))
                fake._ids += 1
                if provider == "telegram":
                    if reply.status == 200 and self.path.endswith("/setWebhook"):
                        self._send(200, {"ok": True, "result": True, "description": "Webhook was set"})
                    elif reply.status == 200:
                        self._send(200, {"ok": True, "result": {"message_id": fake._ids, "chat": {
                            "id": body.get("chat_id")}, "text": body.get("text")}})
                    else:
                        self._send(reply.status, {"ok": False, "error_code": reply.status,
                                                  "description": f"scripted {reply.status}",
                                                  "parameters": {"retry_after": reply.retry_after}})
                    return
                if provider != "whatsapp":
                    self._other(provider, reply, body)
                    return
                if self.headers.get("authorization", "") != f"Bearer {fake.whatsapp_token}":
                    self._send(401, {"error": {"message": "Invalid OAuth access token", "code": 190}})
                elif reply.status == 200:
                    self._send(200, {"messaging_product": "whatsapp", "contacts": [{"wa_id": body.get("to")}],
                                     "messages": [{"id": f"wamid.fake{fake._ids}"}]})
                else:
                    self._send(reply.status, {"error": {"message": f"scripted {reply.status}", "code": reply.status}},
                               retry_after=reply.retry_after)

            def _other(self, provider: str, reply: Reply, body: dict[str, Any]) -> None:
                if reply.status != 200:
                    self._send(reply.status, {"message": f"scripted {reply.status}"}, retry_after=reply.retry_after)
                elif provider == "vapi":
                    self._send(201, {"id": f"call-{fake._ids}", "status": "queued", "customer": body.get("customer")})
                elif provider == "bland":
                    self._send(200, {"status": "success", "call_id": f"bland-{fake._ids}"})
                else:
                    self._send(200, {"kind": "calendar#event", "id": f"evt{fake._ids}", "status": "confirmed",
                                     "htmlLink": f"https://calendar.example/evt{fake._ids}", **body})

            def _send(self, status: int, payload: dict[str, Any], retry_after: int | None = None) -> None:
                send_json(self, status, payload,
                          {"retry-after": str(retry_after)} if retry_after is not None and status == 429 else None)

        self.serve(Handler)
        return self

