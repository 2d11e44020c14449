"""Authenticity checks shared by the channels: shared-secret headers and HMAC-SHA256 signatures.

Every comparison is constant-time. A missing credential answers 401, a wrong one 403, and a
channel whose secret is not configured for the broker answers 403 naming the variable to set.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import HTTPException

from leadflow.brokers import Broker


def configured_secret(broker: Broker, kind: str) -> str:
    secret = broker.secret(kind)
    if secret is None:
        raise HTTPException(
            status_code=403,
            detail=f"channel not configured for broker {broker.slug!r}: set {broker.secret_env_name(kind)}",
        )
    return secret


def require_equal(presented: str | None, expected: str, what: str) -> None:
    if not presented:
        raise HTTPException(status_code=401, detail=f"missing {what}")
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise HTTPException(status_code=403, detail=f"invalid {what}")


def hmac_sha256_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def require_hmac(presented: str | None, secret: str, body: bytes, what: str) -> None:
    """Check a hex HMAC-SHA256 of the raw body, with or without a ``sha256=`` prefix."""
    if not presented:
        raise HTTPException(status_code=401, detail=f"missing {what}")
    digest = presented.strip().removeprefix("sha256=").lower()
    if not hmac.compare_digest(digest.encode(), hmac_sha256_hex(secret, body).encode()):
        raise HTTPException(status_code=403, detail=f"invalid {what}")


def bearer(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None
