"""Web-form and portal leads: a JSON object posted with ``Authorization: Bearer <form_api_key>``.

Shape: ``{"submission_id"?, "name"?, "phone"?, "email"?, "message"?, "source"?, "submitted_at"?, ...}``;
at least a phone or an email. Without a ``submission_id`` the id is a hash of the body, so
a resubmitted identical form lands once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ingest_api.auth import bearer, configured_secret, require_equal
from ingest_api.intake import MalformedPayload, Parsed, accept, iso_to_utc, read_body, refuse_oversized
from ingest_api.tenancy import broker_for_path
from leadflow.brokers import Broker
from leadflow.events import ChannelMessage, Contact, utcnow
from leadflow.phones import to_e164

router = APIRouter(tags=["form"])


def parse_submission(broker: Broker, body: dict[str, Any]) -> Parsed:
    phone_raw, email = body.get("phone"), body.get("email")
    if not phone_raw and not email:
        raise MalformedPayload("a form lead needs a phone or an email")
    if email is not None and (not isinstance(email, str) or "@" not in email):
        raise MalformedPayload(f"email {email!r} is not an email address")
    submission_id = body.get("submission_id") or hashlib.sha256(
        json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]
    phone = to_e164(str(phone_raw), broker.country) if phone_raw else None
    contact = Contact(channel_user_id=phone or (email.lower() if email else None), phone_e164=phone,
                      display_name=body.get("name"), email=email.lower() if email else None)
    return Parsed([
        ChannelMessage.build(
            broker_id=broker.broker_id,
            broker_slug=broker.slug,
            channel="form",
            provider_message_id=str(submission_id),
            conversation_id=str(submission_id),
            contact=contact,
            direction="inbound",
            message_type="form",
            text=body.get("message"),
            sent_at=iso_to_utc(body.get("submitted_at")) or utcnow(),
            raw=body,
        )
    ])


@router.post("/webhooks/{broker}/form")
async def form_webhook(request: Request, broker: str) -> JSONResponse:
    refuse_oversized(request)
    tenant = await broker_for_path(request, broker, "form")
    require_equal(bearer(request.headers.get("authorization")), configured_secret(tenant, "form_api_key", "form"),
                  "bearer token", tenant, "form")
    return await accept(request, tenant, "form", await read_body(request), parse_submission)
