"""Which broker (tenant) a webhook is for: the ``{broker}`` slug in the path.

Brokers and their stored credentials are cached in memory, so a webhook costs no database round trip.
The cache is refreshed in the background every ``refresh_s`` (a fingerprint query; a reload only when a
broker or a credential changed), and reloaded at once when an unknown slug arrives (at most once per
``reload_interval_s``): a new broker, or a secret its admin rotated, works within seconds and without a
restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

import psycopg2
from fastapi import HTTPException, Request

from ingest_api.auth import refuse
from leadflow import credentials
from leadflow.brokers import Broker, select_brokers
from leadflow.config import ConfigurationError
from leadflow.db.connection import transaction

log = logging.getLogger(__name__)

INLINE_REFRESH_WAIT_S = 1.0


class BrokerDirectory:
    def __init__(self, database_url: str, reload_interval_s: float = 5.0, *, refresh_s: float = 2.0,
                 keys: Callable[[], credentials.MasterKeys] | None = None) -> None:
        self._url = database_url
        self._interval = reload_interval_s
        self._refresh_s = refresh_s
        # Resolved on the first stored credential: an install that stores none needs no master key.
        self._keys = keys
        self._by_slug: dict[str, Broker] = {}
        self._fingerprint: tuple[object, ...] | None = None
        self._loaded_at = 0.0
        self._checked_at = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self._lock = threading.Lock()

    def reload(self, *, only_if_changed: bool = False) -> None:
        # One reload at a time (the background refresh and an unknown slug's): an older snapshot never
        # replaces a newer one.
        with self._lock:
            self._loaded_at = self._checked_at = time.monotonic()
            with transaction(self._url) as conn, conn.cursor() as cur:
                now = credentials.fingerprint(cur)
                if only_if_changed and now == self._fingerprint:
                    return
                stored = credentials.read_all(cur, self._master_keys()) if now[0] else {}
                brokers = select_brokers(cur, stored)
            self._by_slug = {b.slug: b for b in brokers}
            self._fingerprint = now

    def _master_keys(self) -> credentials.MasterKeys:
        if self._keys is None:
            raise ConfigurationError("credentials are stored but this directory was given no master keys")
        return self._keys()

    async def _refresh(self) -> None:
        self._checked_at = time.monotonic()
        try:
            await asyncio.to_thread(self.reload, only_if_changed=True)
        except (ConfigurationError, psycopg2.Error) as exc:
            # Known brokers keep being served from the cache; the next request after refresh_s tries again.
            log.warning("brokers could not be refreshed: %s", str(exc).splitlines()[0])
        finally:
            self._refreshing = None

    async def get(self, slug: str) -> Broker | None:
        age = time.monotonic() - self._checked_at
        if age > 2 * self._refresh_s:
            # After a quiet spell the cache may hold a secret its admin has since replaced (a leaked one): look
            # before answering. Under steady traffic the background refresh keeps it younger than this.
            if self._refreshing is None:
                self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
            # Bounded: with PostgreSQL unreachable, the known brokers are served rather than every webhook stalled.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._refreshing), timeout=INLINE_REFRESH_WAIT_S)
        elif age > self._refresh_s and self._refreshing is None:
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
        broker = self._by_slug.get(slug)
        if broker is None and time.monotonic() - self._loaded_at > self._interval:
            try:
                await asyncio.to_thread(self.reload)
            except (ConfigurationError, psycopg2.Error) as exc:
                # PostgreSQL away (a restart): the provider is told to retry, rather than given a 500 or a 403
                # for a broker that may well exist. Known brokers keep being served from the cache meanwhile.
                log.warning("brokers could not be reloaded: %s", str(exc).splitlines()[0])
                raise HTTPException(status_code=503, detail="cannot look the broker up now; retry later") from None
            broker = self._by_slug.get(slug)
        return broker


async def broker_for_path(request: Request, broker: str, channel: str) -> Broker:
    """The broker named in the path; an unknown one gets the same 403 as a forged signature.

    Awaited by each route rather than declared with Depends: on the webhook hot path FastAPI's
    dependency resolution costs more than the lookup itself.
    """
    directory: BrokerDirectory = request.app.state.brokers
    found = await directory.get(broker)
    if found is None:
        raise refuse(channel, broker, "unknown broker")
    return found
