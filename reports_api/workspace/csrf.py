"""CSRF tokens of the workspace's forms.

The dashboard's session is a cookie (SameSite=Strict already keeps other sites' forms from sending it);
every form also carries a token derived from that session with the server's key, so a request that did not
come from one of our pages is refused even where a browser's SameSite handling falls short. The token is
stateless: an HMAC of the session token, checked in constant time. Bearer-token API calls carry no
cookie and need none.
"""

from __future__ import annotations

import hashlib
import hmac

FIELD = "csrf"
HEADER = "X-CSRF-Token"


def token_for(secret: str, session: str) -> str:
    return hmac.new(secret.encode(), b"leadflow-csrf\x00" + session.encode(), hashlib.sha256).hexdigest()


def valid(secret: str, session: str, offered: str | None) -> bool:
    # As bytes: compare_digest refuses a str with non-ASCII characters (a forged "é" was a 500, not a 403).
    return bool(offered) and hmac.compare_digest(token_for(secret, session).encode(), str(offered).encode())
