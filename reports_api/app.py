"""The reports API application: assembles the routers of ``reports_api.routes`` and the dbt docs.

``create_app`` puts what the routes need on ``app.state`` (``database_url``, ``tokens``, ``accounts``,
``limiter``, ``owner`` (the admin routes' owner connections), ``cookie_secure``, ``docs_dir``, ``senders``
and ``publisher`` for a person's replies and replayed dead letters, ``ops`` for the health page's looks at
Kafka and Dagster; ``pool`` while the app runs); ``reports_api.deps`` reads it from there.
``reports_api.sessions`` checks every request's token against its account before any route runs.
The client address the login limit keys on is resolved by ``reports_api.proxies`` from
LEADFLOW_TRUSTED_PROXIES; run uvicorn with ``proxy_headers=False`` (``--no-proxy-headers``) so its own
handling of X-Forwarded-For does not decide first.
"""

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from leadflow.appointments.google import Google
from leadflow.config import Settings, load_settings
from leadflow.credentials import MasterKeys, StoredCredentials
from leadflow.outbound.senders import Sender, TelegramSender, WhatsAppSender
from leadflow.users import stand_in_hash
from reports_api.admin.health import OpsProbes
from reports_api.proxies import ClientAddressMiddleware, parse_trusted_proxies
from reports_api.routes import (
    admin,
    admin_calendar,
    admin_campaigns,
    admin_campaigns_pages,
    admin_channels,
    admin_ops,
    admin_ops_pages,
    admin_pages,
    admin_settings,
    admin_settings_pages,
    appointments,
    appointments_pages,
    auth,
    dashboard,
    docs,
    ops,
    reports,
    workspace,
    workspace_imports,
    workspace_pages,
    workspace_settings,
)
from reports_api.scope import ScopedPool
from reports_api.security import Accounts, LoginLimiter, TokenSettings, cookie_secure
from reports_api.sessions import OwnerConnections, PgAccounts, SessionCheckMiddleware
from reports_api.workspace import reads
from reports_api.workspace.publish import MessagePublisher

DESCRIPTION = ("Each broker's funnel, cohorts, campaigns and leads. Log in at POST /auth/token and send the "
               "token as `Authorization: Bearer …`. A token reads only its own broker (a SUPERADMIN reads any); "
               "PostgreSQL's row-level security enforces it. The dashboard is at /dashboard.")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The connection pool, open while the app serves (creating the app connects to nothing)."""
    # Before the first login: made on demand, the first unknown email's login would be the slow one.
    await run_in_threadpool(stand_in_hash)
    app.state.pool = ScopedPool(app.state.database_url, app.state.pool_size)
    try:
        yield
    finally:
        app.state.pool.close()
        app.state.owner.close()
        app.state.accounts.close()
        await run_in_threadpool(app.state.publisher.close)


def _printable(value: Any) -> Any:
    """``value`` with every string made UTF-8 encodable (a lone surrogate becomes '?')."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode()
    if isinstance(value, list | tuple):
        return [_printable(item) for item in value]
    if isinstance(value, dict):
        return {_printable(key): _printable(item) for key, item in value.items()}
    return value


async def validation_problem(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 without the ``input`` it echoes: the input may be a password, and a lone surrogate in it
    made the default handler fail with a 500 (issue 17, finding 15)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    shown = [{key: error[key] for key in ("type", "loc", "msg", "ctx") if key in error} for error in errors]
    return JSONResponse({"detail": _printable(jsonable_encoder(shown))},
                        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def create_app(database_url: str, tokens: TokenSettings, *, pool_size: int | None = None,
               limiter: LoginLimiter | None = None, docs_dir: Path | None = None,
               trusted_proxies: str | None = None, secure_cookie: bool | None = None,
               bind_host: str | None = None, accounts: Accounts | None = None,
               senders: dict[str, Sender] | None = None, publisher: MessagePublisher | None = None,
               credentials: StoredCredentials | None = None) -> FastAPI:
    """The reports API on ``database_url``; ``docs_dir`` (dbt docs) is served at /dbt-docs/ to logged-in callers.

    The pool size, the login limit, the trusted proxies and the cookie's Secure flag default to their
    settings (LEADFLOW_REPORTS_*, LEADFLOW_TRUSTED_PROXIES, LEADFLOW_COOKIE_SECURE); ``bind_host``, where the
    server listens when not LEADFLOW_REPORTS_HOST, decides the Secure flag's default. ``accounts`` (sessions
    and the login limit shared across processes) defaults to the database's; a ``limiter`` given replaces
    the default, shared one. ``senders`` (a person's replies; default: Telegram and WhatsApp at
    LEADFLOW_TELEGRAM_API_URL / LEADFLOW_WHATSAPP_API_URL) and ``publisher`` (Kafka, connected on the first
    reply; default: LEADFLOW_KAFKA_BOOTSTRAP_SERVERS and the messages topic) are for tests to replace; so is
    ``credentials`` (the stored channel credentials the default senders read; the admin pages refresh it on a
    change).
    """
    configured = Settings.from_environment()
    # /docs and /redoc from files the app serves itself (fastapi-offline), not a CDN: they work offline.
    app = FastAPIOffline(title="Leadflow reports API", version="1", lifespan=lifespan, description=DESCRIPTION,
                         static_url="/docs-assets")
    app.state.database_url = database_url
    app.state.pool_size = pool_size or configured.reports_pool_size
    app.state.tokens = tokens
    # The admin routes' writes (brokers, users, invitations, channel credentials): the reports role has no
    # rights on them.
    app.state.owner = OwnerConnections(database_url, size=4)
    app.state.accounts = accounts if accounts is not None else PgAccounts(database_url)
    app.state.limiter = limiter if limiter is not None else app.state.accounts.login_limiter(
        attempts=configured.reports_login_attempts, window_s=configured.reports_login_window_s)
    app.state.cookie_secure = cookie_secure(configured, bind_host) if secure_cookie is None else secure_cookie
    app.state.docs_dir = docs_dir
    # The visits' "now" (what is free, whether a visit has started): tests replace it with a fixed instant.
    app.state.clock = functools.partial(datetime.now, UTC)
    reads.COUNTS.ttl_s = configured.inbox_counts_ttl_s
    # The admin pages write credentials as the owner (the reports role cannot read them), sealed under the
    # master key, resolved on first use.
    app.state.master_keys = functools.cache(lambda: MasterKeys.from_settings(configured, database_url))
    app.state.credentials = credentials if credentials is not None else StoredCredentials(
        database_url, app.state.master_keys, configured.credentials_refresh_s)
    # Google Calendar connections (the admin page's OAuth): Google's endpoints and the OAuth client (tests replace it).
    app.state.google = Google.from_settings(configured, app.state.credentials)
    app.state.telegram_api_url = configured.telegram_api_url
    app.state.ingest_public_url = configured.webhook_base_url
    app.state.senders = senders if senders is not None else {
        "telegram": TelegramSender(configured.telegram_api_url, credentials=app.state.credentials),
        "whatsapp": WhatsAppSender(configured.whatsapp_api_url, credentials=app.state.credentials)}
    app.state.publisher = publisher if publisher is not None else MessagePublisher(
        configured.kafka_bootstrap_servers, configured.topics.messages)
    # The operations pages' looks at Kafka's end offsets and Dagster's instance, cached (tests replace it).
    app.state.ops = OpsProbes(configured.kafka_bootstrap_servers, configured.topics, configured.dagster_instance_dir)
    app.add_exception_handler(RequestValidationError, validation_problem)
    proxies = parse_trusted_proxies(configured.trusted_proxies if trusted_proxies is None else trusted_proxies)
    app.add_middleware(ClientAddressMiddleware, trusted_proxies=proxies)
    app.add_middleware(SessionCheckMiddleware)
    for area in (auth, reports, ops, dashboard, workspace, workspace_pages, workspace_settings, workspace_imports,
                 admin, admin_pages, admin_channels, admin_settings, admin_settings_pages, admin_ops, admin_ops_pages,
                 admin_campaigns, admin_campaigns_pages, admin_calendar, appointments, appointments_pages):
        app.include_router(area.router)
    if docs_dir is not None:
        # Routed even before the first `dbt docs generate` has written the site: it 404s until then.
        app.include_router(docs.router)
    return app


def from_environment() -> FastAPI:
    """For `uvicorn --factory --no-proxy-headers reports_api.app:from_environment`: LEADFLOW_DATABASE_URL (or the
    embedded PostgreSQL) and LEADFLOW_REPORTS_JWT_SECRET, which is required here."""
    settings = load_settings()
    return create_app(settings.database_url, TokenSettings.from_settings(settings), docs_dir=settings.docs_dir,
                      publisher=MessagePublisher(settings.kafka_bootstrap_servers, settings.topics.messages))
