"""The client's address, resolved by the reports API itself: X-Forwarded-For counts only from a trusted proxy.

The login limit is keyed by this address, so whoever may set it chooses their own limit. Only the
peers listed in LEADFLOW_TRUSTED_PROXIES (addresses or networks; empty: none) are believed; from any
other peer the header is ignored and the peer is the client.

Uvicorn has its own proxy-header handling, on by default for 127.0.0.1 and ::1, and it replaces the
peer before this middleware sees it. Start uvicorn with ``proxy_headers=False`` (``--no-proxy-headers``)
so this middleware decides alone. If uvicorn replaced the peer anyway (the peer it reports is one of
the X-Forwarded-For entries), the real peer is unknown: the request gets ``UNVERIFIED`` as its address,
one for all such requests, so a forged header can neither choose an address nor escape the limit.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from leadflow.config import ConfigurationError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

UNVERIFIED = "unverified-forwarded"
log = logging.getLogger(__name__)


def parse_trusted_proxies(value: str) -> tuple[Network, ...]:
    """LEADFLOW_TRUSTED_PROXIES: ``10.0.0.5, 172.18.0.0/16, ::1``; empty: trust no proxy."""
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ConfigurationError(f"LEADFLOW_TRUSTED_PROXIES: {item!r} is not an IP address or network "
                                     "(e.g. 10.0.0.5 or 172.18.0.0/16)") from exc
    return tuple(networks)


def _address(text: str) -> Address | None:
    """An X-Forwarded-For entry or a peer as an IP address (ports and IPv6 brackets removed); None if not one."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: Address | None, proxies: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in proxies)


def forwarded_for(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Every X-Forwarded-For entry, in order (several headers are one list, as RFC 7230 joins them)."""
    entries: list[str] = []
    for name, value in headers:
        if name.lower() == b"x-forwarded-for":
            entries.extend(part.strip() for part in value.decode("latin-1").split(","))
    return [entry for entry in entries if entry]


def client_address(peer: str | None, forwarded: Sequence[str], proxies: Sequence[Network]) -> str:
    """The client behind ``peer``: the peer itself, unless it is a trusted proxy; then the nearest
    X-Forwarded-For entry (read from the right, the end the proxies append to) that is not a trusted proxy."""
    if peer is None:
        return "unknown"
    peer_address = _address(peer)
    if any(entry == peer or (peer_address is not None and _address(entry) == peer_address) for entry in forwarded):
        # The peer came out of the header: an outer layer (uvicorn's proxy headers) already believed it.
        return UNVERIFIED
    hop = peer
    if not _trusted(peer_address, proxies):
        return hop
    for entry in reversed(forwarded):
        address = _address(entry)
        if address is None:
            # Not an address: no proxy of ours wrote it, so the last proxy that did is as far as we can see.
            return hop
        hop = str(address)
        if not _trusted(address, proxies):
            return hop
    return hop


class ClientAddressMiddleware:
    """Puts the resolved client address into ``scope["client"]`` (and, from a trusted proxy, the scheme
    it saw, from X-Forwarded-Proto), so ``request.client`` is what the login limit keys on."""

    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[Network] = ()) -> None:
        self.app = app
        self.trusted_proxies = tuple(trusted_proxies)
        self._warned = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        peer: Any = scope.get("client")
        peer_host = peer[0] if peer else None
        forwarded = forwarded_for(scope.get("headers", ()))
        client = client_address(peer_host, forwarded, self.trusted_proxies)
        if client == UNVERIFIED and not self._warned:
            self._warned = True
            log.warning("X-Forwarded-For was already applied before the reports API saw the request (uvicorn's "
                        "proxy headers?): such requests share one login limit. Start uvicorn with "
                        "proxy_headers=False (--no-proxy-headers) and list proxies in LEADFLOW_TRUSTED_PROXIES.")
        changes: dict[str, Any] = {}
        if client != peer_host:
            changes["client"] = (client, 0)
        if peer_host is not None and client != UNVERIFIED and _trusted(_address(peer_host), self.trusted_proxies):
            proto = _forwarded_proto(scope.get("headers", ()))
            if proto in ("http", "https"):
                changes["scheme"] = proto
        # A copy: the server's own scope (its access log) keeps the peer it saw.
        await self.app({**scope, **changes} if changes else scope, receive, send)


def _forwarded_proto(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    values = [value.decode("latin-1") for name, value in headers if name.lower() == b"x-forwarded-proto"]
    # The nearest proxy's word is the last one.
    return values[-1].split(",")[-1].strip().lower() if values else None
