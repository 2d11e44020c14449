"""Broker self-service in Debian's Chromium, headless, against a running app on real PostgreSQL (issue 14): a
SUPERADMIN logs in, is told which field of the new broker is wrong, registers the broker and its first admin and
copies the invitation link; the admin opens it, sets a password, logs in, invites an agent who joins the same way,
deactivates the agent (whose open page loses its session at once) and reads the audit log of it all."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from leadflow.config import Settings
from leadflow.demo.run import BackgroundServer
from leadflow.users import add_user
from reports_api.app import create_app
from reports_api.security import LoginLimiter, TokenSettings
from tests.browser import require_chromium

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = require_chromium()
TOKENS = TokenSettings("b" * 40, timedelta(minutes=30))
PASSWORD = "una-clave-larga-de-prueba"


@pytest.fixture(scope="module")
def base_url(settings: Settings) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
        app = create_app(settings.database_url, TOKENS, limiter=LoginLimiter(attempts=1000))
        with BackgroundServer(app) as server:
            yield server.url


def log_in(browser: Browser, base_url: str, email: str, password: str = PASSWORD) -> Page:
    """A page of its own (its own cookies) logged in as ``email``."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.on("dialog", lambda dialog: dialog.dismiss())
    page.goto(f"{base_url}/dashboard/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    return page


def set_password(browser: Browser, link: str) -> None:
    """Open an invitation link in a browser of its own and choose the password; it lands on the login page."""
    page = browser.new_page()
    page.goto(link)
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password_confirmation]", PASSWORD + "x")
    page.click("#invite-password button[type=submit]")
    assert "Repite la contraseña" in page.inner_text("#form-error")  # a typo is caught before anything is saved
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password_confirmation]", PASSWORD)
    page.click("#invite-password button[type=submit]")
    page.wait_for_url("**/dashboard/login?welcome=1")
    assert "Contraseña guardada" in page.inner_text("#welcome")
    page.goto(link)  # the link works once
    assert "no sirve" in page.inner_text("main")
    page.close()


def state_of(page: Page, email: str) -> str:
    return page.locator(f"#people tr[data-email='{email}'] td.state").inner_text().strip()


def test_a_superadmin_creates_a_broker_whose_admin_joins_invites_and_deactivates_an_agent(
        base_url: str, settings: Settings, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    tag = uuid.uuid4().hex[:8]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
        root = add_user(settings.database_url, f"root-{tag}@browser.test", PASSWORD, role="SUPERADMIN")
    slug, admin_email, agent_email = f"andes-{tag}", f"jefa-{tag}@andes.test", f"agente-{tag}@andes.test"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, chromium_sandbox=False,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            # The SUPERADMIN: from the navigation to the brokers page.
            page = log_in(browser, base_url, root.email)
            page.click("#admin-link a")
            page.wait_for_url("**/dashboard/admin/brokers")
            page.fill("#broker-form input[name=slug]", slug)
            page.fill("#broker-form input[name=name]", "Propiedades <b>Andes</b>")
            page.fill("#broker-form input[name=country]", "CL")
            page.fill("#broker-form input[name=timezone]", "America/Santiaguito")
            page.fill("#broker-form input[name=admin_email]", admin_email)
            page.fill("#broker-form input[name=admin_display_name]", "Jefa Andes")
            page.click("#broker-form button[type=submit]")
            # Refused, naming the field; what was typed is still there, and nothing was created.
            page.wait_for_selector("#form-error")
            assert page.inner_text("#form-error").startswith("Zona horaria: timezone 'America/Santiaguito'")
            assert page.get_attribute("#broker-form input[name=timezone]", "aria-invalid") == "true"
            assert page.input_value("#broker-form input[name=slug]") == slug
            assert page.input_value("#broker-form input[name=admin_email]") == admin_email
            assert slug not in page.inner_text("#brokers")
            page.fill("#broker-form input[name=timezone]", "America/Santiago")
            page.click("#broker-form button[type=submit]")
            page.wait_for_selector("#invitation-url")
            assert "Propiedades <b>Andes</b>" in page.inner_text("#created")  # text, not markup
            assert slug in page.inner_text("#brokers")
            admin_link = page.input_value("#invitation-url")
            assert admin_link.startswith(f"{base_url}/dashboard/invite/")
            page.screenshot(path=str(tmp_path / "brokers.png"), full_page=True)

            # The new admin sets a password with the link and logs in.
            set_password(browser, admin_link)
            admin = log_in(browser, base_url, admin_email)
            broker_id = int(admin.url.rstrip("/").rsplit("/", 1)[1])
            admin.click("#admin-link a:text-is('Personas')")
            admin.wait_for_url(f"**/dashboard/brokers/{broker_id}/admin/users")
            assert state_of(admin, admin_email) == "activa"

            # Invites an agent: first a bad email, then a good one.
            admin.fill("#invite-form input[name=email]", "agente-sin-arroba")
            admin.fill("#invite-form input[name=display_name]", "Agente Uno")
            admin.evaluate("document.querySelector('#invite-form input[name=email]').type = 'text'")
            admin.click("#invite-form button[type=submit]")
            admin.wait_for_selector("#form-error")
            assert admin.inner_text("#form-error").startswith("Correo: email 'agente-sin-arroba'")
            assert admin.input_value("#invite-form input[name=display_name]") == "Agente Uno"
            admin.fill("#invite-form input[name=email]", agent_email)
            admin.select_option("#invite-form select[name=role]", "AGENT")
            admin.click("#invite-form button[type=submit]")
            admin.wait_for_selector("#invitation-url")
            agent_link = admin.input_value("#invitation-url")
            assert state_of(admin, agent_email).startswith("invitación pendiente")

            # The agent joins and works; then the admin deactivates it and its page asks for a login at once.
            set_password(browser, agent_link)
            agent = log_in(browser, base_url, agent_email)
            agent.wait_for_url(f"**/dashboard/brokers/{broker_id}")
            assert agent.locator("#admin-link").count() == 0  # no admin pages for an AGENT
            admin.goto(f"{base_url}/dashboard/brokers/{broker_id}/admin/users")
            assert state_of(admin, agent_email) == "activa"
            admin.click(f"#people tr[data-email='{agent_email}'] .toggle-form button")
            admin.wait_for_url("**/admin/users?saved=1")
            assert state_of(admin, agent_email) == "desactivada"
            agent.goto(f"{base_url}/dashboard/brokers/{broker_id}/inbox")
            assert agent.url == f"{base_url}/dashboard/login"

            # The last admin cannot step down: the page says why.
            admin.select_option(f"#people tr[data-email='{admin_email}'] select[name=role]", "AGENT")
            admin.click(f"#people tr[data-email='{admin_email}'] .person-form button")
            admin.wait_for_selector("#form-error")
            assert "last active ADMIN" in admin.inner_text("#form-error")

            # The audit log, newest first.
            admin.click("#admin-link a:text-is('Auditoría')")
            admin.wait_for_url(f"**/dashboard/brokers/{broker_id}/admin/audit")
            actions = admin.locator("#audit td.action").all_inner_texts()
            assert actions == ["user.update", "user.invitation_accepted", "user.invite", "user.invitation_accepted",
                               "user.invite", "broker.create"]
            assert "Jefa Andes" in admin.inner_text("#audit tr[data-audit] >> nth=0")
            admin.screenshot(path=str(tmp_path / "audit.png"), full_page=True)
        finally:
            browser.close()
