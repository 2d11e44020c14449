"""Visits in Debian's Chromium, headless, against a running app on real PostgreSQL (issue 15): an admin books a
visit from the lead page at a typed date and time outside the free slots (in the past, so it has started whatever
day the test runs), finds it in the calendar's week view, and marks it completed; the lead moves to seguimiento,
signed by the admin."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from leadflow.brokers import Broker, add_broker
from leadflow.db.connection import transaction
from leadflow.demo.run import BackgroundServer
from leadflow.users import add_user
from reports_api.app import create_app
from reports_api.security import LoginLimiter, TokenSettings
from tests.browser import require_chromium
from tests.lead_rows import give_first_messages
from tests.test_admin_browser import log_in

CHROMIUM = require_chromium()
TOKENS = TokenSettings("v" * 40, timedelta(minutes=30))
PASSWORD = "una-clave-larga-de-prueba"
pytestmark = pytest.mark.services


@dataclass
class World:
    url: str
    broker: Broker
    admin_id: int
    admin_email: str
    lead_id: int


@pytest.fixture(scope="module")
def world(database_url: str) -> Iterator[World]:
    tag = uuid.uuid4().hex[:8]
    broker = add_broker(database_url, f"visitas-{tag}", name="Propiedades Costa", country="CL",
                        timezone="America/Santiago")
    with transaction(database_url) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.leads (lead_id, broker_id, display_name)
                       VALUES (nextval('leadflow.lead_id_seq'), %s, 'Camila Rojas') RETURNING lead_id""",
                    (broker.broker_id,))
        (lead_id,) = cur.fetchone()  # type: ignore[misc]
        give_first_messages(cur, broker.broker_id, [lead_id], datetime(2024, 3, 1, 12, tzinfo=UTC))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
        admin = add_user(database_url, f"jefa-{tag}@costa.test", PASSWORD, role="ADMIN", broker_slug=broker.slug,
                         display_name="Jefa Costa")
        app = create_app(database_url, TOKENS, limiter=LoginLimiter(attempts=1000))
        with BackgroundServer(app) as server:
            yield World(server.url, broker, admin.user_id, admin.email, lead_id)


def _rows(database_url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with transaction(database_url) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def test_an_admin_books_from_the_lead_page_finds_it_in_the_week_and_marks_it_completed(
        world: World, database_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    broker_id = world.broker.broker_id
    # A Tuesday long past and far from Chile's daylight-saving changes.
    day, hour = "2024-03-12", "10:00"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, chromium_sandbox=False,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = log_in(browser, world.url, world.admin_email, PASSWORD)
            page.goto(f"{world.url}/dashboard/brokers/{broker_id}/leads/{world.lead_id}")
            form = "#book-form"
            page.fill(f"{form} input[name=date]", day)
            page.fill(f"{form} input[name=time]", hour)
            page.fill(f"{form} input[name=address]", "Av. del Mar 1200, La Serena")
            page.check(f"{form} input[name=status][value=confirmed]")
            page.click(f"{form} button[type=submit]")
            page.wait_for_url("**saved=booked*")
            booked = page.inner_text("#past-visits")
            assert "10:00–11:00" in booked and "confirmada" in booked and "Jefa Costa" in booked
            page.screenshot(path=str(tmp_path / "lead.png"), full_page=True)

            page.click(".ws-nav a:text-is('Calendario')")
            page.wait_for_url(f"**/dashboard/brokers/{broker_id}/calendar")
            page.fill("#calendar-filter input[name=day]", day)
            page.click("#calendar-filter button[type=submit]")
            page.wait_for_url(f"**day={day}*")
            visit = f".day[data-day='{day}'] article.visit"
            assert "Camila Rojas" in page.inner_text(visit) and "10:00–11:00" in page.inner_text(visit)
            assert page.inner_text(".day[data-day='2024-03-11']").strip().endswith("Sin visitas.")  # the Monday
            page.screenshot(path=str(tmp_path / "week.png"), full_page=True)

            page.click(f"{visit} button.to-completed")
            page.wait_for_url("**saved=status*")
            assert page.get_attribute(visit, "data-status") == "completed"
            assert "realizada" in page.inner_text(f"{visit} .status")
            assert page.locator(f"{visit} button.to-completed").count() == 0

            page.click(".ws-nav a:text-is('Disponibilidad')")
            page.wait_for_url(f"**/dashboard/brokers/{broker_id}/admin/appointments")
            assert page.input_value("input[name=mon_start1]") == "09:00"
            page.screenshot(path=str(tmp_path / "rules.png"), full_page=True)
        finally:
            browser.close()
    start = datetime(2024, 3, 12, 10, tzinfo=ZoneInfo("America/Santiago"))
    assert _rows(database_url, "SELECT starts_at, status FROM leadflow.appointments WHERE lead_id = %s",
                 world.lead_id) == [(start, "completed")]
    assert _rows(database_url, """SELECT from_status, to_status, user_id FROM leadflow.appointment_events
                                  WHERE lead_id = %s ORDER BY event_id""", world.lead_id) == [
        (None, "confirmed", world.admin_id), ("confirmed", "completed", world.admin_id)]
    assert _rows(database_url, "SELECT to_stage, moved_by FROM leadflow.stage_events WHERE lead_id = %s "
                               "ORDER BY occurred_at, sequence", world.lead_id) == [
        ("agendado", world.admin_id), ("seguimiento", world.admin_id)]
