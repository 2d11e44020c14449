"""The steps every channel shares after authentication: parse, keep what cannot be parsed, produce.

A payload that is authentic but cannot be turned into events is answered 422 and kept whole in
the dead-letter topic; if even that copy cannot be acknowledged by Kafka the caller gets 503 so
the provider retries. Nothing is answered 2xx unless Kafka holds it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ingest_api.publisher import Publisher, PublishError
from leadflow.brokers import Broker
from leadflow.events import Event

log = logging.getLogger(__name__)


class MalformedPayload(ValueError):
    """The payload is authentic but not what the provider documents; the message is the reason."""


@dataclass
class Parsed:
    events: Sequence[Event] = field(default_factory=list)
    # Authentic, well-formed notifications Leadflow does not consume (e.g. a VAPI status-update):
    # acknowledged so the provider does not retry, and named in the response.
    ignored: str | None = None


Parser = Callable[[Broker, dict[str, Any]], Parsed]


def epoch_to_utc(value: Any) -> datetime:
    """Provider timestamps in seconds (Telegram, WhatsApp) or milliseconds (VAPI) since the epoch."""
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise MalformedPayload(f"timestamp {value!r} is not a number") from exc
    if number > 10**11:
        number /= 1000.0
    return datetime.fromtimestamp(number, UTC)


def iso_to_utc(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedPayload(f"timestamp {value!r} is not ISO 8601") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def require(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, dict) or mapping.get(key) in (None, ""):
        raise MalformedPayload(f"{where}.{key} is missing")
    return mapping[key]


async def accept(request: Request, broker: Broker, channel: str, body: bytes, parse: Parser) -> JSONResponse:
    publisher: Publisher = request.app.state.publisher
    try:
        payload = json.loads(body)
        if not isinstance(payload, dict):
            raise MalformedPayload("body is not a JSON object")
        parsed = parse(broker, payload)
    except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
        reason = str(exc) if isinstance(exc, MalformedPayload) else f"{exc.__class__.__name__}: {exc}"
        try:
            await publisher.dead_letter(broker_id=broker.broker_id, broker_slug=broker.slug, channel=channel,
                                        reason=reason, body=body, content_type=request.headers.get("content-type"))
        except PublishError as kafka_exc:
            log.error("dead letter for %s/%s not acknowledged: %s", broker.slug, channel, kafka_exc)
            raise HTTPException(status_code=503, detail="could not store the payload; retry later") from kafka_exc
        log.warning("malformed %s payload for %s dead-lettered: %s", channel, broker.slug, reason)
        raise HTTPException(status_code=422, detail={"error": "malformed payload", "reason": reason,
                                                     "dead_lettered": True}) from exc
    if parsed.events:
        try:
            await publisher.publish(parsed.events)
        except PublishError as exc:
            log.error("events for %s/%s not acknowledged: %s", broker.slug, channel, exc)
            raise HTTPException(status_code=503, detail="could not store the events; retry later") from exc
    return JSONResponse({"accepted": len(parsed.events), "ignored": parsed.ignored})
