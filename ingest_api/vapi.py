"""VAPI server-URL messages: the ``end-of-call-report`` becomes the call's messages.

Authenticated by ``Authorization: Bearer <secret>`` (or VAPI's ``X-Vapi-Secret``) or by an
``X-Vapi-Signature`` HMAC-SHA256 of the raw body; either uses the broker's ``vapi_secret``.
A report whose ``message.timestamp`` (when VAPI sent it) is older than ``REPLAY_WINDOW`` is
refused as a probable replay (422, kept in the dead-letter topic).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ingest_api.auth import bearer, configured_secret, require_equal, require_hmac
from ingest_api.calls import split_transcript, turns_to_messages
from ingest_api.intake import (
    MalformedPayload,
    Parsed,
    accept,
    epoch_to_utc,
    iso_to_utc,
    read_body,
    refuse_oversized,
    require,
    require_recent,
)
from ingest_api.tenancy import broker_for_path
from leadflow.brokers import Broker
from leadflow.events import Contact
from leadflow.phones import to_e164

router = APIRouter(tags=["vapi"])

# How long after VAPI stamped a report (message.timestamp, inside the signed body) it is still taken.
# VAPI's retries belong to the one delivery operation (its webhook-log docs time them together), not to
# redeliveries hours later, so 48 h never refuses a retry and lets a resend after a day-long outage through, while a
# captured request stops working two days after the call. Refused reports are dead-lettered whole, so
# even a legitimate late one is kept for a replay by hand. Could become a setting.
REPLAY_WINDOW = timedelta(hours=48)


def parse_server_message(broker: Broker, body: dict[str, Any]) -> Parsed:
    message = require(body, "message", "body")
    kind = require(message, "type", "message")
    if kind != "end-of-call-report":
        return Parsed(ignored=f"vapi message type {kind!r}")
    if message.get("timestamp") is not None:
        require_recent(epoch_to_utc(message["timestamp"]), REPLAY_WINDOW, "message.timestamp")
    call = require(message, "call", "message")
    call_id = str(require(call, "id", "message.call"))
    # The end-of-call report carries the caller as message.customer; message.call.customer is the same
    # person when VAPI includes the call object's copy. Either may be the only one present.
    customers = [c for c in (message.get("customer"), call.get("customer")) if isinstance(c, dict)]
    number = _first_text(customers, "number")
    contact = Contact(channel_user_id=number or call_id, phone_e164=to_e164(number, broker.country),
                      display_name=_first_text(customers, "name"))
    started = iso_to_utc(message.get("startedAt") or call.get("startedAt") or call.get("createdAt"))
    if started is None:
        raise MalformedPayload("message.startedAt is missing")
    artifact = message.get("artifact") or {}
    structured = artifact.get("messages") or message.get("messages")
    if isinstance(structured, list) and structured:
        turns = [(str(m.get("role", "")), str(m.get("message") or ""),
                  epoch_to_utc(m["time"]) if m.get("time") else started) for m in structured]
    else:
        transcript = artifact.get("transcript") or message.get("transcript")
        if not isinstance(transcript, str):
            raise MalformedPayload("end-of-call-report has neither artifact.messages nor a transcript")
        turns = split_transcript(transcript, started)
    return Parsed(turns_to_messages(broker, "vapi", call_id, contact, turns, body))


def _first_text(objects: list[dict[str, Any]], key: str) -> str | None:
    """The first non-blank text under ``key``: a missing or odd field must not fail the whole report."""
    for found in objects:
        value = found.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


@router.post("/webhooks/{broker}/vapi")
async def vapi_webhook(request: Request, broker: str) -> JSONResponse:
    refuse_oversized(request)
    tenant = await broker_for_path(request, broker, "vapi")
    secret = configured_secret(tenant, "vapi_secret", "vapi")
    signature = request.headers.get("x-vapi-signature")
    if signature:
        body = await read_body(request)
        require_hmac(signature, secret, body, "X-Vapi-Signature", tenant, "vapi")
    else:
        # A shared secret needs no body: checked before reading one.
        token = bearer(request.headers.get("authorization")) or request.headers.get("x-vapi-secret")
        require_equal(token, secret, "bearer token or X-Vapi-Signature", tenant, "vapi")
        body = await read_body(request)
    return await accept(request, tenant, "vapi", body, parse_server_message)
