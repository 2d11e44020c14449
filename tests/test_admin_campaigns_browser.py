"""Segments and campaigns in Debian's Chromium, headless, against a running app on real PostgreSQL and Kafka
(issue 14): a broker's admin builds a segment and watches its count change as the rule is typed, builds a manual
campaign with a WhatsApp message step (refused first, naming the field), previews it for one of its leads,
activates it, checks three leads in the inbox and applies it to them; the real campaign job runs, the fake
WhatsApp API on 127.0.0.1 receives exactly the three messages, and the campaign's log page shows them sent."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from leadflow.brokers import Broker
from leadflow.config import Settings, Topics
from leadflow.demo.run import BackgroundServer
from reports_api.app import create_app
from reports_api.security import LoginLimiter, TokenSettings
from tests.browser import require_chromium
from tests.fake_channels import FakeChannels
from tests.test_admin_campaigns import (
    ANA,
    BRUNO,
    CAMILA,
    CARLA,
    NOON,
    PASSWORD,
    TOMAS,
    ZOE,
    build_world,
    campaign_job,
    whatsapp_to,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = require_chromium()


@dataclass
class Stack:
    url: str
    broker: Broker
    topics: Topics
    leads: dict[str, int]
    admin_email: str
    fake: FakeChannels


@pytest.fixture(scope="module")
def stack(settings: Settings) -> Iterator[Stack]:
    fake = FakeChannels().start()
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
            a, _b, topics, leads, emails = build_world(settings, env)
            app = create_app(settings.database_url, TokenSettings("d" * 40, timedelta(minutes=30)),
                             limiter=LoginLimiter(attempts=1000), secure_cookie=False)
            with BackgroundServer(app) as server:
                yield Stack(server.url, a, topics, leads, emails["admin_a"], fake)
    finally:
        fake.stop()


def log_in(page: Page, stack: Stack) -> None:
    page.goto(f"{stack.url}/dashboard/login")
    page.fill("input[name=email]", stack.admin_email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/dashboard/brokers/{stack.broker.broker_id}")


def test_an_admin_builds_a_segment_and_a_campaign_and_applies_it_from_the_inbox(
        stack: Stack, settings: Settings, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    broker, leads = stack.broker.broker_id, stack.leads
    campaign_name = f"seguimiento {uuid.uuid4().hex[:6]}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, chromium_sandbox=False,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("dialog", lambda dialog: dialog.dismiss())
            log_in(page, stack)

            # From the navigation to a new segment; the count follows the rule as it is typed.
            page.goto(f"{stack.url}/dashboard/brokers/{broker}/inbox")
            page.click("nav.ws-nav a:text-is('Campañas')")
            page.wait_for_url(f"**/brokers/{broker}/admin/campaigns")
            page.click("#new-segment")
            page.fill("input[name=name]", "con whatsapp")
            page.select_option("select[name=cond0_field]", "channels")
            page.select_option("select[name=cond0_op]", "any_of")
            page.fill("input[name=cond0_value]", "telegram")
            page.wait_for_function("document.getElementById('live-count').dataset.count === '1'")  # Tomás
            page.fill("input[name=cond0_value]", "whatsapp")
            page.wait_for_function("document.getElementById('live-count').dataset.count === '4'")
            sample = {int(x) for x in page.locator("#live-sample li").evaluate_all("l => l.map(e => e.dataset.lead)")}
            assert sample == {leads["Camila"], leads["Bruno"], leads["Carla"], leads["Ana"]}
            page.select_option("select[name=cond1_field]", "score")
            page.select_option("select[name=cond1_op]", "gte")
            page.fill("input[name=cond1_value]", "alto")
            page.wait_for_function("document.getElementById('live-error').textContent.includes('Condición 2')")
            page.fill("input[name=cond1_value]", "0")
            page.wait_for_function("document.getElementById('live-count').dataset.count === '4'")
            page.click("#segment-form button[type=submit]")
            page.wait_for_url("**/admin/segments/*?saved=1")
            assert "4 leads ahora" in page.inner_text("#live-count")

            # A manual campaign with a WhatsApp message step: first without its text, refused naming the field.
            page.goto(f"{stack.url}/dashboard/brokers/{broker}/admin/campaigns/new")
            page.fill("input[name=name]", campaign_name)
            page.select_option("select[name=trigger_type]", "manual")
            page.select_option("select[name=step0_action]", "message")
            page.select_option("select[name=step0_channel]", "whatsapp")
            page.fill("input[name=step0_wa_name]", "seguimiento")
            page.fill("textarea[name=step0_wa_parameters]", "{{first_name}}")
            page.click("#save-campaign")
            page.wait_for_selector("#form-error")
            assert "Paso 1 · texto: a message step needs a 'template'" in page.inner_text("#form-error")
            assert page.get_attribute("textarea[name=step0_template]", "aria-invalid") == "true"
            assert page.input_value("input[name=name]") == campaign_name  # what was typed is kept
            page.fill("textarea[name=step0_template]", "Hola {{first_name}}, ¿seguimos buscando en {{location}}?")
            page.fill("input[name=preview_lead_id]", str(leads["Camila"]))
            page.click("#preview-campaign")
            page.wait_for_selector("#preview")
            assert page.inner_text("#preview .preview-text") == "Hola Camila, ¿seguimos buscando en Ñuñoa?"
            assert "seguimiento (es) con Camila" in page.inner_text("#preview")
            page.click("#save-campaign")
            page.wait_for_url("**/admin/campaigns/*?saved=saved")
            page.click("#action-activate")
            page.wait_for_url("**?saved=activate")
            assert page.inner_text("#campaign-status") == "activa"

            # In the inbox: three leads checked, the campaign chosen, applied.
            page.goto(f"{stack.url}/dashboard/brokers/{broker}/inbox")
            for name in ("Camila", "Bruno", "Carla"):
                page.check(f".inbox-row[data-lead='{leads[name]}'] input[type=checkbox]")
            page.select_option("#apply-campaign select[name=campaign_id]", label=campaign_name)
            page.click("#apply-campaign button[type=submit]")
            page.wait_for_selector("#applied")
            assert page.inner_text("#applied").startswith("Aplicada a 3 leads")
            assert page.locator(".log-row[data-status=pending]").count() == 3

            # The campaign job runs; the fake WhatsApp receives the three messages, and nobody else gets one.
            campaign_job(settings, stack.topics, stack.fake, NOON)
            sent = whatsapp_to(stack.fake, CAMILA, BRUNO, CARLA, TOMAS, ANA, ZOE)
            assert sorted(b["to"] for b in sent) == sorted(str(c.channel_user_id) for c in (CAMILA, BRUNO, CARLA))

            page.goto(f"{stack.url}/dashboard/brokers/{broker}/admin/campaigns")
            page.click(f"#campaigns tr:has-text('{campaign_name}') a:text-is('Registro por lead')")
            page.wait_for_url("**/log")
            rows = page.locator(".log-row").evaluate_all("rs => rs.map(r => [r.dataset.lead, r.dataset.status])")
            assert sorted((int(lead), state) for lead, state in rows) == sorted(
                (leads[name], "sent") for name in ("Camila", "Bruno", "Carla"))
            assert page.locator(".log-row td.status").all_inner_texts() == ["enviado"] * 3
            assert "enviado: 3" in page.inner_text("#log-counts")
            page.screenshot(path=str(tmp_path / "log.png"), full_page=True)
        finally:
            browser.close()
