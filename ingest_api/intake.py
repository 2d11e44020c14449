"""The steps every channel shares around authentication: read the body, parse, keep what cannot be parsed, produce.

A body is never read before the caller could be refused for free: its declared size is checked
before anything else (413), and the routes read it only once the broker and the channel's secret
are known; a body streamed without a Content-Length is cut off at the same limit while it is read.

A payload that is authentic but cannot be turned into events is answered 422 and kept whole in
the dead-letter topic; if even that copy cannot be acknowledged by Kafka the caller gets 503 so
the provider retries. Nothing is answered 2xx unless Kafka holds it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ingest_api.publisher import Publisher, PublishError
from leadflow import redaction
from leadflow.brokers import Broker
from leadflow.events import Event, utcnow

log = logging.getLogger(__name__)

# Largest webhook body read. Real deliveries are a few hundred bytes (tests/payloads.py: 0.2-0.8 KB);
# the largest are VAPI end-of-call reports, which carry the transcript five times over: ~80 KB for a
# call of VAPI's default 10-minute limit, ~480 KB for an hour of talk (tests/payloads.vapi_long_call).
# Not the 1 MB one might pick: a malformed body must still fit its dead-letter copy (base64, 4/3 of
# the body, plus the envelope) under Kafka's record limit of 1,000,000 bytes (librdkafka's
# message.max.bytes; Apache Kafka brokers allow about 1 MiB), or it could never be kept and the provider
# would get 503 until it gave up. 512 KiB makes a ~700 KB dead letter. Raising it means raising Kafka's
# record limits with it. Could become a setting.
MAX_BODY_BYTES = 512 * 1024

# Deepest JSON nesting accepted. Provider payloads nest 1-9 levels (WhatsApp's is the deepest, 9; a
# VAPI report embedding the assistant's tool schemas may reach 15-20); 64 leaves them room to grow and
# stays far below where json, pydantic and the form's content hash fail with RecursionError (Python's
# ~1,000-frame limit, part of which the request already uses: 900 levels were enough to crash).
MAX_JSON_DEPTH = 64

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*+"', re.DOTALL)
_JSON_BRACKETS = re.compile(r"[\[\]{}]")

# The latest instant a datetime can hold (9999-12-31T23:59:59Z), as seconds since the epoch.
_MAX_EPOCH_S = 253_402_300_799


class MalformedPayload(ValueError):
    """The payload is authentic but not what the provider documents; the message is the reason."""


class StaleDelivery(MalformedPayload):
    """Authentic, but delivered later than its provider would redeliver it: most likely a replay."""


# Set while a broker's admin replays a dead letter (reports_api.admin.dead_letters): the replay window keeps
# captured requests from being sent again by whoever captured them; an admin's replay is authorized by their
# session, and a late delivery kept as a dead letter is exactly what they replay.
_REPLAYING: ContextVar[bool] = ContextVar("leadflow_ingest_replaying", default=False)


@contextlib.contextmanager
def replaying() -> Iterator[None]:
    """Parse as an admin's replay: ``require_recent`` lets old deliveries through."""
    token = _REPLAYING.set(True)
    try:
        yield
    finally:
        _REPLAYING.reset(token)


@dataclass
class Parsed:
    events: Sequence[Event] = field(default_factory=list)
    # Authentic, well-formed notifications Leadflow does not consume (e.g. a VAPI status-update):
    # acknowledged so the provider does not retry, and named in the response.
    ignored: str | None = None


Parser = Callable[[Broker, dict[str, Any]], Parsed]


def _too_large(request: Request, size: str) -> HTTPException:
    log.warning("webhook refused: %r body of %s bytes, over the %s-byte limit", request.url.path, size,
                MAX_BODY_BYTES)
    # Connection: close, so a caller cannot keep pushing the rest of a huge body down a kept-alive connection.
    return HTTPException(status_code=413, detail=f"request body larger than {MAX_BODY_BYTES} bytes",
                         headers={"Connection": "close"})


def refuse_oversized(request: Request) -> None:
    """413 when the declared Content-Length is over the limit; called first, so the answer costs no read
    and does not depend on whether the broker in the path exists."""
    declared = request.headers.get("content-length")
    if declared is None:
        return  # streamed: read_body counts while it reads
    if not (declared.isascii() and declared.isdigit()):
        raise HTTPException(status_code=400, detail="Content-Length is not a byte count")
    if int(declared) > MAX_BODY_BYTES:
        raise _too_large(request, declared)


async def read_body(request: Request) -> bytes:
    """The body, read chunk by chunk and abandoned with 413 as soon as it passes the limit."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large(request, f"more than {size}")
        chunks.append(chunk)
    return b"".join(chunks)


def check_depth(text: str) -> None:
    """MalformedPayload when JSON text nests deeper than MAX_JSON_DEPTH, found without recursing."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return  # fewer containers than the limit cannot nest deeper than it
    depth = 0
    for bracket in _JSON_BRACKETS.findall(_JSON_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise MalformedPayload(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        else:
            depth -= 1


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def epoch_to_utc(value: Any) -> datetime:
    """Provider timestamps in seconds (Telegram, WhatsApp) or milliseconds (VAPI) since the epoch."""
    if isinstance(value, bool):
        raise MalformedPayload(f"timestamp {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MalformedPayload(f"timestamp {_shown(value)} is not a number") from exc
    if not math.isfinite(number):
        raise MalformedPayload(f"timestamp {_shown(value)} is not a finite number")
    if number > 10**11:
        number /= 1000.0
    if not 0 <= number <= _MAX_EPOCH_S:
        raise MalformedPayload(f"timestamp {_shown(value)} is outside 1970-9999")
    try:
        return datetime.fromtimestamp(number, UTC)
    except (OverflowError, OSError, ValueError) as exc:  # the platform's own limits, narrower on some systems
        raise MalformedPayload(f"timestamp {_shown(value)} is out of range") from exc


def iso_to_utc(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedPayload(f"timestamp {_shown(value)} is not ISO 8601") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def require_recent(sent_at: datetime, window: timedelta, what: str) -> None:
    """StaleDelivery when ``sent_at`` (a time the provider signed) is older than ``window``."""
    age = utcnow() - sent_at
    if age > window and not _REPLAYING.get():
        raise StaleDelivery(f"{what} {sent_at.isoformat()} is {age.total_seconds() / 3600:.0f} h old, past the "
                            f"{window.total_seconds() / 3600:.0f} h replay window")


def require(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, dict) or mapping.get(key) in (None, ""):
        raise MalformedPayload(f"{where}.{key} is missing")
    return mapping[key]


# An authentic payload with absurd numbers or nesting that got past the checks is still the provider's data, to be
# kept (422 + dead letter), not a 500: hence ArithmeticError and RecursionError too.
_PARSE_ERRORS = (ValueError, KeyError, TypeError, AttributeError, ValidationError, ArithmeticError, RecursionError)


def parse_body(broker: Broker, body: bytes, parse: Parser) -> Parsed:
    """The events of a raw webhook body, or MalformedPayload naming why there are none.

    The step every channel shares after authentication, callable without a request: the ingest routes and an
    admin's replay of a dead letter (``ingest_api.replay``) parse alike.
    """
    try:
        # Decoded the way json.loads decodes bytes (UTF-8, -16 or -32), so the depth check sees the same text.
        text = body.decode(json.detect_encoding(body), "surrogatepass")
        check_depth(text)
        payload = json.loads(text)
        if not isinstance(payload, dict):
            raise MalformedPayload("body is not a JSON object")
        return parse(broker, payload)
    except MalformedPayload:
        raise
    except _PARSE_ERRORS as exc:
        raise MalformedPayload(f"{exc.__class__.__name__}: {exc}") from exc


async def accept(request: Request, broker: Broker, channel: str, body: bytes, parse: Parser) -> JSONResponse:
    publisher: Publisher = request.app.state.publisher
    try:
        parsed = parse_body(broker, body, parse)
    except MalformedPayload as exc:
        # The broker's own credentials never go into a dead letter, nor into the reason, which quotes the body.
        secrets = redaction.secret_values(broker)
        reason = redaction.redact_values(str(exc), secrets)
        try:
            await publisher.dead_letter(broker_id=broker.broker_id, broker_slug=broker.slug, channel=channel,
                                        reason=reason, body=redaction.redact_bytes(body, secrets),
                                        content_type=request.headers.get("content-type"))
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
