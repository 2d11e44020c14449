"""CSV import and a lead typed in by hand (issue 13), on real PostgreSQL and Kafka with the real landing and leads
jobs: rows enter as channel messages, a known phone or email merges into its lead, the qualification columns reach
lead_qualifications, tags and notes land on the leads signed by the importer, the report says what became of each
row; bad files get clear answers; another broker cannot see or touch an import.

One world for the module (the landing and leads jobs run twice in all): the ``imported`` fixture uploads, starts
and lands everything the tests then look at.
"""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from leadflow.agent.stream import CHAT_CHANNELS
from leadflow.brokers import Broker, add_broker
from leadflow.config import Settings, Topics, with_database
from leadflow.db.connection import transaction
from leadflow.db.migrate import downgrade, upgrade
from leadflow.events import ChannelMessage, Contact
from leadflow.kafka import ensure_topics, make_producer, produce_all
from leadflow.leads.imports import Row
from leadflow.services import postgres as embedded_postgres
from leadflow.users import User, add_user
from reports_api.app import create_app
from reports_api.dashboard import COOKIE
from reports_api.security import TokenSettings, issue_token
from reports_api.workspace import csrf
from reports_api.workspace.imports import message_for
from reports_api.workspace.publish import MessagePublisher
from tests.test_leads_pipeline import rows, run

PASSWORD = "una-clave-larga-de-prueba"
SCRIPT = "<script>alert('x')</script>"
CAMILA = Contact(channel_user_id="56987654321", display_name="Camila Rojas", phone_e164="+56987654321")
ANA = Contact(channel_user_id="ana@example.cl", display_name="Ana Soto", email="ana@example.cl")

# Spanish Excel: Latin-1 (cp1252), semicolons, Spanish headers with accents.
FILE = ("Nombre;Teléfono;Correo;Fuente;Notas;Etiquetas;Operación;Tipo de propiedad;Dormitorios;Presupuesto;Comuna\r\n"
        "Rosa Díaz;+56 9 3333 3333;;Portal Inmobiliario;Llamar en la tarde;VIP, portal;compra;departamento;3;"
        "4.500 UF;Ñuñoa\r\n"                                                       # 2: a new lead
        "Camila R.;9 8765 4321;;Referido;Quiere visitar el sábado;recontacto;;;;;\r\n"  # 3: Camila's phone: merged
        "Mal Número;12;;;;;;;;;\r\n"                                                # 4: invalid phone
        "Sin Contacto;;;;;;;;;;\r\n"                                                # 5: no phone, no email
        "Rosa Repetida;+56933333333;;;;;;;;;\r\n"                                   # 6: duplicate of row 2
        f"\"=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\";;form@example.cl;;{SCRIPT};;;;;;\r\n"  # 7: new
        "Ana;;ANA@example.cl;;Prefiere correo;;;;;;\r\n"                            # 8: Ana's email: merged
        "=1+2;;;;;;;;;;\r\n")                                                       # 9: no contact, a formula


@dataclass(frozen=True)
class World:
    a: Broker
    b: Broker
    users: dict[str, User]
    camila: int
    ana: int
    topics: Topics
    tokens: TokenSettings


@dataclass(frozen=True)
class Imported:
    csv_id: int
    manual_id: int
    resumed_id: int
    manual_redirect: str  # where the new-lead form sent the browser


def lead_of(settings: Settings, broker: Broker, name: str) -> int:
    [(lead_id,)] = rows(settings, """SELECT lead_id FROM leadflow.leads WHERE broker_id = %s AND display_name = %s
                                     AND merged_into IS NULL""", broker.broker_id, name)
    return int(lead_id)


@pytest.fixture(scope="module")
def world(settings: Settings) -> World:
    tag = uuid.uuid4().hex[:8]
    topics = Topics(f"t{tag}")
    ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_partitions)
    url = settings.database_url
    a = add_broker(url, f"imp-a-{tag}", name="Andes", country="CL", timezone="America/Santiago")
    b = add_broker(url, f"imp-b-{tag}", name="Bajío", country="MX", timezone="America/Mexico_City")
    sent = datetime.now(UTC) - timedelta(days=1)
    produce_all(make_producer(settings.kafka_bootstrap_servers), topics.messages, [
        (m.kafka_key(), m.model_dump_json().encode()) for m in (
            ChannelMessage.build(broker_id=a.broker_id, broker_slug=a.slug, channel="whatsapp",
                                 provider_message_id="wa-1", contact=CAMILA, text="Hola, busco casa", sent_at=sent),
            ChannelMessage.build(broker_id=a.broker_id, broker_slug=a.slug, channel="form",
                                 provider_message_id="form-1", contact=ANA, text="Busco depto", sent_at=sent))])
    run(settings, topics)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
        users = {
            "admin_a": add_user(url, f"admin-{tag}@andes.test", PASSWORD, role="ADMIN", broker_slug=a.slug),
            "agent_a": add_user(url, f"agente-{tag}@andes.test", PASSWORD, role="AGENT", broker_slug=a.slug),
            "admin_b": add_user(url, f"admin-{tag}@bajio.test", PASSWORD, role="ADMIN", broker_slug=b.slug),
        }
    return World(a, b, users, lead_of(settings, a, "Camila Rojas"), lead_of(settings, a, "Ana Soto"), topics,
                 TokenSettings.ephemeral())


def make_client(settings: Settings, world: World) -> TestClient:
    return TestClient(create_app(settings.database_url, world.tokens,
                                 publisher=MessagePublisher(settings.kafka_bootstrap_servers, world.topics.messages)))


@pytest.fixture(scope="module")
def client(settings: Settings, world: World) -> Iterator[TestClient]:
    with make_client(settings, world) as test_client:
        yield test_client


def bearer(world: World, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(world.tokens, world.users[who])}"}


def page_session(client: TestClient, world: World, who: str) -> str:
    token = issue_token(world.tokens, world.users[who])
    client.cookies.set(COOKIE, token)
    return csrf.token_for(world.tokens.secret, token)


def status_of(client: TestClient, world: World, import_id: int) -> dict[str, Any]:
    answer = client.get(f"/brokers/{world.a.broker_id}/imports/{import_id}", headers=bearer(world, "admin_a"))
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def wait_for(client: TestClient, world: World, import_id: int, wanted: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = status_of(client, world, import_id)
        if found["status"] == wanted:
            return found
        assert found["status"] not in ("failed",) and time.monotonic() < deadline, found
        time.sleep(0.2)


@pytest.fixture(scope="module")
def imported(settings: Settings, world: World, client: TestClient) -> Imported:
    a = world.a.broker_id
    # The file, through the JSON API.
    uploaded = client.post(f"/brokers/{a}/imports", params={"filename": "leads.csv"}, content=FILE.encode("cp1252"),
                           headers={**bearer(world, "admin_a"), "Content-Type": "text/csv"})
    assert uploaded.status_code == 201, uploaded.text
    csv_id = uploaded.json()["import_id"]
    started = client.post(f"/brokers/{a}/imports/{csv_id}/start", headers=bearer(world, "admin_a"))
    assert started.status_code == 202, started.text

    # A lead typed in on the page.
    token = page_session(client, world, "admin_a")
    try:
        created = client.post(f"/dashboard/brokers/{a}/new-lead", follow_redirects=False, data={
            "csrf": token, "name": "Matías Hand", "phone": "+56 9 4444 4444", "email": "", "source": "Feria",
            "notes": "Conocido en la feria", "tags": "feria", "operation": "arrendar", "property_type": "casa",
            "bedrooms": "", "budget": "", "location": "Providencia", "timeline": "", "financing": ""})
        assert created.status_code == 303, created.text
        manual_id = int(created.headers["location"].rsplit("/", 1)[1])
        creating = client.get(created.headers["location"])
        assert creating.status_code == 200 and 'id="creating"' in creating.text
    finally:
        client.cookies.clear()

    # An import whose process died mid-way: row 2 reached Kafka, the stored position did not move, the lease is
    # stale. A new app resumes it at start-up and produces row 2 again.
    resumed = client.post(f"/brokers/{a}/imports", params={"filename": "resume.csv"},
                          content=b"nombre,telefono\nUno,+56955555555\nDos,+56966666666\n",
                          headers=bearer(world, "admin_a"))
    resumed_id = resumed.json()["import_id"]
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("""UPDATE leadflow.lead_imports SET status = 'producing', started_at = now(), worker = 'dead',
                       heartbeat_at = now() - interval '1 hour' WHERE import_id = %s RETURNING started_at""",
                    (resumed_id,))
        started_row = cur.fetchone()
        assert started_row is not None
    early = message_for({"broker_id": a, "slug": world.a.slug}, resumed_id, "csv",
                        Row(2, name="Uno", phone_e164="+56955555555"), started_row[0])
    produce_all(make_producer(settings.kafka_bootstrap_servers), world.topics.messages,
                [(early.kafka_key(), early.model_dump_json().encode())])
    with make_client(settings, world) as restarted:
        wait_for(restarted, world, resumed_id, "waiting")

    for import_id in (csv_id, manual_id):
        wait_for(client, world, import_id, "waiting")
    run(settings, world.topics)  # the landing and the leads job, as `make up`'s sensor would start them
    for import_id in (csv_id, manual_id, resumed_id):
        wait_for(client, world, import_id, "done")
    return Imported(csv_id, manual_id, resumed_id, created.headers["location"])


def outcomes(settings: Settings, import_id: int) -> dict[int, tuple[str, str | None, int | None]]:
    return {int(n): (s, r, lid) for n, s, r, lid in rows(
        settings, "SELECT row_number, status, reason, lead_id FROM leadflow.lead_import_rows WHERE import_id = %s",
        import_id)}


def test_rows_become_leads_or_merge_into_the_lead_with_that_phone_or_email_and_the_rest_say_why(
        settings: Settings, world: World, client: TestClient, imported: Imported) -> None:
    done = status_of(client, world, imported.csv_id)
    assert (done["encoding"], done["delimiter"]) == ("cp1252", ";")
    assert (done["total_rows"], done["valid_rows"], done["rejected_rows"], done["new_leads"],
            done["merged_leads"]) == (8, 4, 4, 2, 2)
    got = outcomes(settings, imported.csv_id)
    rosa = lead_of(settings, world.a, "Rosa Díaz")
    assert got[2] == ("new", None, rosa)
    assert got[3] == ("merged", f"merged into existing lead {world.camila}", world.camila)
    assert got[8] == ("merged", f"merged into existing lead {world.ana}", world.ana)
    assert got[7][0] == "new"
    assert got[4][0] == got[5][0] == got[6][0] == got[9][0] == "rejected"
    assert got[4][1] == "invalid phone '12'" and "no phone and no email" in (got[5][1] or "")
    assert got[6][1] == "duplicate of row 2 (+56933333333)"
    # Merged, not duplicated: one live lead per phone and per email.
    assert rows(settings, """SELECT count(*) FROM leadflow.leads WHERE broker_id = %s AND merged_into IS NULL
                             AND (phone_e164 = '+56987654321' OR email = 'ana@example.cl')""",
                world.a.broker_id) == [(2,)]
    # The import's own channel; its source column is what the funnel's source reads.
    assert rows(settings, """SELECT channel, message_type, payload->>'source' FROM leadflow.raw_messages
                             WHERE broker_id = %s AND provider_message_id = %s""",
                world.a.broker_id, f"{imported.csv_id}:2") == [("import", "import", "Portal Inmobiliario")]
    # The agent answers chats only: nothing imported or typed in is a conversation to reply to.
    assert not {"import", "manual"} & CHAT_CHANNELS


def test_the_qualification_columns_reach_the_leads_qualification(settings: Settings, world: World,
                                                                 imported: Imported) -> None:
    rosa = lead_of(settings, world.a, "Rosa Díaz")
    assert rows(settings, """SELECT operation, property_type, bedrooms_min, budget_max, budget_currency, locations
                             FROM leadflow.lead_qualifications WHERE lead_id = %s""", rosa) == [
        ("buy", "apartment", 3, 4500, "UF", ["ñuñoa"])]


def test_tags_and_notes_land_on_the_leads_signed_and_audited_as_the_importer(
        settings: Settings, world: World, imported: Imported) -> None:
    admin = world.users["admin_a"].user_id
    rosa = lead_of(settings, world.a, "Rosa Díaz")
    assert rows(settings, "SELECT tag, added_by FROM leadflow.lead_tags WHERE lead_id = %s ORDER BY tag", rosa) == [
        ("portal", admin), ("vip", admin)]
    assert rows(settings, "SELECT body, author_id FROM leadflow.lead_notes WHERE lead_id = %s", world.camila) == [
        ("Quiere visitar el sábado", admin)]
    actions = rows(settings, """SELECT action, user_id, count(*) FROM leadflow.audit_log WHERE broker_id = %s
                                GROUP BY action, user_id ORDER BY action""", world.a.broker_id)
    assert {(action, user) for action, user, _ in actions} >= {
        ("import.upload", admin), ("import.lead", admin), ("import.start", admin), ("import.done", admin),
        ("note.add", admin), ("tag.add", admin)}
    assert all(user == admin for _, user, _ in actions)


def test_a_lead_typed_in_enters_like_a_message_and_its_page_leads_to_it(
        settings: Settings, world: World, client: TestClient, imported: Imported) -> None:
    matias = lead_of(settings, world.a, "Matías Hand")
    assert rows(settings, "SELECT tag FROM leadflow.lead_tags WHERE lead_id = %s", matias) == [("feria",)]
    assert rows(settings, "SELECT channel FROM leadflow.raw_messages WHERE broker_id = %s AND provider_message_id = %s",
                world.a.broker_id, f"{imported.manual_id}:1") == [("manual",)]
    assert rows(settings, "SELECT operation, locations FROM leadflow.lead_qualifications WHERE lead_id = %s",
                matias) == [("rent", ["providencia"])]
    page_session(client, world, "admin_a")
    try:
        landed = client.get(imported.manual_redirect, follow_redirects=False)
        assert landed.status_code == 303
        assert landed.headers["location"] == f"/dashboard/brokers/{world.a.broker_id}/leads/{matias}"
        invalid = client.post(f"/brokers/{world.a.broker_id}/leads", headers=bearer(world, "admin_a"),
                              json={"name": "Nadie", "phone": "12"})
        assert invalid.status_code == 422 and "invalid phone" in invalid.text
    finally:
        client.cookies.clear()


def test_an_import_resumed_after_a_restart_lands_each_row_once(settings: Settings, world: World,
                                                               imported: Imported) -> None:
    assert rows(settings, """SELECT provider_message_id, count(*) FROM leadflow.raw_messages WHERE broker_id = %s
                             AND channel = 'import' AND provider_message_id LIKE %s GROUP BY 1 ORDER BY 1""",
                world.a.broker_id, f"{imported.resumed_id}:%") == [
        (f"{imported.resumed_id}:2", 1), (f"{imported.resumed_id}:3", 1)]
    assert {s for s, _, _ in outcomes(settings, imported.resumed_id).values()} == {"new"}


def test_the_report_escapes_html_and_its_csv_neutralises_formulas(
        settings: Settings, world: World, client: TestClient, imported: Imported) -> None:
    base = f"/dashboard/brokers/{world.a.broker_id}/imports/{imported.csv_id}"
    page_session(client, world, "admin_a")
    try:
        report = client.get(base)
        assert report.status_code == 200
        assert SCRIPT not in report.text and "&lt;script&gt;" in report.text
        assert "duplicate of row 2" in report.text and "=HYPERLINK(&#34;http" in report.text
        rejected = client.get(f"{base}/rows.csv", params={"status": "rejected"})
        assert rejected.status_code == 200 and rejected.headers["content-type"].startswith("text/csv")
        lines = list(csv.reader(io.StringIO(rejected.text.lstrip("\ufeff"))))
        assert [line[0] for line in lines[1:]] == ["4", "5", "6", "9"]
        assert lines[-1][4] == "'=1+2"
        full = list(csv.reader(io.StringIO(client.get(f"{base}/rows.csv").text.lstrip("\ufeff"))))
        [formula] = [line for line in full if line[0] == "7"]
        assert formula[4] == "'=HYPERLINK(\"http://evil.example\",\"x\")" and formula[1] == "new"
        # Stored as given: the lead's name is the text, never evaluated.
        formula_lead = outcomes(settings, imported.csv_id)[7][2]
        assert rows(settings, "SELECT display_name FROM leadflow.leads WHERE lead_id = %s", formula_lead) == [
            ('=HYPERLINK("http://evil.example","x")',)]
        lead_page = client.get(f"/dashboard/brokers/{world.a.broker_id}/leads/{formula_lead}")
        assert SCRIPT not in lead_page.text and "&lt;script&gt;" in lead_page.text
    finally:
        client.cookies.clear()


def test_the_upload_page_reads_a_utf8_bom_file_and_every_form_needs_its_csrf_token(
        settings: Settings, world: World, client: TestClient) -> None:
    a = world.a.broker_id
    token = page_session(client, world, "admin_a")
    data = "\ufeffname,phone,email,tags\nÑandú Pérez,+56977777777,,x\n".encode()
    try:
        assert 'id="import-csv"' in client.get(f"/dashboard/brokers/{a}/inbox").text
        form = client.get(f"/dashboard/brokers/{a}/imports")
        assert form.status_code == 200 and "nombre, name" in form.text
        before = rows(settings, "SELECT count(*) FROM leadflow.lead_imports WHERE broker_id = %s", a)
        forged = client.post(f"/dashboard/brokers/{a}/imports", data={"csrf": "0" * 64},
                             files={"file": ("x.csv", data, "text/csv")}, follow_redirects=False)
        assert forged.status_code == 403
        assert rows(settings, "SELECT count(*) FROM leadflow.lead_imports WHERE broker_id = %s", a) == before
        sent = client.post(f"/dashboard/brokers/{a}/imports", data={"csrf": token},
                           files={"file": ("clientes.csv", data, "text/csv")}, follow_redirects=False)
        assert sent.status_code == 303, sent.text
        preview = client.get(sent.headers["location"])
        assert "Ñandú Pérez" in preview.text and "utf-8-sig" in preview.text and 'id="start-import"' in preview.text
        assert client.post(f"{sent.headers['location']}/start", follow_redirects=False).status_code == 403
        assert client.post(f"{sent.headers['location']}/discard", data={"csrf": token},
                           follow_redirects=False).status_code == 303
        missing = client.post(f"/dashboard/brokers/{a}/imports", data={"csrf": token},
                              files={"file": ("x.csv", b"fullname;notas\nAna;hola\n", "text/csv")})
        assert missing.status_code == 422 and "phone or email (accepted: telefono, phone, celular" in missing.text
    finally:
        client.cookies.clear()


def test_a_file_over_the_limit_is_refused_with_413_before_anything_is_written(
        settings: Settings, world: World, client: TestClient) -> None:
    a = world.a.broker_id
    before = rows(settings, "SELECT count(*) FROM leadflow.lead_imports")
    big = b"nombre,telefono\n" + b"x" * (50 * 1024 * 1024)
    refused = client.post(f"/brokers/{a}/imports", content=big, headers=bearer(world, "admin_a"))
    assert refused.status_code == 413 and "larger than 32 MB (LEADFLOW_IMPORT_MAX_MB)" in refused.json()["detail"]
    token = page_session(client, world, "admin_a")
    try:
        on_page = client.post(f"/dashboard/brokers/{a}/imports", data={"csrf": token},
                              files={"file": ("big.csv", big, "text/csv")})
        assert on_page.status_code == 413 and "supera el máximo de 32 MB" in on_page.text
    finally:
        client.cookies.clear()
    missing = client.post(f"/brokers/{a}/imports", content=b"fullname;notas\nAna;hola\n",
                          headers=bearer(world, "admin_a"))
    assert missing.status_code == 422 and "missing column(s): name (accepted: nombre, name" in missing.text
    assert rows(settings, "SELECT count(*) FROM leadflow.lead_imports") == before


def test_another_broker_or_an_agent_cannot_see_or_touch_an_import(
        settings: Settings, world: World, client: TestClient, imported: Imported) -> None:
    a, b, csv_id = world.a.broker_id, world.b.broker_id, imported.csv_id
    written = "SELECT (SELECT count(*) FROM leadflow.audit_log), (SELECT count(*) FROM leadflow.lead_imports)"
    before = rows(settings, written)
    other = bearer(world, "admin_b")
    assert client.get(f"/brokers/{a}/imports/{csv_id}", headers=other).status_code == 403
    assert client.get(f"/brokers/{a}/imports/{csv_id}/rows.csv", headers=other).status_code == 403
    assert client.post(f"/brokers/{a}/imports/{csv_id}/start", headers=other).status_code == 403
    # Through its own broker's path, row security hides the import.
    assert client.get(f"/brokers/{b}/imports/{csv_id}", headers=other).status_code == 404
    assert client.get(f"/brokers/{b}/imports/{csv_id}/rows", headers=other).status_code == 404
    assert client.post(f"/brokers/{b}/imports/{csv_id}/start", headers=other).status_code == 404
    assert client.delete(f"/brokers/{b}/imports/{csv_id}", headers=other).status_code == 404
    assert client.get(f"/brokers/{b}/imports", headers=other).json() == []
    assert client.post(f"/brokers/{a}/imports", content=FILE.encode("cp1252"), headers=other).status_code == 403
    agent = bearer(world, "agent_a")
    assert client.post(f"/brokers/{a}/imports", content=FILE.encode("cp1252"), headers=agent).status_code == 403
    assert client.post(f"/brokers/{a}/leads", json={"name": "x", "phone": "+56988888888"},
                       headers=agent).status_code == 403
    page_session(client, world, "admin_b")
    try:
        assert client.get(f"/dashboard/brokers/{a}/imports/{csv_id}").status_code == 403
        assert client.get(f"/dashboard/brokers/{b}/imports/{csv_id}").status_code == 404
    finally:
        client.cookies.clear()
    assert rows(settings, written) == before


def test_the_funnel_counts_an_imported_lead_under_its_channel_and_the_files_source(
        settings: Settings, world: World, imported: Imported, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster_dbt import DbtCliResource

    from assets.analytics import dbt_project

    # The staging and intermediate models the funnel's marts read (and their tests), not the whole build.
    monkeypatch.setenv("LEADFLOW_AS_OF", (datetime.now(UTC) + timedelta(minutes=5)).isoformat())
    dbt = DbtCliResource(project_dir=dbt_project, profiles_dir=str(dbt_project.profiles_dir))
    assert dbt.cli(["build", "--select", "+int_leads_sourced", "--indirect-selection", "cautious"],
                   manifest=dbt_project.manifest_path).wait().is_successful()
    sourced = dict(rows(settings, """SELECT lead_id, first_channel || '/' || source FROM intermediate.int_leads_sourced
                                    WHERE broker_id = %s AND NOT is_merged""", world.a.broker_id))
    assert sourced[lead_of(settings, world.a, "Rosa Díaz")] == "import/portal inmobiliario"
    assert sourced[lead_of(settings, world.a, "Matías Hand")] == "manual/feria"
    assert sourced[world.camila] == "whatsapp/direct"  # merged into: its first contact is still its own


def test_the_migration_goes_down_and_up_again(pg_admin_url: str) -> None:
    name = f"leadflow_imports_{uuid.uuid4().hex[:8]}"
    embedded_postgres.create_database(pg_admin_url, name)
    url = with_database(pg_admin_url, name)
    try:
        upgrade(url)
        downgrade(url, "0018_dead_letter_digest")
        with transaction(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('leadflow.lead_imports'), to_regclass('leadflow.lead_import_rows')")
            assert cur.fetchone() == (None, None)
        upgrade(url)
        with transaction(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_policies WHERE tablename IN ('lead_imports', 'lead_import_rows')")
            assert cur.fetchone() == (8,)
    finally:
        embedded_postgres.drop_database(pg_admin_url, name)
