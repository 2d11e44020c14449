"""The workspace in Debian's Chromium, headless: an agent logs in, filters the inbox, opens a lead, sees a new
message arrive live, adds a note and drags its card on the board; another broker's admin sees none of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from leadflow.config import Settings
from leadflow.demo.run import BackgroundServer
from reports_api.app import create_app
from tests.browser import require_chromium
from tests.test_leads_pipeline import rows
from tests.test_workspace import CAMILA, PASSWORD, SCRIPT, World, build_world, deliver, message

CHROMIUM = require_chromium()


@pytest.fixture(scope="module")
def world(settings: Settings) -> World:
    return build_world(settings)


@pytest.fixture(scope="module")
def base_url(settings: Settings, world: World) -> Iterator[str]:
    with BackgroundServer(create_app(settings.database_url, world.tokens)) as server:
        yield server.url


def test_an_agent_works_its_leads_in_the_browser(base_url: str, world: World, settings: Settings,
                                                tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    broker = world.a.broker_id
    camila = world.leads.camila
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, chromium_sandbox=False,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("dialog", lambda dialog: dialog.dismiss())  # an alert() would mean a script got through
            page.goto(f"{base_url}/dashboard/login")
            page.fill("input[name=email]", world.users["agent_a"].email)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"**/dashboard/brokers/{broker}")

            # The inbox: only the agent's leads; filtered by channel, with counts in the options.
            page.goto(f"{base_url}/dashboard/brokers/{broker}/inbox")
            shown = [int(x) for x in page.locator(".inbox-row").evaluate_all("rows => rows.map(r => r.dataset.lead)")]
            assert shown == [world.leads.mallory, camila, world.leads.tomas]
            assert "<b>Mal</b>" in page.inner_text("#inbox")  # shown as text, not as markup
            page.select_option("select[name=channel]", "telegram")
            page.click("#inbox-filters button[type=submit]")
            page.wait_for_url("**channel=telegram**")
            assert page.locator(".inbox-row").count() == 2
            assert "(2)" in page.inner_text("select[name=channel] option[value=telegram]")

            # The lead page, and a message that arrives while it is open.
            page.click(f".inbox-row[data-lead='{camila}'] a")
            page.wait_for_url(f"**/leads/{camila}")
            page.wait_for_function("document.getElementById('live-state').dataset.live === 'on'", timeout=10_000)
            before = page.locator("#conversation li").count()
            deliver(settings, world.topics,
                    message(world.a, "whatsapp", "wa-browser-1", CAMILA, f"¿Tienen algo con terraza? {SCRIPT}", 90))
            page.wait_for_function(f"document.querySelectorAll('#conversation li').length > {before}",
                                   timeout=30_000)
            assert page.locator("#conversation li").last.inner_text().endswith(f"¿Tienen algo con terraza? {SCRIPT}")
            assert page.locator("#conversation script").count() == 0
            # Answering is on the page (its sending is tested in test_workspace_answer.py).
            assert page.locator("#reply-form textarea").count() == 1
            assert page.locator("#handler-form button").count() == 1

            page.fill("#note-form textarea", "Llamé: visita el sábado a las 11")
            page.click("#note-form button[type=submit]")
            page.wait_for_url(f"**/leads/{camila}")
            assert "Llamé: visita el sábado a las 11" in page.inner_text("#notes")
            assert "Agente Uno" in page.inner_text("#notes")
            page.screenshot(path=str(tmp_path / "lead.png"), full_page=True)
            page.goto(f"{base_url}/dashboard/brokers/{broker}/inbox")
            page.screenshot(path=str(tmp_path / "inbox.png"), full_page=True)

            # The board: drag the card to "agendado".
            page.goto(f"{base_url}/dashboard/brokers/{broker}/board")
            # Held by its top edge: the middle of a card is its move form.
            page.drag_and_drop(f".card[data-lead='{camila}']", ".column[data-stage='agendado']",
                               source_position={"x": 4, "y": 4}, target_position={"x": 20, "y": 10})
            page.wait_for_selector(f".column[data-stage='agendado'] .card[data-lead='{camila}']", timeout=10_000)
            page.screenshot(path=str(tmp_path / "board.png"), full_page=True)

            # Another broker's admin: none of it.
            other = browser.new_page()
            other.goto(f"{base_url}/dashboard/login")
            other.fill("input[name=email]", world.users["admin_b"].email)
            other.fill("input[name=password]", PASSWORD)
            other.click("button[type=submit]")
            other.wait_for_url(f"**/dashboard/brokers/{world.b.broker_id}")
            for path in ("inbox", "board", f"leads/{camila}"):
                answer = other.goto(f"{base_url}/dashboard/brokers/{broker}/{path}")
                assert answer is not None and answer.status == 403, path
                assert "Cami" not in other.content()
            answer = other.goto(f"{base_url}/dashboard/brokers/{world.b.broker_id}/leads/{camila}")
            assert answer is not None and answer.status == 404
        finally:
            browser.close()

    moves = rows(settings, """SELECT e.to_stage, e.automatic, u.email FROM leadflow.stage_events e
                              JOIN leadflow.users u ON u.user_id = e.moved_by WHERE e.lead_id = %s""", camila)
    assert moves == [("agendado", False, world.users["agent_a"].email)]
    assert [action for (action,) in rows(settings, "SELECT action FROM leadflow.audit_log WHERE lead_id = %s "
                                                   "ORDER BY audit_id", camila)] == ["note.add", "stage.move"]
