"""The ingest API application: routers per channel, one Kafka producer, the broker directory."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from ingest_api import bland, form, telegram, vapi, whatsapp
from ingest_api.publisher import Publisher
from ingest_api.tenancy import BrokerDirectory
from leadflow.config import Settings, load_settings
from leadflow.credentials import MasterKeys
from leadflow.db.connection import connect
from leadflow.kafka import ensure_topics, make_producer, ping


def create_app(settings: Settings | None = None, *, broker_reload_interval_s: float = 5.0,
               ack_timeout_s: float | None = None) -> FastAPI:
    """The ingest API. Settings are resolved at start-up when not given (``leadflow ingest-api``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings or load_settings()
        ensure_topics(resolved.kafka_bootstrap_servers, resolved.topics.all(), resolved.kafka_partitions)
        app.state.settings = resolved
        app.state.brokers = BrokerDirectory(resolved.database_url, reload_interval_s=broker_reload_interval_s,
                                            refresh_s=resolved.credentials_refresh_s,
                                            keys=functools.cache(lambda: MasterKeys.from_settings(resolved)))
        app.state.brokers.reload()
        app.state.publisher = Publisher(make_producer(resolved.kafka_bootstrap_servers), resolved.topics,
                                        ack_timeout_s=ack_timeout_s or resolved.ingest_ack_timeout_s)
        try:
            yield
        finally:
            app.state.publisher.close()

    # /docs and /redoc from files the app serves itself (fastapi-offline), not a CDN: they work offline.
    app = FastAPIOffline(title="Leadflow ingest API", version="1", lifespan=lifespan, static_url="/docs-assets")
    for module in (telegram, whatsapp, vapi, bland, form):
        app.include_router(module.router)

    @app.get("/live", tags=["ops"])
    async def live() -> dict[str, str]:
        """The process answers (a liveness probe's question). No dependency is checked: Kafka being down
        must take a pod out of service (/health), not restart it."""
        return {"status": "ok"}

    @app.get("/health", tags=["ops"])
    async def health() -> JSONResponse:
        """Kafka and PostgreSQL reachability; 503 when either does not answer."""
        resolved: Settings = app.state.settings
        checks: dict[str, Any] = {}

        def check_postgres() -> None:
            conn = connect(resolved.database_url)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
            finally:
                conn.close()

        for name, probe in (("postgres", check_postgres),
                            ("kafka", lambda: ping(resolved.kafka_bootstrap_servers))):
            try:
                await asyncio.wait_for(asyncio.to_thread(probe), timeout=10)
                checks[name] = "ok"
            except Exception as exc:  # the health answer names the failure instead of raising
                checks[name] = f"error: {exc}"
        healthy = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if healthy else "degraded", **checks}, status_code=200 if healthy else 503)

    return app
