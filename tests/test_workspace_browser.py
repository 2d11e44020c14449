"""The workspace in Debian's Chromium, headless: an agent logs in, filters the inbox, opens a lead, sees a new
message arrive live, answers it from the page (the reply reaches a fake WhatsApp on 127.0.0.1, takes the lead over
and lands in the conversation), hands it back to the bot, adds a note and drags its card on the board; the broker's
admin uploads a Latin-1 CSV with good and bad rows, sees each row's errors in the preview, starts the import and,
once the landing and leads jobs have run, reads the report's new, merged and rejected rows; another broker's admin
sees none of it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from leadflow.agent.person import TAKE_OVER_REASON
from leadflow.brokers import default_secret_env
from leadflow.config import Settings
from leadflow.demo.run import BackgroundServer
from leadflow.outbound.senders import TelegramSender, WhatsAppSender
from reports_api.app import create_app
from reports_api.workspace.publish import MessagePublisher
from tests.browser import require_chromium
from tests.fake_channels import FakeChannels
from tests.test_leads_pipeline import T0, rows, run
from tests.test_workspace import CAMILA, PASSWORD, SCRIPT, World, build_world, deliver, message

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = require_chromium()
REPLY = "Hola Camila, te llamo en 5 minutos ¿te acomoda?"
# Spanish Excel: Latin-1 (cp1252) and semicolons. Row 3 is Pedro's phone (the world's VAPI caller): merged.
FILE = ("Nombre;Teléfono;Correo;Etiquetas\r\n"
        "Rosa Díaz;+56 9 3333 3333;;VIP\r\n"         # 2: a new lead
        "Pedro Pérez;9 2222 2222;;\r\n"              # 3: merged into Pedro
        "Mal Número;12;;\r\n"                        # 4: invalid phone
        "Sin Contacto;;;\r\n"                        # 5: no phone, no email
        "Ñandú Soto;;nandu@example.cl;\r\n")         # 6: a new lead by email


@pytest.fixture(scope="module")
def world(settings: Settings) -> World:
    return build_world(settings)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeChannels]:
    channels = FakeChannels().start()
    try:
        yield channels
    finally:
        channels.stop()


@pytest.fixture(scope="module")
def base_url(settings: Settings, world: World, fake: FakeChannels) -> Iterator[str]:
    # Replies go out through the real senders to the fake providers; replies and import rows go onto the world's
    # topic, where the landing and leads jobs of `run` find them.
    app = create_app(settings.database_url, world.tokens,
                     senders={"telegram": TelegramSender(fake.url), "whatsapp": WhatsAppSender(fake.url)},
                     publisher=MessagePublisher(settings.kafka_bootstrap_servers, world.topics.messages))
    with pytest.MonkeyPatch.context() as env:
        env.setenv(default_secret_env(world.a.slug, "telegram_bot_token"), "123:tg-token-not-a-secret")
        env.setenv(default_secret_env(world.a.slug, "whatsapp_access_token"), "wa-token-not-a-secret")
        env.setenv(default_secret_env(world.a.slug, "whatsapp_phone_number_id"), "1098765")
        with BackgroundServer(app) as server:
            yield server.url


def log_in(browser: Browser, base_url: str, world: World, who: str, broker_id: int) -> Page:
    """A page of its own (its own cookies) logged in as ``who``."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.on("dialog", lambda dialog: dialog.dismiss())  # an alert() would mean a script got through
    page.goto(f"{base_url}/dashboard/login")
    page.fill("input[name=email]", world.users[who].email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/dashboard/brokers/{broker_id}")
    return page


def table(page: Page, selector: str) -> list[list[str]]:
    """The table's cells as shown, without its header row."""
    found: list[list[str]] = page.eval_on_selector(
        selector, "t => [...t.rows].slice(1).map(r => [...r.cells].map(c => c.innerText.trim()))")
    return found


def counts(page: Page) -> dict[str, str]:
    """The import's counts by their heading."""
    found: dict[str, str] = page.eval_on_selector(
        "#import-counts", "t => Object.fromEntries([...t.rows[0].cells].map((h, i) => "
                          "[h.innerText.trim(), t.rows[1].cells[i].innerText.trim()]))")
    return dict(found)


def handled_by(page: Page) -> str:
    return page.locator("p.muted", has_text="atiende").inner_text()


def test_an_agent_works_its_leads_in_the_browser(base_url: str, world: World, settings: Settings,
                                                fake: FakeChannels, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    broker = world.a.broker_id
    camila = world.leads.camila
    lead_url = f"{base_url}/dashboard/brokers/{broker}/leads/{camila}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, chromium_sandbox=False,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = log_in(browser, base_url, world, "agent_a", broker)

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

            # The lead page, and a message that arrives while it is open. Sent now, not at the world's T0: inside
            # WhatsApp's 24 hours, so the agent may answer it in free text.
            page.click(f".inbox-row[data-lead='{camila}'] a")
            page.wait_for_url(f"**/leads/{camila}")
            page.wait_for_function("document.getElementById('live-state').dataset.live === 'on'", timeout=10_000)
            before = page.locator("#conversation li").count()
            now = int((datetime.now(UTC) - T0) / timedelta(minutes=1))
            deliver(settings, world.topics,
                    message(world.a, "whatsapp", "wa-browser-1", CAMILA, f"¿Tienen algo con terraza? {SCRIPT}", now))
            page.wait_for_function(f"document.querySelectorAll('#conversation li').length > {before}",
                                   timeout=30_000)
            assert page.locator("#conversation li").last.inner_text().endswith(f"¿Tienen algo con terraza? {SCRIPT}")
            assert page.locator("#conversation script").count() == 0

            # Answering: the reply goes to the lead's WhatsApp number and the agent takes the lead from the bot.
            assert "atiende el bot" in handled_by(page)
            page.fill("#reply-form textarea[name=text]", REPLY)
            with page.expect_navigation():
                page.click("#reply-form button[type=submit]")
            assert page.url == lead_url  # no ?error=
            [sent] = [body for body in fake.sent("whatsapp") if body.get("to") == "56911111111"]
            assert sent["type"] == "text" and sent["text"]["body"] == REPLY
            assert "atiende una persona" in handled_by(page) and "Agente Uno" in handled_by(page)
            assert page.inner_text("#handler-form button") == "Devolver al bot"

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

            # The admin imports a CSV: the preview says what each row will be, and why a row is refused.
            admin = log_in(browser, base_url, world, "admin_a", broker)
            admin.goto(f"{base_url}/dashboard/brokers/{broker}/inbox")
            admin.click("#import-csv")
            admin.wait_for_url(f"**/dashboard/brokers/{broker}/imports")
            admin.set_input_files("input[name=file]", files={"name": "clientes.csv", "mimeType": "text/csv",
                                                              "buffer": FILE.encode("cp1252")})
            admin.click("form[enctype='multipart/form-data'] button[type=submit]")
            admin.wait_for_url(f"**/dashboard/brokers/{broker}/imports/*")
            import_id = int(admin.url.rsplit("/", 1)[1])
            assert "vista previa" in admin.inner_text("#import-status")
            assert "Leído como cp1252, separado por «;»" in admin.inner_text("main")
            assert counts(admin) == {"Filas": "5", "Válidas": "3", "Rechazadas": "2", "Enviadas": "0",
                                     "Leads nuevos": "0",
                                     "Unidas a un lead existente": "0", "Por registrar": "0"}
            # Each refused row with its reason and the phone as the file gave it (under its header, "Teléfono").
            assert [r[:4] for r in table(admin, "#rejected")] == [
                ["4", "invalid phone '12'", "Mal Número", "12"],
                ["5", "no phone and no email: a lead needs one to be reached and matched", "Sin Contacto", ""]]
            preview = {r[0]: r for r in table(admin, "#import-rows")}
            assert preview["2"][1] == "por importar" and preview["2"][2:4] == ["Rosa Díaz", "+56933333333"]
            assert preview["3"][1] == f"por importar · se unirá al lead {world.leads.pedro}"
            assert preview["4"][1].startswith("rechazada") and "invalid phone '12'" in preview["4"][1]
            admin.click("#start-import")
            # The page reloads itself every 2 s while the import runs; its rows wait in Kafka for the pipeline.
            admin.wait_for_selector("#import-status strong:text-is('esperando que se registren')", timeout=30_000)

            # The agent's lead page is open while the pipeline runs: the reply lands in it, as the agent's.
            page.goto(lead_url)
            page.wait_for_function("document.getElementById('live-state').dataset.live === 'on'", timeout=10_000)
            assert page.locator("#conversation li.author-person").count() == 0
            run(settings, world.topics)  # the landing and the leads job, once for the reply and the import's rows
            page.wait_for_selector("#conversation li.author-person", timeout=30_000)
            mine = page.locator("#conversation li.author-person").last.inner_text()
            assert mine.startswith("Persona") and mine.endswith(REPLY)

            # Handed back to the bot.
            page.fill("#handler-form input[name=reason]", "que siga el bot")
            with page.expect_navigation():
                page.click("#handler-form button[type=submit]")
            assert page.url == lead_url
            assert "atiende el bot" in handled_by(page) and "que siga el bot" in handled_by(page)
            assert page.inner_text("#handler-form button") == "Tomar el lead (sin responder)"

            # The report: what became of each row.
            admin.wait_for_selector("#import-status strong:text-is('terminada')", timeout=30_000)
            assert counts(admin) == {"Filas": "5", "Válidas": "3", "Rechazadas": "2", "Enviadas": "3",
                                     "Leads nuevos": "2",
                                     "Unidas a un lead existente": "1", "Por registrar": "0"}
            report = {r[0]: r[1] for r in table(admin, "#import-rows")}
            rosa = rows(settings, """SELECT lead_id FROM leadflow.leads WHERE broker_id = %s
                                     AND phone_e164 = '+56933333333'""", broker)[0][0]
            assert report["2"] == f"lead nuevo · lead {rosa}"
            assert report["3"] == f"unida a lead existente · lead {world.leads.pedro}"
            assert report["6"].startswith("lead nuevo")
            assert [r[:2] for r in table(admin, "#rejected")] == [
                ["4", "invalid phone '12'"],
                ["5", "no phone and no email: a lead needs one to be reached and matched"]]
            admin.screenshot(path=str(tmp_path / "import.png"), full_page=True)

            # Another broker's admin: none of it.
            other = log_in(browser, base_url, world, "admin_b", world.b.broker_id)
            for path in ("inbox", "board", f"leads/{camila}", "imports", f"imports/{import_id}",
                         f"imports/{import_id}/rows.csv"):
                answer = other.goto(f"{base_url}/dashboard/brokers/{broker}/{path}")
                assert answer is not None and answer.status == 403, path
                assert "Cami" not in other.content() and "Rosa" not in other.content()
            for path in (f"leads/{camila}", f"imports/{import_id}"):
                answer = other.goto(f"{base_url}/dashboard/brokers/{world.b.broker_id}/{path}")
                assert answer is not None and answer.status == 404, path
                assert "Rosa" not in other.content()
        finally:
            browser.close()

    agent = world.users["agent_a"]
    moves = rows(settings, """SELECT e.to_stage, e.automatic, u.email FROM leadflow.stage_events e
                              JOIN leadflow.users u ON u.user_id = e.moved_by WHERE e.lead_id = %s""", camila)
    assert moves == [("agendado", False, agent.email)]
    assert rows(settings, "SELECT handler, user_id, reason FROM leadflow.lead_handlers WHERE lead_id = %s "
                          "ORDER BY switch_id", camila) == [("person", agent.user_id, TAKE_OVER_REASON),
                                                            ("bot", agent.user_id, "que siga el bot")]
    assert [action for (action,) in rows(settings, "SELECT action FROM leadflow.audit_log WHERE lead_id = %s "
                                                   "ORDER BY audit_id", camila)] == [
        "lead.handler", "lead.reply", "note.add", "stage.move", "lead.handler"]
