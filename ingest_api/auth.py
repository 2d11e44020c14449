"""Authenticity checks shared by the channels: shared-secret headers and HMAC-SHA256 signatures.

Every comparison is constant-time. Every refusal — unknown broker, channel without a configured
secret, missing credential, wrong credential — is the same ``403 {"detail": "forbidden"}``, so a
caller learns neither which broker slugs exist nor which variables configure them; the reason
is written to the server log instead (never a secret or the credential presented).
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from fastapi import HTTPException

from leadflow.brokers import Broker

log = logging.getLogger(__name__)

# 403 rather than 401: a 401 must carry a WWW-Authenticate challenge, and webhook signatures have
# no scheme a client could answer with; the providers treat both alike (retry or give up).
REFUSED_STATUS = 403
REFUSED_DETAIL = "forbidden"


def refuse(channel: str, slug: str, reason: str) -> HTTPException:
    """The one answer every refused caller gets; ``reason`` goes to the log only.

    ``%r`` keeps a caller-chosen slug from writing line breaks or control characters into the log.
    """
    log.warning("webhook refused: %s for broker %r: %s", channel, slug, reason)
    return HTTPException(status_code=REFUSED_STATUS, detail=REFUSED_DETAIL)


def configured_secret(broker: Broker, kind: str, channel: str) -> str:
    secret = broker.secret(kind)
    if secret is None:
        raise refuse(channel, broker.slug, f"channel not configured: set {broker.secret_env_name(kind)}")
    return secret


def require_equal(presented: str | None, expected: str, what: str, broker: Broker, channel: str) -> None:
    if not presented:
        raise refuse(channel, broker.slug, f"missing {what}")
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise refuse(channel, broker.slug, f"invalid {what}")


def hmac_sha256_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def require_hmac(presented: str | None, secret: str, body: bytes, what: str, broker: Broker, channel: str) -> None:
    """Check a hex HMAC-SHA256 of the raw body, with or without a ``sha256=`` prefix."""
    if not presented:
        raise refuse(channel, broker.slug, f"missing {what}")
    digest = presented.strip().removeprefix("sha256=").lower()
    if not hmac.compare_digest(digest.encode(), hmac_sha256_hex(secret, body).encode()):
        raise refuse(channel, broker.slug, f"invalid {what}")


def bearer(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None
