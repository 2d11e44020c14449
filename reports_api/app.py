"""The reports API application: assembles the routers of ``reports_api.routes`` and the dbt docs.

``create_app`` puts what the routes need on ``app.state`` (``database_url``, ``tokens``, ``limiter``;
``pool`` while the app runs); ``reports_api.deps`` reads it from there.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from leadflow.config import Settings, load_settings
from reports_api.routes import auth, dashboard, ops, reports
from reports_api.scope import ScopedPool
from reports_api.security import LoginLimiter, TokenSettings

DESCRIPTION = ("Each broker's funnel, cohorts, campaigns and leads. Log in at POST /auth/token and send the "
               "token as `Authorization: Bearer …`. A token reads only its own broker (a SUPERADMIN reads any); "
               "PostgreSQL's row-level security enforces it. The dashboard is at /dashboard.")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The connection pool, open while the app serves (creating the app connects to nothing)."""
    app.state.pool = ScopedPool(app.state.database_url, app.state.pool_size)
    try:
        yield
    finally:
        app.state.pool.close()


def create_app(database_url: str, tokens: TokenSettings, *, pool_size: int | None = None,
               limiter: LoginLimiter | None = None, docs_dir: Path | None = None) -> FastAPI:
    """The reports API on ``database_url``; ``docs_dir`` (dbt docs) is served at /dbt-docs/.

    The pool size and the login limit default to their settings (LEADFLOW_REPORTS_*).
    """
    configured = Settings.from_environment()
    app = FastAPI(title="Leadflow reports API", version="1", lifespan=lifespan, description=DESCRIPTION)
    app.state.database_url = database_url
    app.state.pool_size = pool_size or configured.reports_pool_size
    app.state.tokens = tokens
    app.state.limiter = limiter or LoginLimiter(attempts=configured.reports_login_attempts,
                                                window_s=configured.reports_login_window_s)
    for area in (auth, reports, ops, dashboard):
        app.include_router(area.router)
    if docs_dir is not None:
        # Mounted even before the first `dbt docs generate` has written it: it 404s until then.
        app.mount("/dbt-docs", StaticFiles(directory=docs_dir, html=True, check_dir=False), name="dbt-docs")
    return app


def from_environment() -> FastAPI:
    """For `uvicorn --factory reports_api.app:from_environment`: LEADFLOW_DATABASE_URL (or the embedded
    PostgreSQL) and LEADFLOW_REPORTS_JWT_SECRET, which is required here."""
    settings = load_settings()
    return create_app(settings.database_url, TokenSettings.from_settings(settings), docs_dir=settings.docs_dir)
