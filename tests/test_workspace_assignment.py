"""Automatic assignment of new leads and editing a lead by hand, on real PostgreSQL and Kafka with the real leads
job: one story, told once by the module's world, then asserted test by test."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg2.errors
import pytest
from dagster import materialize
from fastapi.testclient import TestClient

from leadflow.brokers import Broker, add_broker
from leadflow.config import Settings, Topics
from leadflow.db.connection import transaction
from leadflow.events import Contact
from leadflow.kafka import ensure_topics
from leadflow.leads.assignment import AGENTS_POOL
from leadflow.leads.store.assignment import assign_new_leads
from leadflow.users import User, add_user
from pipelines.inprocess import QUIET
from pipelines.resources import KafkaResource, PostgresResource
from reports_api.app import create_app
from reports_api.dashboard import COOKIE
from reports_api.security import TokenSettings, issue_token
from reports_api.workspace import csrf
from tests.test_leads_pipeline import rows, send

PASSWORD = "una-clave-larga-de-prueba"


@dataclass
class World:
    a: Broker
    b: Broker
    users: dict[str, User]  # admin_a, uno, dos (agents of a), admin_b, agent_b
    tokens: TokenSettings
    client: TestClient
    leads: dict[str, int]  # by name
    b_lead: int
    config: dict[str, Any]
    answers: dict[str, Any] = field(default_factory=dict)  # responses of the story's writes
    concurrent: list[Any] = field(default_factory=list)  # what the two simultaneous assignment runs returned


def contact(user_id: str, name: str | None = None, phone: str | None = None) -> Contact:
    return Contact(channel_user_id=user_id, display_name=name, phone_e164=phone)


def leads_job(topics: Topics) -> None:
    """The real landing job of the code location (landing → leads → qualifications → scores, stages, assignments)."""
    from pipelines.definitions import defs

    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_KAFKA_TOPIC_PREFIX", topics.prefix)
        result = defs.resolve_job_def("landing_job").execute_in_process(run_config=QUIET)
    assert result.success


def bearer(world: World, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(world.tokens, world.users[who])}"}


def lead_ids(settings: Settings, broker: Broker) -> dict[str, int]:
    return {str(name): int(lead) for lead, name in rows(
        settings, "SELECT lead_id, display_name FROM leadflow.leads WHERE broker_id = %s AND merged_into IS NULL",
        broker.broker_id)}


@pytest.fixture(scope="module")
def world(settings: Settings) -> Iterator[World]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
        tokens = TokenSettings.ephemeral()
        with TestClient(create_app(settings.database_url, tokens)) as client:
            yield _story(settings, tokens, client)


def _story(settings: Settings, tokens: TokenSettings, client: TestClient) -> World:
    url = settings.database_url
    topics = Topics(f"t{uuid.uuid4().hex[:8]}")
    ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_partitions)
    tag = uuid.uuid4().hex[:8]
    a = add_broker(url, f"as-a-{tag}", name="Propiedades Andes", country="CL", timezone="America/Santiago")
    b = add_broker(url, f"as-b-{tag}", name="Bienes Raíces Bajío", country="MX", timezone="America/Mexico_City")
    users = {
        "admin_a": add_user(url, f"admin-{tag}@andes.test", PASSWORD, role="ADMIN", broker_slug=a.slug,
                            display_name="Admin Andes"),
        "uno": add_user(url, f"uno-{tag}@andes.test", PASSWORD, role="AGENT", broker_slug=a.slug,
                        display_name="Agente Uno"),
        "dos": add_user(url, f"dos-{tag}@andes.test", PASSWORD, role="AGENT", broker_slug=a.slug,
                        display_name="Agente Dos"),
        "admin_b": add_user(url, f"admin-{tag}@bajio.test", PASSWORD, role="ADMIN", broker_slug=b.slug),
        "agent_b": add_user(url, f"agente-{tag}@bajio.test", PASSWORD, role="AGENT", broker_slug=b.slug),
    }

    # Before assignment is switched on: these leads stay for a person to assign.
    send(settings, topics, a,
         ("whatsapp", "wa-olga", contact("56940000001", "Olga", "+56940000001"), "hola", 0),
         ("whatsapp", "wa-pedro", contact("56922222222", "Pedro", "+56922222222"), "hola, soy Pedro", 1),
         ("telegram", "tg-rosa", contact("8101", "Rosa"), "quiero info", 2))
    send(settings, topics, b, ("whatsapp", "wa-lucia", contact("5215511111111", "Lucía", "+525511111111"),
                               "Busco depto en Polanco", 0))
    leads_job(topics)
    world = World(a, b, users, tokens, client, lead_ids(settings, a), lead_ids(settings, b)["Lucía"], {})

    # The admin switches it on: a VAPI call to the admin, La Reina to the two agents in turn, the rest in turn.
    world.config = {"mode": "rules", "fallback": "round_robin", "rules": [
        {"channels": ["vapi"], "areas": [], "assign_to": [users["admin_a"].user_id]},
        {"channels": [], "areas": ["La Reina"], "assign_to": [users["uno"].user_id, users["dos"].user_id]}]}
    saved = client.put(f"/brokers/{a.broker_id}/settings/assignment", json=world.config,
                       headers=bearer(world, "admin_a"))
    assert saved.status_code == 200, saved.text
    world.answers["saved"] = saved.json()

    send(settings, topics, a,
         ("whatsapp", "wa-n1", contact("56940000011", "Nora"), "hola, busco depto", 10),
         ("telegram", "tg-n2", contact("8102", "Nico"), "hola", 11),
         ("form", "form-n3", contact("n3@example.cl", "Nina"), "busco casa en La Reina", 12),
         ("vapi", "call-n4:0", contact("+56940000014", "Ximena", "+56940000014"), "quiero arrendar", 13),
         ("whatsapp", "wa-n5", contact("56940000015", "Noel"), "info", 14),
         ("telegram", "tg-n6", contact("8106", "Nadia"), "hola", 15),
         ("whatsapp", "wa-olga-2", contact("56940000001", "Olga", "+56940000001"), "sigo esperando", 16))
    leads_job(topics)
    world.leads = lead_ids(settings, a)
    world.answers["after_run_2"] = dict(rows(settings, "SELECT lead_id, assigned_user_id FROM leadflow.leads "
                                                       "WHERE broker_id = %s AND merged_into IS NULL", a.broker_id))

    # A person takes Nora's automatic assignment back; Rosa's contact is set by hand.
    world.answers["unassign"] = client.put(f"/brokers/{a.broker_id}/leads/{world.leads['Nora']}/assignment",
                                           json={"user_id": None}, headers=bearer(world, "admin_a"))
    world.answers["edit"] = client.put(f"/brokers/{a.broker_id}/leads/{world.leads['Rosa']}/contact",
                                       json={"display_name": "Rosa  Díaz", "phone": "9 3333 3333",
                                             "email": "Rosa@Example.CL"}, headers=bearer(world, "admin_a"))

    # More messages: Nora again, two new leads, and Rosa from the phone she was given, under another name.
    send(settings, topics, a,
         ("whatsapp", "wa-n1-2", contact("56940000011", "Nora"), "¿me responden?", 20),
         ("whatsapp", "wa-n7", contact("56940000017", "Omar"), "hola", 21),
         ("telegram", "tg-n8", contact("8108", "Olivia"), "hola", 22),
         ("whatsapp", "wa-rosa", contact("56933333333", "Rosita", "+56933333333"), "les escribo por acá", 23))
    # This time the leads are made by the job's first steps, and two assignment runs start at once.
    from assets.landing import landed_messages
    from assets.leads import lead_qualifications, leads

    assert materialize([landed_messages, leads, lead_qualifications], resources={
        "postgres": PostgresResource(url=url),
        "kafka": KafkaResource(bootstrap_servers=settings.kafka_bootstrap_servers, topic_prefix=topics.prefix)},
        run_config=QUIET).success
    barrier = threading.Barrier(2)

    def assign() -> None:
        barrier.wait()
        world.concurrent.append(assign_new_leads(url))

    threads = [threading.Thread(target=assign) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    world.leads = lead_ids(settings, a)
    return world


def assigned_to(settings: Settings, lead: int) -> int | None:
    [(user,)] = rows(settings, "SELECT assigned_user_id FROM leadflow.leads WHERE lead_id = %s", lead)
    return None if user is None else int(user)


def automatic_entries(settings: Settings, lead: int) -> list[tuple[Any, ...]]:
    return rows(settings, """SELECT user_id, before, after FROM leadflow.audit_log
                             WHERE lead_id = %s AND action = 'lead.assign' AND user_id IS NULL""", lead)


def audit_count(settings: Settings, world: World) -> int:
    return int(rows(settings, "SELECT count(*) FROM leadflow.audit_log WHERE broker_id IN (%s, %s)",
                    world.a.broker_id, world.b.broker_id)[0][0])


# --- automatic assignment --------------------------------------------------------------------------------

def test_new_leads_take_turns_between_the_two_agents_and_rules_place_calls_and_areas(world: World,
                                                                                     settings: Settings) -> None:
    after = world.answers["after_run_2"]
    lw, u = world.leads, world.users
    uno, dos = u["uno"].user_id, u["dos"].user_id
    assert after[lw["Ximena"]] == u["admin_a"].user_id  # rule 1: a VAPI call
    assert after[lw["Nina"]] == uno  # rule 2: La Reina, the group's first turn
    # Everyone else in turn, in the order the leads were created, whatever order Kafka's partitions gave.
    rest = sorted(lw[name] for name in ("Nora", "Nico", "Noel", "Nadia"))
    assert [after[lead] for lead in rest] == [uno, dos, uno, dos]
    assert automatic_entries(settings, lw["Ximena"])[0][2]["by"] == "automatic (rule 1: channel vapi)"
    [(user, before, payload)] = automatic_entries(settings, rest[0])
    assert (user, before, payload) == (None, {"assigned_user_id": None},
                                       {"assigned_user_id": uno, "by": "automatic (round robin)"})


def test_leads_from_before_it_was_switched_on_and_other_brokers_stay_unassigned(world: World,
                                                                               settings: Settings) -> None:
    for name in ("Olga", "Pedro", "Rosa Díaz"):
        assert assigned_to(settings, world.leads[name]) is None, name
        assert automatic_entries(settings, world.leads[name]) == []
    assert assigned_to(settings, world.b_lead) is None
    assert world.answers["saved"]["applies_after_lead_id"] >= world.leads["Rosa Díaz"]


def test_a_lead_a_person_unassigned_is_not_assigned_again(world: World, settings: Settings) -> None:
    assert world.answers["unassign"].status_code == 200, world.answers["unassign"].text
    nora = world.leads["Nora"]
    assert assigned_to(settings, nora) is None
    assert rows(settings, "SELECT count(*) FROM leadflow.message_leads WHERE lead_id = %s", nora) == [(2,)]
    assert len(automatic_entries(settings, nora)) == 1  # the first one only


def test_two_runs_at_once_assign_each_new_lead_once_and_the_turn_survives_between_runs(world: World,
                                                                                        settings: Settings) -> None:
    omar, olivia = world.leads["Omar"], world.leads["Olivia"]
    assert sorted(r.assigned for r in world.concurrent) == [0, 2]
    # The turn went on from where the previous run left it (Dos had the last one): Uno, then Dos.
    assert [assigned_to(settings, lead) for lead in sorted((omar, olivia))] == \
        [world.users["uno"].user_id, world.users["dos"].user_id]
    assert [len(automatic_entries(settings, lead)) for lead in (omar, olivia)] == [1, 1]
    assert rows(settings, "SELECT last_user_id FROM leadflow.assignment_cursors WHERE broker_id = %s AND pool = %s",
                world.a.broker_id, AGENTS_POOL) == [(world.users["dos"].user_id,)]
    with pytest.raises(psycopg2.errors.UniqueViolation), transaction(settings.database_url) as conn, \
            conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.audit_log (broker_id, user_id, action, lead_id, after)
                       VALUES (%s, NULL, 'lead.assign', %s, '{}')""", (world.a.broker_id, omar))


def test_automatic_entries_show_in_the_audit_and_on_the_lead_page(world: World) -> None:
    lead = world.leads["Noel"]
    entries = world.client.get(f"/brokers/{world.a.broker_id}/audit", params={"lead_id": lead},
                               headers=bearer(world, "admin_a"))
    assert entries.status_code == 200, entries.text
    [entry] = entries.json()
    assert (entry["action"], entry["user_id"], entry["after"]["by"]) == ("lead.assign", None,
                                                                         "automatic (round robin)")
    world.client.cookies.update({COOKIE: issue_token(world.tokens, world.users["admin_a"])})
    try:
        page = world.client.get(f"/dashboard/brokers/{world.a.broker_id}/leads/{lead}")
    finally:
        world.client.cookies.clear()
    assert page.status_code == 200 and "automático · lead.assign" in page.text


# --- the settings ----------------------------------------------------------------------------------------

def test_the_settings_are_refused_to_agents_and_to_another_brokers_admin(world: World, settings: Settings) -> None:
    path = f"/brokers/{world.a.broker_id}/settings/assignment"
    before = audit_count(settings, world)
    for who in ("uno", "admin_b"):
        assert world.client.get(path, headers=bearer(world, who)).status_code == 403, who
        answer = world.client.put(path, json={"mode": "off"}, headers=bearer(world, who))
        assert answer.status_code == 403, who
        cookies = {COOKIE: issue_token(world.tokens, world.users[who])}
        world.client.cookies.update(cookies)
        try:
            assert world.client.get(f"/dashboard{path}").status_code == 403
            token = csrf.token_for(world.tokens.secret, cookies[COOKIE])
            assert world.client.post(f"/dashboard{path}", data={"mode": "off", "csrf": token},
                                     follow_redirects=False).status_code == 403
        finally:
            world.client.cookies.clear()
    assert audit_count(settings, world) == before
    assert world.client.get(path, headers=bearer(world, "admin_a")).json()["config"] == world.config


def test_a_rule_naming_a_person_of_another_broker_is_refused_and_nothing_is_written(world: World,
                                                                                   settings: Settings) -> None:
    before = audit_count(settings, world)
    for stranger in ("agent_b", "admin_b"):
        bad = {"mode": "rules", "rules": [{"channels": ["form"], "assign_to": [world.users[stranger].user_id]}]}
        answer = world.client.put(f"/brokers/{world.a.broker_id}/settings/assignment", json=bad,
                                  headers=bearer(world, "admin_a"))
        assert answer.status_code == 422 and str(world.users[stranger].user_id) in answer.json()["detail"]
    assert audit_count(settings, world) == before
    [(stored,)] = rows(settings, "SELECT config FROM leadflow.assignment_settings WHERE broker_id = %s",
                       world.a.broker_id)
    assert stored == world.config


def test_the_settings_page_saves_its_form_with_the_csrf_token_and_audits_it(world: World,
                                                                            settings: Settings) -> None:
    cookies = {COOKIE: issue_token(world.tokens, world.users["admin_a"])}
    token = csrf.token_for(world.tokens.secret, cookies[COOKIE])
    path = f"/dashboard/brokers/{world.a.broker_id}/settings/assignment"
    u = world.users
    form = {"mode": "rules", "fallback": "round_robin", "rule0_channels": "vapi",
            "rule0_people": str(u["admin_a"].user_id), "rule1_areas": "La Reina",
            "rule1_people": [str(u["uno"].user_id), str(u["dos"].user_id)], "rule2_areas": ""}
    world.client.cookies.update(cookies)
    try:
        shown = world.client.get(path)
        assert shown.status_code == 200 and 'id="assignment-form"' in shown.text and "Agente Dos" in shown.text
        assert f'href="/dashboard/brokers/{world.a.broker_id}/settings/assignment"' in shown.text  # the nav
        before = audit_count(settings, world)
        assert world.client.post(path, data=form, follow_redirects=False).status_code == 403  # no token
        assert audit_count(settings, world) == before
        saved = world.client.post(path, data={**form, "csrf": token}, follow_redirects=False)
        assert saved.status_code == 303 and saved.headers["location"] == f"{path}?saved=1"
        refused = world.client.post(path, data={**form, "rule0_people": str(u["agent_b"].user_id), "csrf": token})
        assert refused.status_code == 422
    finally:
        world.client.cookies.clear()
    [(stored,)] = rows(settings, "SELECT config FROM leadflow.assignment_settings WHERE broker_id = %s",
                       world.a.broker_id)
    assert stored == world.config  # the form round-trips the same config
    [(who, action)] = rows(settings, """SELECT user_id, action FROM leadflow.audit_log WHERE broker_id = %s
                                        ORDER BY audit_id DESC LIMIT 1""", world.a.broker_id)
    assert (who, action) == (u["admin_a"].user_id, "settings.assignment")


def test_only_an_admin_is_shown_the_link_to_the_assignment_settings(world: World) -> None:
    link = f'href="/dashboard/brokers/{world.a.broker_id}/settings/assignment"'
    for user, shown in (("admin_a", True), ("uno", False)):
        world.client.cookies.update({COOKIE: issue_token(world.tokens, world.users[user])})
        try:
            inbox = world.client.get(f"/dashboard/brokers/{world.a.broker_id}/inbox")
        finally:
            world.client.cookies.clear()
        assert inbox.status_code == 200 and 'class="ws-nav"' in inbox.text
        assert (link in inbox.text) is shown, user


# --- editing a lead --------------------------------------------------------------------------------------

def test_an_edit_sets_the_contact_adds_identities_and_later_messages_keep_both(world: World,
                                                                              settings: Settings) -> None:
    answer = world.answers["edit"]
    assert answer.status_code == 200, answer.text
    rosa = world.leads["Rosa Díaz"]
    assert answer.json()["phone_e164"] == "+56933333333" and answer.json()["email"] == "rosa@example.cl"
    # Rosita's message came from the phone set by hand: it joined Rosa's lead, whose name a person set stays.
    assert rows(settings, "SELECT display_name, phone_e164, email, message_count FROM leadflow.leads "
                          "WHERE lead_id = %s", rosa) == [("Rosa Díaz", "+56933333333", "rosa@example.cl", 2)]
    identities = rows(settings, """SELECT identity_kind, identity_value, reason FROM leadflow.lead_identities
                                   WHERE lead_id = %s AND identity_kind IN ('phone', 'email') ORDER BY 1""", rosa)
    assert identities == [("email", "rosa@example.cl", "set by Admin Andes"),
                          ("phone", "+56933333333", "set by Admin Andes")]
    [(who, before, after)] = rows(settings, """SELECT user_id, before, after FROM leadflow.audit_log
                                               WHERE lead_id = %s AND action = 'lead.edit'""", rosa)
    assert who == world.users["admin_a"].user_id
    assert before == {"display_name": "Rosa", "phone_e164": None, "email": None}
    assert (after["display_name"], after["phone_e164"], after["email"]) == ("Rosa Díaz", "+56933333333",
                                                                             "rosa@example.cl")


def test_a_phone_that_is_another_leads_identity_is_a_409_naming_that_lead(world: World,
                                                                          settings: Settings) -> None:
    before = audit_count(settings, world)
    rosa, pedro = world.leads["Rosa Díaz"], world.leads["Pedro"]
    answer = world.client.put(f"/brokers/{world.a.broker_id}/leads/{rosa}/contact",
                              json={"display_name": "Otra", "phone": "+56 9 2222 2222"},
                              headers=bearer(world, "admin_a"))
    assert answer.status_code == 409 and f"lead {pedro} (Pedro)" in answer.json()["detail"]
    assert audit_count(settings, world) == before
    assert rows(settings, "SELECT display_name FROM leadflow.leads WHERE lead_id = %s", rosa) == [("Rosa Díaz",)]


def test_an_invalid_phone_or_email_is_a_422_and_nothing_is_written(world: World, settings: Settings) -> None:
    before = audit_count(settings, world)
    path = f"/brokers/{world.a.broker_id}/leads/{world.leads['Olga']}/contact"
    for body in ({"phone": "12"}, {"phone": "llámame"}, {"email": "no-es-email"}, {"display_name": "  "}, {}):
        answer = world.client.put(path, json=body, headers=bearer(world, "admin_a"))
        assert answer.status_code == 422, body
    assert audit_count(settings, world) == before


def test_edits_stay_within_the_broker_and_an_agents_own_leads(world: World, settings: Settings) -> None:
    before = audit_count(settings, world)
    body = {"display_name": "Intruso"}
    other_broker = world.client.put(f"/brokers/{world.a.broker_id}/leads/{world.b_lead}/contact", json=body,
                                    headers=bearer(world, "admin_a"))
    assert other_broker.status_code == 404
    assert world.client.put(f"/brokers/{world.b.broker_id}/leads/{world.b_lead}/contact", json=body,
                            headers=bearer(world, "admin_a")).status_code == 403
    # Dos may not edit Uno's lead (row security hides it), but may edit its own.
    owner = {assigned_to(settings, world.leads[name]): world.leads[name] for name in ("Nico", "Noel", "Nadia")}
    unos, nico = owner[world.users["uno"].user_id], owner[world.users["dos"].user_id]
    assert world.client.put(f"/brokers/{world.a.broker_id}/leads/{unos}/contact", json=body,
                            headers=bearer(world, "dos")).status_code == 404
    assert audit_count(settings, world) == before
    own = world.client.put(f"/brokers/{world.a.broker_id}/leads/{nico}/contact",
                           json={"email": "nico@example.cl"}, headers=bearer(world, "dos"))
    assert own.status_code == 200, own.text
    assert rows(settings, "SELECT lead_id, reason FROM leadflow.lead_identities WHERE broker_id = %s "
                          "AND identity_kind = 'email' AND identity_value = 'nico@example.cl'",
                world.a.broker_id) == [(nico, "set by Agente Dos")]
    # A phone already the identity of a lead the agent may not see (Olga's): refused, that lead not named.
    before = audit_count(settings, world)
    hidden = world.client.put(f"/brokers/{world.a.broker_id}/leads/{nico}/contact",
                              json={"phone": "+56940000001"}, headers=bearer(world, "dos"))
    assert hidden.status_code == 409 and "may not see" in hidden.json()["detail"]
    assert "Olga" not in hidden.text and f"lead {world.leads['Olga']}" not in hidden.text
    assert audit_count(settings, world) == before


def test_the_lead_page_has_the_edit_form_and_it_needs_its_csrf_token(world: World, settings: Settings) -> None:
    cookies = {COOKIE: issue_token(world.tokens, world.users["admin_a"])}
    token = csrf.token_for(world.tokens.secret, cookies[COOKIE])
    olga = world.leads["Olga"]
    base = f"/dashboard/brokers/{world.a.broker_id}/leads/{olga}"
    world.client.cookies.update(cookies)
    try:
        page = world.client.get(base)
        assert page.status_code == 200 and 'id="contact-form"' in page.text and f'action="{base}/contact"' in page.text
        assert world.client.post(f"{base}/contact", data={"display_name": "Olga Pérez"},
                                 follow_redirects=False).status_code == 403
        saved = world.client.post(f"{base}/contact", data={"display_name": "Olga Pérez", "phone": "", "email": "",
                                                           "csrf": token}, follow_redirects=False)
        assert saved.status_code == 303 and saved.headers["location"] == base
        conflict = world.client.post(f"{base}/contact", data={"phone": "+56922222222", "csrf": token})
        assert conflict.status_code == 409 and "Pedro" in conflict.text
    finally:
        world.client.cookies.clear()
    assert rows(settings, "SELECT display_name FROM leadflow.leads WHERE lead_id = %s", olga) == [("Olga Pérez",)]


# --- migration -------------------------------------------------------------------------------------------

def test_the_migration_goes_down_and_up_again(pg_admin_url: str) -> None:
    from leadflow.config import with_database
    from leadflow.db.migrate import downgrade, upgrade
    from leadflow.services import postgres as embedded_postgres

    name = f"leadflow_as_{uuid.uuid4().hex[:8]}"
    embedded_postgres.create_database(pg_admin_url, name)
    url = with_database(pg_admin_url, name)
    try:
        upgrade(url, "0020_lead_assignment")
        downgrade(url, "0018_dead_letter_digest")
        with transaction(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('leadflow.assignment_settings'), "
                        "to_regclass('leadflow.lead_contact_edits'),"
                        " (SELECT attnotnull FROM pg_attribute WHERE attrelid = 'leadflow.audit_log'::regclass"
                        "  AND attname = 'user_id')")
            assert cur.fetchone() == (None, None, True)
        upgrade(url)
    finally:
        embedded_postgres.drop_database(pg_admin_url, name)
