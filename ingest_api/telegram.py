"""Telegram Bot API webhooks: ``X-Telegram-Bot-Api-Secret-Token`` checked, one update per request."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ingest_api.auth import configured_secret, require_equal
from ingest_api.intake import MalformedPayload, Parsed, accept, epoch_to_utc, read_body, refuse_oversized, require
from ingest_api.tenancy import broker_for_path
from leadflow.brokers import Broker
from leadflow.events import ChannelMessage, Contact
from leadflow.phones import to_e164

router = APIRouter(tags=["telegram"])

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_MEDIA_TYPES = ("voice", "audio", "photo", "video", "video_note", "document", "sticker", "location", "contact")


def parse_update(broker: Broker, update: dict[str, Any]) -> Parsed:
    update_id = require(update, "update_id", "update")
    if not isinstance(update_id, int):
        raise MalformedPayload("update.update_id is not an integer")
    kind = next((k for k in ("message", "edited_message") if k in update), None)
    if kind is None:
        other = next((k for k in update if k != "update_id"), "empty")
        return Parsed(ignored=f"telegram update type {other!r}")
    message = update[kind]
    sender = require(message, "from", kind)
    chat = require(message, "chat", kind)
    name = " ".join(p for p in (sender.get("first_name"), sender.get("last_name")) if p) or sender.get("username")
    shared = message.get("contact")
    phone = None
    # A contact card counts as the sender's phone only when they share their own.
    if isinstance(shared, dict) and shared.get("user_id") == sender.get("id"):
        phone = to_e164(shared.get("phone_number"), broker.country)
    message_type = "text" if "text" in message else next((t for t in _MEDIA_TYPES if t in message), "other")
    text = message.get("text") if "text" in message else message.get("caption")
    return Parsed([
        ChannelMessage.build(
            broker_id=broker.broker_id,
            broker_slug=broker.slug,
            channel="telegram",
            provider_message_id=str(update_id),
            conversation_id=str(require(chat, "id", f"{kind}.chat")),
            contact=Contact(channel_user_id=str(require(sender, "id", f"{kind}.from")), phone_e164=phone,
                            display_name=name),
            direction="inbound",
            message_type=message_type,
            text=text,
            sent_at=epoch_to_utc(require(message, "date", kind)),
            raw=update,
        )
    ])


@router.post("/webhooks/{broker}/telegram")
async def telegram_webhook(request: Request, broker: str) -> JSONResponse:
    refuse_oversized(request)
    tenant = await broker_for_path(request, broker, "telegram")
    require_equal(request.headers.get(SECRET_HEADER), configured_secret(tenant, "telegram_secret_token", "telegram"),
                  SECRET_HEADER, tenant, "telegram")
    return await accept(request, tenant, "telegram", await read_body(request), parse_update)
