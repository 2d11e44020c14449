"""A stand-in for the Telegram Bot API and the WhatsApp Cloud API on loopback, for the demo and ``make up``.

The demo has no internet and no real bot, yet the agent's replies must go somewhere: this server
accepts ``sendMessage`` and ``/<phone number id>/messages`` as the providers do, answers with a
message id, and keeps what it received, so the demo can print the conversation and ``make up``
shows the bot's replies at ``/inbox``.
"""

from __future__ import annotations

import html
import itertools
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Delivered:
    channel: str
    to: str
    text: str
    at: datetime


@dataclass
class StandInProvider:
    host: str = "127.0.0.1"
    port: int = 0
    delivered: list[Delivered] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_address[1]}"

    def to(self, channel: str, recipient: str) -> list[str]:
        return [d.text for d in list(self.delivered) if d.channel == channel and d.to == recipient]

    def start(self) -> StandInProvider:
        provider = self
        ids = itertools.count(1)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                except ValueError:
                    self._answer(400, {"ok": False, "description": "Bad Request: body is not JSON"})
                    return
                n = next(ids)
                if self.path.endswith("/setWebhook"):
                    self._answer(200, {"ok": True, "result": True, "description": "Webhook was set"})
                    return
                if self.path.endswith("/sendMessage"):
                    provider.delivered.append(Delivered("telegram", str(body.get("chat_id")), str(body.get("text")),
                                                        datetime.now(UTC)))
                    self._answer(200, {"ok": True, "result": {"message_id": n, "chat": {"id": body.get("chat_id")}}})
                    return
                text = (body.get("text") or {}).get("body") or f"[template {(body.get('template') or {}).get('name')}]"
                provider.delivered.append(Delivered("whatsapp", str(body.get("to")), str(text), datetime.now(UTC)))
                self._answer(200, {"messaging_product": "whatsapp", "contacts": [{"wa_id": body.get("to")}],
                                   "messages": [{"id": f"wamid.standin{n}"}]})

            def do_GET(self) -> None:
                rows = "".join(f"<tr><td>{d.at:%H:%M:%S}</td><td>{d.channel}</td><td>{html.escape(d.to)}</td>"
                               f"<td>{html.escape(d.text)}</td></tr>" for d in reversed(provider.delivered[-200:]))
                page = (f"<!doctype html><meta charset=utf-8><title>Sent by Leadflow</title><h1>What the bot sent "
                        f"(stand-in Telegram/WhatsApp)</h1><table>{rows}</table>").encode()
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
