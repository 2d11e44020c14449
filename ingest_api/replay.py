"""An admin's replay of a dead letter: a fixed payload parsed by its channel's own parser, exactly as a webhook.

No request and no signature: the caller (``reports_api.admin.dead_letters``) has already checked that an admin
of the broker asks for it, which is the authorization here; what comes out is the same events, with the same
ids, the ingest API would have produced, so a payload replayed twice lands once.
"""

from __future__ import annotations

from ingest_api import bland, form, telegram, vapi, whatsapp
from ingest_api.intake import MAX_BODY_BYTES, MalformedPayload, Parsed, Parser, parse_body, replaying
from leadflow.brokers import Broker

PARSERS: dict[str, Parser] = {
    "telegram": telegram.parse_update,
    "whatsapp": whatsapp.parse_notification,
    "vapi": vapi.parse_server_message,
    "bland": bland.parse_call,
    "form": form.parse_submission,
}


def parse_replay(broker: Broker, channel: str, body: bytes) -> Parsed:
    """The events of ``body`` as a webhook of ``channel``; MalformedPayload (the parser's reason) when it still
    does not parse. The provider's replay window does not apply: a late delivery is what gets replayed."""
    parser = PARSERS.get(channel)
    if parser is None:
        raise MalformedPayload(f"channel {channel!r} has no webhook parser: only {', '.join(PARSERS)} can be replayed")
    if len(body) > MAX_BODY_BYTES:
        raise MalformedPayload(f"body larger than {MAX_BODY_BYTES} bytes, the ingest API's limit")
    with replaying():
        return parse_body(broker, body, parser)
