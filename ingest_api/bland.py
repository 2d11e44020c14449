"""Bland AI post-call webhooks, signed with ``X-Webhook-Signature`` (HMAC-SHA256 of the raw body)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ingest_api.auth import configured_secret, require_hmac
from ingest_api.calls import split_transcript, turns_to_messages
from ingest_api.intake import MalformedPayload, Parsed, accept, iso_to_utc, read_body, refuse_oversized, require
from ingest_api.tenancy import broker_for_path
from leadflow.brokers import Broker
from leadflow.events import Contact
from leadflow.phones import to_e164

router = APIRouter(tags=["bland"])

SIGNATURE_HEADER = "X-Webhook-Signature"


def parse_call(broker: Broker, body: dict[str, Any]) -> Parsed:
    call_id = str(require(body, "call_id", "body"))
    started = iso_to_utc(body.get("started_at") or body.get("created_at"))
    if started is None:
        raise MalformedPayload("body.created_at is missing")
    found = body.get("variables")
    variables: dict[str, Any] = found if isinstance(found, dict) else {}
    # Inbound calls: the lead is `from`; outbound calls we placed: the lead is `to`.
    side = "from" if _inbound(body.get("inbound")) else "to"
    lead_number = _text(body.get(side))
    contact = Contact(channel_user_id=lead_number or call_id,
                      phone_e164=_lead_phone(broker, lead_number, variables, side),
                      display_name=_text(variables.get("name")))
    transcripts = body.get("transcripts")
    if isinstance(transcripts, list) and transcripts:
        turns = [(str(t.get("user", "")), str(t.get("text") or ""),
                  iso_to_utc(t.get("created_at")) or started) for t in transcripts]
    elif isinstance(body.get("concatenated_transcript"), str):
        turns = split_transcript(body["concatenated_transcript"], started)
    else:
        raise MalformedPayload("call has neither transcripts nor concatenated_transcript")
    return Parsed(turns_to_messages(broker, "bland", call_id, contact, turns, body))


def _text(value: object) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _inbound(value: object) -> bool:
    # Documented as a boolean; a string "true" from a form-encoded relay must not turn a caller into `to`.
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _lead_phone(broker: Broker, number: str | None, variables: dict[str, Any], side: str) -> str | None:
    """The lead's E.164. Bland writes top-level numbers as dialled, sometimes national without the country
    code ("to": "5551234567"); its system variables repeat both ends with a plus, and ``country`` is the
    lead's, which places a national number better than the broker's country when the two differ."""
    found = to_e164(number, broker.country)
    if found is None:
        found = to_e164(_text(variables.get(side)), broker.country)
    if found is None and number is not None and isinstance(variables.get("country"), str):
        found = to_e164(number, variables["country"])
    return found


@router.post("/webhooks/{broker}/bland")
async def bland_webhook(request: Request, broker: str) -> JSONResponse:
    refuse_oversized(request)
    tenant = await broker_for_path(request, broker, "bland")
    secret = configured_secret(tenant, "bland_webhook_secret", "bland")
    body = await read_body(request)
    require_hmac(request.headers.get(SIGNATURE_HEADER), secret, body, SIGNATURE_HEADER, tenant, "bland")
    return await accept(request, tenant, "bland", body, parse_call)
