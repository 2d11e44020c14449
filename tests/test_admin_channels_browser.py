"""The channels page in Debian's Chromium, headless (issue 14): a broker's admin types its Telegram bot token and has
Leadflow generate the webhook secret, shown once; points Telegram at the webhook with one button (the fake Telegram
on 127.0.0.1 receives setWebhook); an update Telegram then signs with that secret lands, through an ingest API
that was running all along; the admin rotates the secret and the old one is refused, without restarting anything;
a test message goes out with the stored token; a malformed token is refused with its field named; and nowhere on
the page is a secret shown back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest

from ingest_api.app import create_app as create_ingest
from leadflow.brokers import Broker, add_broker
from leadflow.config import Settings
from leadflow.credentials import MasterKeys, StoredCredentials
from leadflow.demo.run import BackgroundServer
from leadflow.demo.webhooks import signed
from leadflow.landing import land
from leadflow.outbound.senders import TelegramSender, WhatsAppSender
from leadflow.users import User, add_user
from reports_api.app import create_app
from reports_api.security import TokenSettings
from tests import payloads
from tests.browser import require_chromium
from tests.fake_channels import FakeChannels
from tests.test_leads_pipeline import rows

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = require_chromium()
PASSWORD = "una-clave-larga-de-prueba"
BOT_TOKEN = "555111:AAF-browser-bot-token-of-the-test"


@dataclass
class Stack:
    broker: Broker
    admin: User
    reports: str
    ingest: str
    fake: FakeChannels


@pytest.fixture(scope="module")
def stack(settings: Settings) -> Iterator[Stack]:
    tag = uuid.uuid4().hex[:8]
    broker = add_broker(settings.database_url, f"chb-{tag}", name="Propiedades Canal", country="CL",
                        timezone="America/Santiago")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
        admin = add_user(settings.database_url, f"admin-{tag}@canal.cl", PASSWORD, role="ADMIN",
                         broker_slug=broker.slug)
    fake = FakeChannels().start()
    quick = settings.model_copy(update={"credentials_refresh_s": 0.2})
    stored = StoredCredentials(settings.database_url, MasterKeys.from_settings(settings), refresh_s=0.2)
    try:
        with BackgroundServer(create_ingest(quick, broker_reload_interval_s=0)) as ingest, \
                pytest.MonkeyPatch.context() as env:
            env.setenv("LEADFLOW_TELEGRAM_API_URL", fake.url)
            env.setenv("LEADFLOW_INGEST_PUBLIC_URL", ingest.url)
            app = create_app(settings.database_url, TokenSettings.ephemeral(), credentials=stored, secure_cookie=False,
                             senders={"telegram": TelegramSender(fake.url, credentials=stored),
                                      "whatsapp": WhatsAppSender(fake.url, credentials=stored)})
            with BackgroundServer(app) as reports:
                yield Stack(broker, admin, reports.url, ingest.url, fake)
    finally:
        fake.stop()


def deliver_as_telegram(stack: Stack, secret: str, update_id: int) -> int:
    """What Telegram does once setWebhook has run: POST the update to the URL it was given, with the secret."""
    path, headers, body = signed("telegram", stack.broker, payloads.telegram_text(update_id),
                                 {"telegram_secret_token": secret})
    return httpx.post(f"{stack.ingest}{path}", content=body, headers=headers, timeout=10).status_code


def eventually_status(stack: Stack, secret: str, update_id: int, wanted: int) -> int:
    deadline = time.monotonic() + 15
    while (status := deliver_as_telegram(stack, secret, update_id)) != wanted and time.monotonic() < deadline:
        time.sleep(0.2)
    return status


def state(page: Page, kind: str) -> str:
    return page.locator(f"td.state[data-kind={kind}]").inner_text().strip()


def test_an_admin_connects_telegram_from_the_page_and_rotates_its_secret(stack: Stack, settings: Settings) -> None:
    from playwright.sync_api import sync_playwright

    channels_url = f"{stack.reports}/dashboard/brokers/{stack.broker.broker_id}/admin/channels"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, chromium_sandbox=False,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("dialog", lambda dialog: dialog.dismiss())
            page.goto(f"{stack.reports}/dashboard/login")
            page.fill("input[name=email]", stack.admin.email)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"**/dashboard/brokers/{stack.broker.broker_id}")
            page.goto(f"{stack.reports}/dashboard/brokers/{stack.broker.broker_id}/inbox")
            page.click("nav.ws-nav >> text=Canales")
            page.wait_for_url(channels_url)
            assert state(page, "telegram_bot_token") == "falta"
            webhook_url = page.locator("#channel-telegram code.webhook-url").inner_text()
            assert webhook_url == f"{stack.ingest}/webhooks/{stack.broker.slug}/telegram"

            # A malformed token: refused, its field named, nothing stored.
            telegram = page.locator("#channel-telegram")
            telegram.locator("input[name=telegram_bot_token]").fill("not-a-bot-token")
            telegram.locator("button[type=submit]", has_text="Guardar").click()
            assert "telegram_bot_token: expected the token @BotFather gives" in page.locator("#error").inner_text()
            assert state(page, "telegram_bot_token") == "falta"

            # The token typed, the secret generated: shown this once.
            telegram = page.locator("#channel-telegram")
            telegram.locator("input[name=telegram_bot_token]").fill(BOT_TOKEN)
            telegram.locator("input[name=generate_telegram_secret_token]").check()
            telegram.locator("button[type=submit]", has_text="Guardar").click()
            first = page.locator("#generated code[data-kind=telegram_secret_token]").inner_text()
            assert len(first) >= 40
            assert state(page, "telegram_bot_token").startswith("guardada (…test), v1")
            assert BOT_TOKEN not in page.content()
            page.goto(channels_url)  # the generated secret is not shown again
            assert first not in page.content() and BOT_TOKEN not in page.content()

            # One button points Telegram at the webhook with the secret.
            page.click("#set-telegram-webhook")
            assert "Webhook de Telegram configurado" in page.locator("#done").inner_text()
            path, body = [(p, b) for _, p, b in stack.fake.requests if p.endswith("/setWebhook")][-1]
            assert path == f"/bot{BOT_TOKEN}/setWebhook"
            assert (body["url"], body["secret_token"]) == (webhook_url, first)

            # Telegram's next update, signed with that secret, is accepted by the ingest API that never restarted.
            assert eventually_status(stack, body["secret_token"], 71, 200) == 200

            # A test message with the stored token.
            page.fill("input[name=to][aria-label='destino de prueba telegram']", "424242")
            page.locator("#channel-telegram button", has_text="Enviar prueba").click()
            assert "Mensaje de prueba enviado" in page.locator("#done").inner_text()
            sent = [(p, b) for _, p, b in stack.fake.requests if p.endswith("/sendMessage")][-1]
            assert sent[0] == f"/bot{BOT_TOKEN}/sendMessage" and sent[1]["chat_id"] == "424242"

            # Rotation: a new generated secret; the old one is refused within seconds, the new one accepted.
            page.locator("#channel-telegram input[name=generate_telegram_secret_token]").check()
            page.locator("#channel-telegram button[type=submit]", has_text="Guardar").click()
            second = page.locator("#generated code[data-kind=telegram_secret_token]").inner_text()
            assert second != first
            assert state(page, "telegram_secret_token").startswith(f"guardada (…{second[-4:]}), v2")
            assert eventually_status(stack, first, 72, 403) == 403
            assert deliver_as_telegram(stack, second, 73) == 200
        finally:
            browser.close()
    land(settings.database_url, settings.kafka_bootstrap_servers, settings.topics)
    landed = {r[0] for r in rows(settings, "SELECT provider_message_id FROM leadflow.raw_messages WHERE broker_id = %s",
                                 (stack.broker.broker_id,))}
    # 72 may have landed too: the old secret still held for the seconds before the ingest API refreshed.
    assert {"71", "73"} <= landed <= {"71", "72", "73"}
