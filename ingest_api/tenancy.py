"""Which broker (tenant) a webhook is for: the ``{broker}`` slug in the path.

Brokers are cached in memory and reloaded when an unknown slug arrives (at most once per
``reload_interval_s``), so a webhook costs no database round trip and a newly registered
broker is picked up without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import psycopg2
from fastapi import HTTPException, Request

from ingest_api.auth import refuse
from leadflow.brokers import Broker, list_brokers
from leadflow.config import ConfigurationError

log = logging.getLogger(__name__)


class BrokerDirectory:
    def __init__(self, database_url: str, reload_interval_s: float = 5.0) -> None:
        self._url = database_url
        self._interval = reload_interval_s
        self._by_slug: dict[str, Broker] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def reload(self) -> None:
        brokers = list_brokers(self._url)
        with self._lock:
            self._by_slug = {b.slug: b for b in brokers}
            self._loaded_at = time.monotonic()

    async def get(self, slug: str) -> Broker | None:
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
