"""Channel senders: Telegram Bot API ``sendMessage`` and the WhatsApp Cloud API ``messages``.

Each sender is an HTTP client (httpx) for one provider, pointed at the provider's URL or, in tests,
at a local fake. It answers with the provider's message id, or raises ``RetryLater`` (429, 5xx,
timeouts: the send stays pending and is retried) or ``Rejected`` (the provider refused for good,
or credentials are missing: the send fails with the reason).

Voice calls: VAPI ``POST /call`` and Bland ``POST /v1/calls``.

Credentials per broker come from a ``leadflow.credentials.CredentialSource``: in the services, what the
broker's admin stored (``StoredCredentials``, refreshed within seconds of a change) and otherwise the
environment (``LEADFLOW_<SLUG>_TELEGRAM_BOT_TOKEN``, ``_WHATSAPP_ACCESS_TOKEN`` and
``_WHATSAPP_PHONE_NUMBER_ID``, ``_VAPI_API_KEY``, ``_VAPI_ASSISTANT_ID`` and ``_VAPI_PHONE_NUMBER_ID``,
``_BLAND_API_KEY``), which is all a sender built
without a source reads. Provider URLs: ``LEADFLOW_<PROVIDER>_API_URL`` (defaults in
``leadflow.config.PROVIDER_URLS``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from leadflow import logredact
from leadflow.config import provider_url
from leadflow.credentials import CredentialSource, EnvironmentCredentials, environment_name
from leadflow.events import OutboundCommand
from leadflow.outbound.errors import Rejected, RetryLater, Skip
from leadflow.outbound.window import in_whatsapp_window

# httpx logs each request's URL at INFO, and Telegram's carries the bot token (/bot<token>/sendMessage).
logredact.install()


class Sender(Protocol):
    def send(self, command: OutboundCommand) -> str: ...


def credential(source: CredentialSource, slug: str, kind: str) -> str:
    value = source.get(slug, kind)
    if not value:
        raise Rejected(f"{kind} is not configured for {slug} (admin page Canales, or {environment_name(slug, kind)}): "
                       "it cannot send through this channel")
    return value


class RateLimiter:
    """At most ``per_second`` sends per group (a bot: each broker has its own) and one per
    ``key_interval_s`` per key (a chat)."""

    def __init__(self, per_second: float, key_interval_s: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / per_second
        self.key_interval = key_interval_s
        self.clock, self.sleep = clock, sleep
        self.next_group: dict[str, float] = {}
        self.next_key: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()

    def wait(self, key: str, group: str = "") -> None:
        with self.lock:
            now = self.clock()
            if len(self.next_key) > 100_000:  # a long-running process meets many chats: forget the past ones
                self.next_key = {k: t for k, t in self.next_key.items() if t > now}
            at = max(now, self.next_group.get(group, 0.0), self.next_key.get((group, key), 0.0))
            self.next_group[group] = at + self.interval
            self.next_key[(group, key)] = at + self.key_interval
        if at > now:
            self.sleep(at - now)


def _post(client: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str] | None = None,
          tries: int = 2) -> httpx.Response:
    """POST with one quick retry on a timeout or 5xx; a 429 is handed back at once (the caller waits)."""
    for attempt in range(tries):
        try:
            response = client.post(url, json=body, headers=headers)
        except httpx.TransportError as exc:
            if attempt + 1 == tries:
                raise RetryLater(f"{type(exc).__name__} talking to the provider") from exc
            time.sleep(0.2 * (attempt + 1))
            continue
        if response.status_code >= 500 and attempt + 1 < tries:
            time.sleep(0.2 * (attempt + 1))
            continue
        return response
    raise AssertionError("unreachable")


class TelegramSender:
    def __init__(self, base_url: str | None = None, timeout_s: float = 10.0,
                 limiter: RateLimiter | None = None, credentials: CredentialSource | None = None) -> None:
        self.base_url = (base_url or provider_url("LEADFLOW_TELEGRAM_API_URL")).rstrip("/")
        self.credentials = credentials or EnvironmentCredentials()
        self.client = httpx.Client(timeout=timeout_s)
        # Telegram: about 30 messages a second per bot and one a second per chat.
        self.limiter = limiter or RateLimiter(per_second=30, key_interval_s=1.0)

    def send(self, command: OutboundCommand) -> str:
        token = credential(self.credentials, command.broker_slug, "telegram_bot_token")
        chat_id = str(command.payload["chat_id"])
        self.limiter.wait(chat_id, group=command.broker_slug)
        response = _post(self.client, f"{self.base_url}/bot{token}/sendMessage",
                         {"chat_id": chat_id, "text": command.payload["text"]})
        body = _json(response)
        if response.status_code == 429:
            after = float((body.get("parameters") or {}).get("retry_after", 30))
            raise RetryLater("Telegram rate limit (429)", after)
        if response.status_code >= 500:
            raise RetryLater(f"Telegram answered {response.status_code}")
        if not body.get("ok"):
            raise Rejected(f"Telegram refused: {response.status_code} {body.get('description', '')}".strip())
        return str(body["result"]["message_id"])


class WhatsAppSender:
    def __init__(self, base_url: str | None = None, timeout_s: float = 10.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 credentials: CredentialSource | None = None) -> None:
        self.base_url = (base_url or provider_url("LEADFLOW_WHATSAPP_API_URL")).rstrip("/")
        self.credentials = credentials or EnvironmentCredentials()
        self.client = httpx.Client(timeout=timeout_s)
        self.clock = clock

    def message(self, command: OutboundCommand) -> dict[str, Any]:
        """Text inside the 24-hour customer-service window, the approved template outside it."""
        p = command.payload
        last = datetime.fromisoformat(p["last_inbound_at"]) if p.get("last_inbound_at") else None
        if in_whatsapp_window(last, self.clock()):
            return {"messaging_product": "whatsapp", "to": p["to"], "type": "text", "text": {"body": p["text"]}}
        template = p.get("template")
        if not template:
            raise Skip("outside the WhatsApp 24-hour window and no approved template")
        components = [{"type": "body", "parameters": [{"type": "text", "text": v} for v in template["parameters"]]}] \
            if template.get("parameters") else []
        return {"messaging_product": "whatsapp", "to": p["to"], "type": "template",
                "template": {"name": template["name"], "language": {"code": template["language"]},
                             "components": components}}

    def send(self, command: OutboundCommand) -> str:
        token = credential(self.credentials, command.broker_slug, "whatsapp_access_token")
        number = credential(self.credentials, command.broker_slug, "whatsapp_phone_number_id")
        response = _post(self.client, f"{self.base_url}/{number}/messages", self.message(command),
                         headers={"Authorization": f"Bearer {token}"})
        body = _json(response)
        if response.status_code == 429:
            raise RetryLater("WhatsApp rate limit (429)", float(response.headers.get("retry-after", 60)))
        if response.status_code >= 500:
            raise RetryLater(f"WhatsApp answered {response.status_code}")
        if response.status_code >= 400 or not body.get("messages"):
            error = (body.get("error") or {}).get("message", "")
            raise Rejected(f"WhatsApp refused: {response.status_code} {error}".strip())
        return str(body["messages"][0]["id"])


def _verdict(provider: str, response: httpx.Response) -> dict[str, Any]:
    """The body of a successful answer; RetryLater for 429/5xx; Rejected for any other refusal."""
    body = _json(response)
    if response.status_code == 429:
        raise RetryLater(f"{provider} rate limit (429)", float(response.headers.get("retry-after", 60)))
    if response.status_code >= 500:
        raise RetryLater(f"{provider} answered {response.status_code}")
    if response.status_code >= 400:
        detail = body.get("message") or body.get("error") or ""
        raise Rejected(f"{provider} refused: {response.status_code} {detail}".strip())
    return body


class VapiCaller:
    """An outbound call by the broker's VAPI assistant, told who the lead is and what they want."""

    def __init__(self, base_url: str | None = None, timeout_s: float = 10.0,
                 credentials: CredentialSource | None = None) -> None:
        self.base_url = (base_url or provider_url("LEADFLOW_VAPI_API_URL")).rstrip("/")
        self.credentials = credentials or EnvironmentCredentials()
        self.client = httpx.Client(timeout=timeout_s)

    def send(self, command: OutboundCommand) -> str:
        slug, p = command.broker_slug, command.payload
        body = {"assistantId": credential(self.credentials, slug, "vapi_assistant_id"),
                "phoneNumberId": credential(self.credentials, slug, "vapi_phone_number_id"),
                "customer": {"number": p["phone"], **({"name": p["name"]} if p.get("name") else {})},
                "assistantOverrides": {"variableValues": {"name": p.get("name") or "", "task": p.get("task") or ""}}}
        response = _post(self.client, f"{self.base_url}/call", body,
                         headers={"Authorization": f"Bearer {credential(self.credentials, slug, 'vapi_api_key')}"})
        answer = _verdict("VAPI", response)
        if not answer.get("id"):
            raise Rejected("VAPI answered without a call id")
        return str(answer["id"])


class BlandCaller:
    """An outbound call by Bland's agent with the step's task (a prompt with the lead's facts)."""

    def __init__(self, base_url: str | None = None, timeout_s: float = 10.0,
                 credentials: CredentialSource | None = None) -> None:
        self.base_url = (base_url or provider_url("LEADFLOW_BLAND_API_URL")).rstrip("/")
        self.credentials = credentials or EnvironmentCredentials()
        self.client = httpx.Client(timeout=timeout_s)

    def send(self, command: OutboundCommand) -> str:
        p = command.payload
        body = {"phone_number": p["phone"], "task": p.get("task") or "",
                "request_data": {"lead_id": command.lead_id, "name": p.get("name") or ""}}
        response = _post(self.client, f"{self.base_url}/v1/calls", body,
                         headers={"Authorization": credential(self.credentials, command.broker_slug, "bland_api_key")})
        answer = _verdict("Bland", response)
        if answer.get("status") != "success" or not answer.get("call_id"):
            raise Rejected(f"Bland did not place the call: {answer.get('message') or answer.get('status')}")
        return str(answer["call_id"])


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
