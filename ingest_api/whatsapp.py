"""WhatsApp Cloud API webhooks: the GET verification handshake and signed POST notifications.

A POST may carry several messages and statuses (receipts for what we sent) across entries and
changes; every one becomes its own event, produced together before the 200.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from ingest_api.auth import configured_secret, require_equal, require_hmac
from ingest_api.intake import MalformedPayload, Parsed, accept, epoch_to_utc, read_body, refuse_oversized, require
from ingest_api.tenancy import broker_for_path
from leadflow.brokers import Broker
from leadflow.events import ChannelMessage, Contact, DeliveryStatus, Event
from leadflow.phones import to_e164

router = APIRouter(tags=["whatsapp"])

SIGNATURE_HEADER = "X-Hub-Signature-256"
_STATUSES = {"sent", "delivered", "read", "failed"}


def _text_of(message: dict[str, Any]) -> str | None:
    kind = message.get("type")
    content = message.get(kind) if isinstance(kind, str) else None
    if kind == "text":
        return str(require(content, "body", "message.text"))
    if kind == "button" and isinstance(content, dict):
        return content.get("text")
    if kind == "interactive" and isinstance(content, dict):
        reply = content.get("button_reply") or content.get("list_reply") or {}
        return reply.get("title")
    if isinstance(content, dict):
        return content.get("caption")
    return None


def parse_notification(broker: Broker, body: dict[str, Any]) -> Parsed:
    if body.get("object") != "whatsapp_business_account":
        raise MalformedPayload(f"object is {body.get('object')!r}, expected 'whatsapp_business_account'")
    entries = body.get("entry")
    if not isinstance(entries, list):
        raise MalformedPayload("entry is not a list")
    events: list[Event] = []
    ignored: list[str] = []
    for entry in entries:
        for change in require(entry, "changes", "entry"):
            if change.get("field") != "messages":
                ignored.append(str(change.get("field")))
                continue
            value = require(change, "value", "change")
            names = {c.get("wa_id"): (c.get("profile") or {}).get("name") for c in value.get("contacts") or []}
            for message in value.get("messages") or []:
                wa_id = str(require(message, "from", "message"))
                events.append(ChannelMessage.build(
                    broker_id=broker.broker_id,
                    broker_slug=broker.slug,
                    channel="whatsapp",
                    provider_message_id=str(require(message, "id", "message")),
                    conversation_id=wa_id,
                    contact=Contact(channel_user_id=wa_id, phone_e164=to_e164(wa_id, broker.country),
                                    display_name=names.get(wa_id)),
                    direction="inbound",
                    message_type=str(require(message, "type", "message")),
                    text=_text_of(message),
                    sent_at=epoch_to_utc(require(message, "timestamp", "message")),
                    raw=message,
                ))
            for status in value.get("statuses") or []:
                state = require(status, "status", "status")
                if state not in _STATUSES:
                    raise MalformedPayload(f"status {state!r} is not one of {sorted(_STATUSES)}")
                recipient = str(status.get("recipient_id") or "")
                errors = status.get("errors") or []
                events.append(DeliveryStatus.build(
                    broker_id=broker.broker_id,
                    broker_slug=broker.slug,
                    channel="whatsapp",
                    provider_message_id=str(require(status, "id", "status")),
                    status=state,
                    recipient=Contact(channel_user_id=recipient or None,
                                      phone_e164=to_e164(recipient, broker.country)),
                    status_at=epoch_to_utc(require(status, "timestamp", "status")),
                    error="; ".join(str(e.get("title") or e.get("code")) for e in errors) or None,
                    raw=status,
                ))
    return Parsed(events, ignored=f"whatsapp fields {sorted(set(ignored))}" if ignored and not events else None)


@router.get("/webhooks/{broker}/whatsapp", response_class=PlainTextResponse)
async def whatsapp_verify(
    request: Request,
    broker: str,
    mode: str | None = Query(None, alias="hub.mode"),
    token: str | None = Query(None, alias="hub.verify_token"),
    challenge: str | None = Query(None, alias="hub.challenge"),
) -> str:
    """Meta's subscription handshake: echo the challenge when the verify token matches."""
    # The shape is checked before the broker, so a 400 says nothing about which brokers exist.
    if mode != "subscribe" or challenge is None:
        raise HTTPException(status_code=400, detail="expected hub.mode=subscribe and a hub.challenge")
    tenant = await broker_for_path(request, broker, "whatsapp")
    require_equal(token, configured_secret(tenant, "whatsapp_verify_token", "whatsapp"), "hub.verify_token", tenant,
                  "whatsapp")
    return challenge


@router.post("/webhooks/{broker}/whatsapp")
async def whatsapp_webhook(request: Request, broker: str) -> JSONResponse:
    refuse_oversized(request)
    tenant = await broker_for_path(request, broker, "whatsapp")
    secret = configured_secret(tenant, "whatsapp_app_secret", "whatsapp")
    body = await read_body(request)
    require_hmac(request.headers.get(SIGNATURE_HEADER), secret, body, SIGNATURE_HEADER, tenant, "whatsapp")
    return await accept(request, tenant, "whatsapp", body, parse_notification)
