"""Sign and send provider webhooks the way each provider does (used by the demo, tests and bench)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx

from leadflow.brokers import Broker


def signed(channel: str, broker: Broker, payload: dict[str, Any] | bytes,
           secrets: dict[str, str] | None = None) -> tuple[str, dict[str, str], bytes]:
    """(path, headers, body) for a webhook as the provider would send it, signed with the broker's secret.

    ``secrets`` overrides the broker's configured secrets (tests use it to forge signatures).
    """
    body = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()

    def secret(kind: str) -> str:
        value = (secrets or {}).get(kind) or broker.secret(kind)
        if value is None:
            raise KeyError(f"{broker.secret_env_name(kind)} is not set")
        return value

    def digest(kind: str) -> str:
        return hmac.new(secret(kind).encode(), body, hashlib.sha256).hexdigest()

    headers = {"content-type": "application/json"}
    if channel == "telegram":
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret("telegram_secret_token")
    elif channel == "whatsapp":
        headers["X-Hub-Signature-256"] = "sha256=" + digest("whatsapp_app_secret")
    elif channel == "vapi":
        headers["X-Vapi-Signature"] = digest("vapi_secret")
    elif channel == "bland":
        headers["X-Webhook-Signature"] = digest("bland_webhook_secret")
    elif channel == "form":
        headers["Authorization"] = "Bearer " + secret("form_api_key")
    else:
        raise ValueError(f"unknown channel {channel!r}")
    return f"/webhooks/{broker.slug}/{channel}", headers, body


async def send_all(base_url: str, deliveries: Sequence[tuple[Broker, str, dict[str, Any]]],
                   concurrency: int = 32, retries: int = 5) -> Counter[int]:
    """POST every (broker, channel, payload); returns how many answers had each status code.

    5xx and connection errors are retried with backoff, as the providers do.
    """
    codes: Counter[int] = Counter()
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:

        async def one(broker: Broker, channel: str, payload: dict[str, Any]) -> None:
            path, headers, body = signed(channel, broker, payload)
            async with gate:
                for attempt in range(retries + 1):
                    try:
                        response = await client.post(path, content=body, headers=headers)
                    except httpx.TransportError:
                        if attempt == retries:
                            raise
                    else:
                        if response.status_code < 500 or attempt == retries:
                            codes[response.status_code] += 1
                            return
                    await asyncio.sleep(0.2 * 2**attempt)

        await asyncio.gather(*(one(b, c, p) for b, c, p in deliveries))
    return codes
