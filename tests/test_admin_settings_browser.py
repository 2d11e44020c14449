"""The settings page in Debian's Chromium, headless, against a running app on real PostgreSQL (issue 14): an admin
opens "Ajustes" from the navigation, changes a scoring weight, previews how many of the broker's leads would be
hot, warm and cold, saves it (version 2 in the history), is told which field is wrong when the thresholds cross,
and reverts to version 1."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from leadflow.brokers import Broker, add_broker
from leadflow.config import Settings, Topics
from leadflow.demo.run import BackgroundServer
from leadflow.events import Contact
from leadflow.kafka import ensure_topics
from leadflow.users import add_user
from reports_api.app import create_app
from reports_api.security import LoginLimiter, TokenSettings
from tests.browser import require_chromium
from tests.test_admin_browser import log_in
from tests.test_leads_pipeline import rows, send
from tests.test_workspace_assignment import leads_job

CHROMIUM = require_chromium()
TOKENS = TokenSettings("c" * 40, timedelta(minutes=30))
PASSWORD = "una-clave-larga-de-prueba"


@dataclass
class World:
    url: str
    broker: Broker
    admin_email: str


@pytest.fixture(scope="module")
def world(settings: Settings) -> Iterator[World]:
    tag = uuid.uuid4().hex[:8]
    topics = Topics(f"t{tag}")
    ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_partitions)
    broker = add_broker(settings.database_url, f"ajustes-{tag}", name="Propiedades Costa", country="CL",
                        timezone="America/Santiago")
    send(settings, topics, broker,
         ("whatsapp", f"wa-{tag}", Contact(channel_user_id="56911112222", phone_e164="+56911112222",
                                           display_name="Camila"),
          "Hola, busco depto 2d2b en Ñuñoa hasta 5.200 UF, tengo crédito preaprobado, me cambio en 2 meses", 0),
         ("telegram", f"tg1-{tag}", Contact(channel_user_id="7001", display_name="Olga"), "hola", 1),
         ("telegram", f"tg2-{tag}", Contact(channel_user_id="7002", display_name="Pedro"), "info", 2))
    leads_job(topics)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
        admin = add_user(settings.database_url, f"jefa-{tag}@costa.test", PASSWORD, role="ADMIN",
                         broker_slug=broker.slug)
        app = create_app(settings.database_url, TOKENS, limiter=LoginLimiter(attempts=1000))
        with BackgroundServer(app) as server:
            yield World(server.url, broker, admin.email)


def test_an_admin_previews_saves_is_told_the_field_and_reverts_a_scoring_change(world: World, settings: Settings,
                                                                                 tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    broker_id = world.broker.broker_id
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, chromium_sandbox=False,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = log_in(browser, world.url, world.admin_email)
            page.goto(f"{world.url}/dashboard/brokers/{broker_id}/inbox")
            page.click(".ws-nav a:text-is('Ajustes')")
            page.wait_for_url(f"**/dashboard/brokers/{broker_id}/admin/settings")
            scoring = "#section-scoring"
            assert page.inner_text(f"{scoring} .version") == "versión 1"

            # One message or more worth 45 points: the preview says how the leads would move, nothing is saved.
            page.fill(f"{scoring} textarea[name=engagement]", "[[1, 45]]")
            page.click(f"{scoring} button.preview")
            page.wait_for_selector("#preview")
            now = [int(page.inner_text(f"#preview tr.now td.{t}")) for t in ("hot", "warm", "cold")]
            proposed = [int(page.inner_text(f"#preview tr.proposed td.{t}")) for t in ("hot", "warm", "cold")]
            assert sum(now) == sum(proposed) == 3 and proposed != now and proposed[2] < now[2]
            assert page.input_value(f"{scoring} textarea[name=engagement]") == "[[1, 45]]"  # still typed
            assert rows(settings, "SELECT scoring FROM leadflow.broker_settings WHERE broker_id = %s",
                        broker_id) in ([], [({},)])
            page.screenshot(path=str(tmp_path / "preview.png"), full_page=True)

            page.click(f"{scoring} button[value=save]")
            page.wait_for_url("**/admin/settings?saved=scoring*")
            assert page.inner_text(f"{scoring} .version") == "versión 2"
            assert "Guardado: versión 2" in page.inner_text(f"{scoring} .saved")
            latest = page.inner_text(f"{scoring} tr[data-version='2']")
            assert "engagement" in latest and "[[1,45]]" in latest.replace(" ", "")

            # Thresholds that cross: refused, the message under the field, what was typed kept.
            page.fill(f"{scoring} input[name=hot]", "30")
            page.click(f"{scoring} button[value=save]")
            page.wait_for_selector(f"{scoring} [data-field=hot] .field-error")
            assert page.inner_text(f"{scoring} [data-field=hot] .field-error").startswith(
                "hot: the hot threshold (30) must be above the warm one (40)")
            assert page.get_attribute(f"{scoring} input[name=hot]", "aria-invalid") == "true"
            assert page.input_value(f"{scoring} input[name=hot]") == "30"
            assert page.inner_text(f"{scoring} .version") == "versión 2"

            # Back to version 1, as version 3.
            page.goto(f"{world.url}/dashboard/brokers/{broker_id}/admin/settings")
            page.click(f"{scoring} tr[data-version='1'] .revert-form button")
            page.wait_for_url("**/admin/settings?saved=scoring*")
            assert page.inner_text(f"{scoring} .version") == "versión 3"
            assert "vuelve a la 1" in page.inner_text(f"{scoring} tr[data-version='3']")
            assert page.input_value(f"{scoring} textarea[name=engagement]") == "[[6, 12], [3, 7], [1, 2]]"
            page.screenshot(path=str(tmp_path / "history.png"), full_page=True)
        finally:
            browser.close()
    assert rows(settings, "SELECT scoring FROM leadflow.broker_settings WHERE broker_id = %s",
                broker_id) == [({},)]
