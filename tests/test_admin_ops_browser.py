"""Operations in Debian's Chromium, headless, against a running app, the real ingest API, Kafka and the landing
(issue 14): a broker's admin follows "Operación" to the health page and the dead letters, reads a malformed
Telegram update with its token redacted, is told why the unchanged payload still fails, fixes the JSON in the
page, replays it, and the message lands (``leadflow.landing.land``) once; the dead letter shows as replayed."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient

from ingest_api.app import create_app as create_ingest_app
from leadflow.config import Settings
from leadflow.demo.run import BackgroundServer
from leadflow.demo.webhooks import signed
from leadflow.landing import land
from leadflow.users import add_user
from reports_api.app import create_app
from reports_api.security import LoginLimiter, TokenSettings
from reports_api.workspace.publish import MessagePublisher
from tests import payloads
from tests.browser import require_chromium
from tests.conftest import BrokerFactory
from tests.test_leads_pipeline import rows

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = require_chromium()
TOKENS = TokenSettings("p" * 40, timedelta(minutes=30))
PASSWORD = "una-clave-larga-de-prueba"
BOT_TOKEN = "987654321:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsZZ"


@pytest.fixture(scope="module")
def base_url(settings: Settings) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
        app = create_app(settings.database_url, TOKENS, limiter=LoginLimiter(attempts=1000),
                         publisher=MessagePublisher(settings.kafka_bootstrap_servers, settings.topics.messages))
        with BackgroundServer(app) as server:
            yield server.url


def test_an_admin_fixes_a_dead_letter_in_the_page_and_replays_it_into_the_landing(
        base_url: str, settings: Settings, make_broker: BrokerFactory) -> None:
    from playwright.sync_api import sync_playwright

    broker = make_broker()
    update = payloads.telegram_text(update_id=int(time.time() * 1000) % 10**9, text="Busco casa en Maipú")
    broken = json.loads(json.dumps(update))
    del broken["message"]["date"]
    broken["bot_token"] = BOT_TOKEN  # a relay that forwards the bot's token with the update
    with TestClient(create_ingest_app(settings, broker_reload_interval_s=0)) as ingest:
        path, headers, raw = signed("telegram", broker, broken)
        assert ingest.post(path, content=raw, headers=headers).status_code == 422
    land(settings.database_url, settings.kafka_bootstrap_servers, settings.topics)
    email = f"admin-{uuid.uuid4().hex[:8]}@ops.test"
    add_user(settings.database_url, email, PASSWORD, role="ADMIN", broker_slug=broker.slug)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, chromium_sandbox=False,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page: Page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("dialog", lambda dialog: dialog.dismiss())
            page.goto(f"{base_url}/dashboard/login")
            page.fill("input[name=email]", email)
            page.fill("input[name=password]", PASSWORD)
            with page.expect_navigation():
                page.click("button[type=submit]")

            page.goto(f"{base_url}/dashboard/brokers/{broker.broker_id}/inbox")
            page.click("nav.ws-nav >> text=Operación")
            page.wait_for_url(f"**/brokers/{broker.broker_id}/admin/health")
            assert page.inner_text("#broker-figures .dead-letters").strip() == "1"
            assert "desconocido" in page.inner_text("#dagster-unknown")  # the test session has no Dagster instance

            page.click("#ops-nav >> text=Cartas muertas")
            page.wait_for_url("**/admin/dead-letters")
            row = page.locator("#dead-letters tr[data-dead-letter]")
            assert row.count() == 1
            assert "date" in row.locator(".reason").inner_text()
            assert BOT_TOKEN not in page.content() and '"bot_token": "[R' in row.locator(".preview").inner_text()
            assert row.locator(".replayed").inner_text().strip() == "pendiente"

            row.locator("a").click()
            page.wait_for_selector("#replay-body")
            shown = page.input_value("#replay-body")
            assert BOT_TOKEN not in page.content() and json.loads(shown)["bot_token"] == "[REDACTED]"

            # Replayed unchanged: the parser's reason, the payload kept in the page, nothing replayed.
            page.click("#replay")
            page.wait_for_selector("#form-error")
            assert "date" in page.inner_text("#form-error")
            assert page.input_value("#replay-body") == shown.replace("\r\n", "\n")
            assert page.inner_text("#replay-state").strip() == "nunca"

            fixed = json.loads(page.input_value("#replay-body"))
            fixed["message"]["date"] = update["message"]["date"]
            page.fill("#replay-body", json.dumps(fixed, ensure_ascii=False, indent=2))
            page.click("#replay")
            page.wait_for_selector("#done")
            assert "1 evento" in page.inner_text("#done")
            assert "reenviada 1×" in page.inner_text("#replay-state")

            land(settings.database_url, settings.kafka_bootstrap_servers, settings.topics)
            landed = rows(settings, """SELECT body, payload FROM leadflow.raw_messages
                                       WHERE broker_id = %s AND provider_message_id = %s""",
                          broker.broker_id, str(update["update_id"]))
            assert len(landed) == 1 and landed[0][0] == "Busco casa en Maipú"
            assert landed[0][1]["bot_token"] == "[REDACTED]"  # what was shown is what was replayed: no secret

            page.click("text=Volver a la lista")
            page.wait_for_url("**/admin/dead-letters")
            assert "reenviada 1×" in page.locator("#dead-letters tr[data-dead-letter] .replayed").inner_text()
        finally:
            browser.close()
