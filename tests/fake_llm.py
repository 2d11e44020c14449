"""A local stand-in for the Anthropic, OpenAI and Gemini HTTP APIs (127.0.0.1 only).

Each request to a provider's path takes the next scripted reply for that provider: a structured
answer (``ok``), an HTTP error status, a body that is not valid JSON, or a delay longer than the
client's timeout. Every request is recorded, so tests can count calls and inspect what was sent.
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
    answer: dict[str, Any] | None = None  # the qualification the model "returns"
    raw_text: str | None = None  # instead of answer: text the model returns verbatim (malformed output)
    delay_s: float = 0.0


def ok(**answer: Any) -> Reply:
    return Reply(answer=answer)


@dataclass
class FakeLLM(LocalServer):
    scripts: dict[str, deque[Reply]] = field(default_factory=lambda: {p: deque() for p in ("openai", "anthropic",
                                                                                            "gemini")})
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # As the real APIs do: connections stay open between calls (the bench; tests keep HTTP/1.0's one per call).
    keep_alive: bool = False


    def script(self, provider: str, *replies: Reply) -> None:
        self.scripts[provider].extend(replies)

    def calls(self, provider: str) -> int:
        return sum(1 for p, _ in self.requests if p == provider)

    def start(self) -> FakeLLM:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if fake.keep_alive else "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                provider = ("openai" if self.path.endswith("/chat/completions") else
                            "anthropic" if self.path.endswith("/v1/messages") else
                            "gemini" if ":generateContent" in self.path else "unknown")
                fake.requests.append((provider, body))
                script = fake.scripts.get(provider)
                reply = script.popleft() if script else Reply(status=500)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.status != 200:
                    self._send(reply.status, {"error": {"type": "overloaded_error" if reply.status == 529 else
                                                        "rate_limit_error" if reply.status == 429 else "api_error",
                                                        "message": f"scripted {reply.status}", "code": reply.status,
                                                        "status": "UNAVAILABLE"}}, retry_after=True)
                    return
                text = reply.raw_text if reply.raw_text is not None else json.dumps(reply.answer)
                self._send(200, _shape(provider, text, reply.answer))

            def _send(self, status: int, payload: dict[str, Any], retry_after: bool = False) -> None:
                send_json(self, status, payload, {"retry-after": "0", "retry-after-ms": "10"} if retry_after else None)

        self.serve(Handler)
        return self



def _shape(provider: str, text: str, answer: dict[str, Any] | None) -> dict[str, Any]:
    """The provider's response envelope around the model's answer, as its API documents it."""
    if provider == "openai":
        return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1764100000, "model": "gpt-4.1-mini",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 321, "completion_tokens": 87, "total_tokens": 408}}
    if provider == "anthropic":
        block = ({"type": "tool_use", "id": "toolu_01", "name": "record_qualification", "input": answer}
                 if answer is not None and text == json.dumps(answer) else {"type": "text", "text": text})
        return {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                "content": [block], "stop_reason": "tool_use", "stop_sequence": None,
                "usage": {"input_tokens": 400, "output_tokens": 90}}
    return {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP",
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": 350, "candidatesTokenCount": 80, "totalTokenCount": 430},
            "modelVersion": "gemini-2.5-flash"}
