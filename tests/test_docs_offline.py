"""/docs and /redoc of both APIs work without the internet: every file their pages load is served by the app.

FastAPI's default pages load Swagger UI and ReDoc from a CDN, so offline they were blank (issue 18).
No service is needed: the pages and their files are answered without the app's lifespan.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ingest_api.app import create_app as ingest_app
from leadflow.config import Settings
from reports_api.app import create_app as reports_app
from reports_api.security import LoginLimiter, Principal, TokenSettings

NOWHERE = "postgresql://nobody@127.0.0.1:1/none"


class NoAccounts:
    """The reports API's accounts, for pages that need none: creating the app must not connect."""

    def confirm(self, principal: Principal) -> bool:
        return False

    def end_session(self, principal: Principal) -> None:
        pass

    def login_limiter(self, attempts: int, window_s: float) -> LoginLimiter:
        return LoginLimiter(attempts, window_s)

    def close(self) -> None:
        pass


def reports() -> FastAPI:
    return reports_app(NOWHERE, TokenSettings("s" * 40, timedelta(minutes=5)), accounts=NoAccounts())


def ingest() -> FastAPI:
    return ingest_app(Settings.from_environment())


# What a page loads: <script src>, <link href>, ReDoc's spec-url, and the URLs its inline script hands Swagger UI.
LOADED = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|\burl\s*:\s*['"]([^'"]+)['"]""")
EXPECTED_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}


@pytest.mark.parametrize("make", [reports, ingest], ids=["reports", "ingest"])
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_doc_pages_load_only_files_the_app_serves(make: Callable[[], FastAPI], page: str) -> None:
    client = TestClient(make())
    html = client.get(page)
    assert html.status_code == 200
    assert not re.search(r"https?://|//cdn|fonts\.googleapis", html.text), "the page loads something from outside"
    urls = {a or b for a, b in LOADED.findall(html.text)}
    assert any(u.endswith(".js") for u in urls) and "/openapi.json" in urls
    if page == "/docs":
        assert any(u.endswith(".css") for u in urls)
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        answer = client.get(url)
        assert answer.status_code == 200, url
        kind = EXPECTED_TYPES.get(url[url.rfind("."):])
        assert kind is None or kind in answer.headers["content-type"], (url, answer.headers["content-type"])
        assert len(answer.content) > 100, url
