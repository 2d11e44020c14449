"""VAPI server-URL messages: the ``end-of-call-report`` becomes the call's messages.

Authenticated by ``Authorization: Bearer <secret>`` (or VAPI's ``X-Vapi-Secret``) or by an
``X-Vapi-Signature`` HMAC-SHA256 of the raw body; either uses the broker's ``vapi_secret``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from ingest_api.auth import bearer, configured_secret, require_equal, require_hmac
from ingest_api.calls import split_transcript, turns_to_messages
from ingest_api.intake import MalformedPayload, Parsed, accept, epoch_to_utc, iso_to_utc, require
from ingest_api.tenancy import broker_for_path
from leadflow.brokers import Broker
from leadflow.events import Contact
from leadflow.phones import to_e164

router = APIRouter(tags=["vapi"])


def parse_server_message(broker: Broker, body: dict[str, Any]) -> Parsed:
    message = require(body, "message", "body")
    kind = require(message, "type", "message")
    if kind != "end-of-call-report":
        return Parsed(ignored=f"vapi message type {kind!r}")
    call = require(message, "call", "message")
    call_id = str(require(call, "id", "message.call"))
    customer = call.get("customer") or {}
    contact = Contact(channel_user_id=customer.get("number") or call_id,
                      phone_e164=to_e164(customer.get("number"), broker.country),
                      display_name=customer.get("name"))
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


@router.post("/webhooks/{broker}/vapi")
async def vapi_webhook(request: Request, broker: str) -> JSONResponse:
    tenant = await broker_for_path(request, broker)
    body = await request.body()
    secret = configured_secret(tenant, "vapi_secret")
    signature = request.headers.get("x-vapi-signature")
    if signature:
        require_hmac(signature, secret, body, "X-Vapi-Signature")
    else:
        token = bearer(request.headers.get("authorization")) or request.headers.get("x-vapi-secret")
        if token is None:
            raise HTTPException(status_code=401, detail="missing bearer token or X-Vapi-Signature")
        require_equal(token, secret, "bearer token")
    return await accept(request, tenant, "vapi", body, parse_server_message)
