"""The broker workspace on real PostgreSQL and Kafka: inbox, lead page, notes, tags, assignment, stage moves,
audit, CSRF, escaping, live events, and row security for reads and writes."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import psycopg2
import psycopg2.errors
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from leadflow.agent.store import take_over
from leadflow.brokers import Broker, add_broker
from leadflow.campaigns.store import save_campaign
from leadflow.config import Settings, Topics, with_database
from leadflow.db.connection import transaction
from leadflow.db.migrate import downgrade, upgrade
from leadflow.demo.run import BackgroundServer
from leadflow.events import ChannelMessage, Contact
from leadflow.kafka import ensure_topics, make_producer, produce_all
from leadflow.leads.store.stages import update_stages
from leadflow.services import postgres as embedded_postgres
from leadflow.users import User, add_user, assign_leads
from reports_api.app import create_app
from reports_api.dashboard import COOKIE
from reports_api.scope import ScopedPool
from reports_api.security import Principal, TokenSettings, issue_token
from reports_api.workspace import csrf
from reports_api.workspace.db import write_cursor
from tests.test_leads_pipeline import T0, rows, run

PASSWORD = "una-clave-larga-de-prueba"
SCRIPT = "<script>alert('xss')</script>"


@dataclass(frozen=True)
class Leads:
    camila: int  # WhatsApp, hot, with a bot reply, a campaign send and a merged Telegram lead
    tomas: int  # Telegram, cold
    pedro: int  # a VAPI call: the lead's turn and the assistant's
    ana: int  # a web form
    mallory: int  # a name and a message with HTML in them


@dataclass(frozen=True)
class World:
    a: Broker
    b: Broker
    users: dict[str, User]  # superadmin, admin_a, agent_a, agent2_a, admin_b
    leads: Leads
    b_lead: int
    topics: Topics
    tokens: TokenSettings


def message(broker: Broker, channel: str, provider_id: str, contact: Contact, text: str, minute: int,
            **fields: Any) -> tuple[bytes, bytes]:
    event = ChannelMessage.build(broker_id=broker.broker_id, broker_slug=broker.slug, channel=channel,  # type: ignore[arg-type]
                                 provider_message_id=provider_id, contact=contact, text=text,
                                 sent_at=T0 + timedelta(minutes=minute), **fields)
    return event.kafka_key(), event.model_dump_json().encode()


def deliver(settings: Settings, topics: Topics, *items: tuple[bytes, bytes]) -> None:
    produce_all(make_producer(settings.kafka_bootstrap_servers), topics.messages, list(items))
    run(settings, topics)


CAMILA = Contact(channel_user_id="56911111111", display_name="Camila Rojas", phone_e164="+56911111111")
TOMAS = Contact(channel_user_id="7001", display_name="Tomás")
CALL = Contact(channel_user_id="+56922222222", phone_e164="+56922222222")
ANA = Contact(channel_user_id="ana@example.cl", display_name="Ana Soto", email="ana@example.cl")
MALLORY = Contact(channel_user_id="56955555555", display_name="<b>Mal</b>", phone_e164="+56955555555")


def build_world(settings: Settings) -> World:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
        return _build(settings)


def _build(settings: Settings) -> World:
    url = settings.database_url
    topics = Topics(f"t{uuid.uuid4().hex[:8]}")
    ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_partitions)
    tag = uuid.uuid4().hex[:8]
    a = add_broker(url, f"ws-a-{tag}", name="Propiedades Andes", country="CL", timezone="America/Santiago")
    b = add_broker(url, f"ws-b-{tag}", name="Bienes Raíces Bajío", country="MX", timezone="America/Mexico_City")
    deliver(settings, topics,
            message(a, "whatsapp", "wa-1", CAMILA, "Hola, busco depto 2d2b en Ñuñoa, hasta 5.200 UF, "
                                                   "crédito preaprobado", 0),
            message(a, "telegram", "tg-1", TOMAS, "hola, quiero info", 3),
            message(a, "vapi", "call-1:0", CALL, "Soy Pedro, quiero arrendar en Providencia hasta 600 lucas", 10,
                    message_type="voice_transcript", conversation_id="call-1"),
            message(a, "vapi", "call-1:1", CALL, "Perfecto Pedro, te busco opciones", 11, direction="outbound",
                    message_type="voice_transcript", conversation_id="call-1"),
            message(a, "form", "form-1", ANA, "Me llamo Ana, busco casa en La Reina hasta 9.000 UF", 30),
            message(a, "whatsapp", "wa-m1", MALLORY, f"hola {SCRIPT}", 40),
            message(b, "whatsapp", "wa-b1", Contact(channel_user_id="5215511111111", display_name="Lucía",
                                                    phone_e164="+525511111111"), "Busco depto en Polanco", 0))
    # The bot answers Camila; a Telegram account of hers, newer, shares her phone later: merged into her lead.
    cami = Contact(channel_user_id="9001", display_name="Cami")
    deliver(settings, topics,
            message(a, "whatsapp", "wa-bot-1", CAMILA, "¡Hola Camila! ¿Cuándo te gustaría visitar?", 1,
                    direction="outbound", raw={"leadflow": {"author": "bot"}}),
            message(a, "telegram", "tg-c1", cami, "hola, soy Cami", 2))
    deliver(settings, topics, message(a, "telegram", "tg-c2", cami.model_copy(update={"phone_e164": "+56911111111"}),
                                      "escribo por acá también", 4))

    def lead(name: str) -> int:
        [(lead_id,)] = rows(settings, """SELECT lead_id FROM leadflow.leads WHERE broker_id = %s AND merged_into IS NULL
                                         AND (display_name = %s OR phone_e164 = %s)""", a.broker_id, name, name)
        return int(lead_id)

    # The merged lead keeps the older lead's id and takes the newest name ("Cami").
    leads = Leads(lead("+56911111111"), lead("Tomás"), lead("+56922222222"), lead("Ana Soto"), lead("<b>Mal</b>"))
    [(b_lead,)] = rows(settings, "SELECT lead_id FROM leadflow.leads WHERE broker_id = %s", b.broker_id)
    campaign = save_campaign(url, a.slug, "Reactivar", {
        "trigger": {"type": "manual"}, "steps": [{"action": "message", "template": "Hola {{first_name}}"}]})
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.outbound_sends (broker_id, campaign_id, lead_id, step, action, channel,
                                                            status, payload, created_at, sent_at, updated_at)
                       VALUES (%s, %s, %s, 0, 'message', 'whatsapp', 'delivered', %s, %s, %s, %s)""",
                    (a.broker_id, campaign, leads.camila, json.dumps({"text": "Hola Camila, ¿sigues buscando?"}),
                     T0 + timedelta(minutes=50), T0 + timedelta(minutes=50), T0 + timedelta(minutes=51)))
    update_stages(url, as_of=T0 + timedelta(days=3))  # Tomás has been idle in entrada: stalled
    users = {
        "superadmin": add_user(url, f"root-{tag}@leadflow.test", PASSWORD, role="SUPERADMIN"),
        "admin_a": add_user(url, f"admin-{tag}@andes.test", PASSWORD, role="ADMIN", broker_slug=a.slug,
                            display_name="Admin Andes"),
        "agent_a": add_user(url, f"agente-{tag}@andes.test", PASSWORD, role="AGENT", broker_slug=a.slug,
                            display_name="Agente Uno"),
        "agent2_a": add_user(url, f"agente2-{tag}@andes.test", PASSWORD, role="AGENT", broker_slug=a.slug,
                             display_name="Agente Dos"),
        "admin_b": add_user(url, f"admin-{tag}@bajio.test", PASSWORD, role="ADMIN", broker_slug=b.slug),
    }
    assign_leads(url, users["agent_a"].email, [leads.camila, leads.tomas, leads.mallory])
    take_over(url, a.slug, leads.tomas, users["agent_a"].email, "pidió hablar con una persona")
    return World(a, b, users, leads, int(b_lead), topics, TokenSettings.ephemeral())


@pytest.fixture(scope="module")
def world(settings: Settings) -> World:
    return build_world(settings)


@pytest.fixture(scope="module")
def app(settings: Settings, world: World) -> FastAPI:
    return create_app(settings.database_url, world.tokens)


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def bearer(world: World, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(world.tokens, world.users[who])}"}


def inbox_ids(client: TestClient, world: World, who: str = "admin_a", **params: Any) -> list[int]:
    answer = client.get(f"/brokers/{world.a.broker_id}/inbox", params={"limit": 200, **params},
                        headers=bearer(world, who))
    assert answer.status_code == 200, answer.text
    return [item["lead_id"] for item in answer.json()["items"]]


def audit_count(settings: Settings, world: World) -> int:
    return int(rows(settings, "SELECT count(*) FROM leadflow.audit_log WHERE broker_id IN (%s, %s)",
                    world.a.broker_id, world.b.broker_id)[0][0])


# --- inbox ---------------------------------------------------------------------------------------------

def test_the_inbox_lists_live_leads_newest_message_first_and_pages_by_keyset(client: TestClient,
                                                                              world: World) -> None:
    everything = inbox_ids(client, world)
    lw = world.leads
    assert everything == [lw.mallory, lw.ana, lw.pedro, lw.camila, lw.tomas]  # the merged Telegram lead is gone
    seen: list[int] = []
    after = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 2, **({"after": after} if after else {})}
        page = client.get(f"/brokers/{world.a.broker_id}/inbox", params=params, headers=bearer(world, "admin_a")).json()
        seen += [item["lead_id"] for item in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert seen == everything
    first = client.get(f"/brokers/{world.a.broker_id}/inbox", headers=bearer(world, "admin_a")).json()["items"][0]
    assert first["last_body"] == f"hola {SCRIPT}" and first["last_direction"] == "inbound"
    for bad in ("5.0", "n.abc", "99999999999999999999.1", "-1.5"):
        answer = client.get(f"/brokers/{world.a.broker_id}/inbox", params={"after": bad},
                            headers=bearer(world, "admin_a"))
        assert answer.status_code == 422, bad


def test_inbox_filters_and_their_counts(client: TestClient, world: World) -> None:
    lw = world.leads
    assert inbox_ids(client, world, temperature="hot") == [lw.camila]
    assert inbox_ids(client, world, channel="vapi") == [lw.pedro]
    assert inbox_ids(client, world, channel="telegram") == [lw.camila, lw.tomas]
    assert inbox_ids(client, world, handler="person") == [lw.tomas]
    assert lw.tomas not in inbox_ids(client, world, handler="bot")
    assert inbox_ids(client, world, stalled="true") == [lw.tomas]
    assert inbox_ids(client, world, assigned="unassigned") == [lw.ana, lw.pedro]
    assert inbox_ids(client, world, "agent_a", assigned="me") == [lw.mallory, lw.camila, lw.tomas]
    assert inbox_ids(client, world, stage="potencial") == [lw.camila]
    # Search: name, phone by its digits, email, and what a lead wrote (not what the bot wrote).
    assert inbox_ids(client, world, q="cami") == [lw.camila]
    assert inbox_ids(client, world, q="11111111") == [lw.camila]
    assert inbox_ids(client, world, q="9 2222 2222") == [lw.pedro]
    assert inbox_ids(client, world, q="example.cl") == [lw.ana]
    assert inbox_ids(client, world, q="providencia") == [lw.pedro]
    assert inbox_ids(client, world, q="visitar") == []
    assert inbox_ids(client, world, q="50%_") == []  # LIKE's wildcards are searched as text

    counts = client.get(f"/brokers/{world.a.broker_id}/inbox/counts", headers=bearer(world, "admin_a")).json()
    assert counts["total"] == 5
    assert counts["temperature"]["hot"] == 1 and counts["channel"]["telegram"] == 2
    assert counts["handler"] == {"person": 1, "bot": 4} and counts["stalled"] == {"true": 1}
    assert counts["assigned"]["unassigned"] == 2 and counts["assigned"]["anyone"] == 5
    assert counts["stage"]["potencial"] == 1 and sum(counts["stage"].values()) == 5
    # Each facet counts with the other filters applied, not its own.
    telegram = client.get(f"/brokers/{world.a.broker_id}/inbox/counts", params={"channel": "telegram"},
                          headers=bearer(world, "admin_a")).json()
    assert telegram["total"] == 2 and telegram["channel"]["vapi"] == 1 and telegram["temperature"]["hot"] == 1
    for facet, values in telegram.items():
        if facet in ("total", "channel"):
            continue
        for value, count in values.items():
            params = {"channel": "telegram", facet: value}
            assert len(inbox_ids(client, world, **params)) == count, (facet, value)


def test_a_search_pages_the_same_whether_it_walks_the_inbox_or_asks_the_index(settings: Settings, world: World,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # A frequent term fills its page within the first SEARCH_WALK leads in inbox order; a rarer one goes to
    # the trigram index (workspace_search). Both must give the same pages, in order, in the caller's scope.
    from reports_api.workspace import reads

    pool = ScopedPool(settings.database_url, 1)
    people = {"admin_a": Principal(world.users["admin_a"].user_id, "x", "ADMIN", world.a.broker_id),
              "agent_a": Principal(world.users["agent_a"].user_id, "x", "AGENT", world.a.broker_id)}

    def pages(who: str, term: str, limit: int) -> tuple[list[list[int]], int]:
        seen: list[list[int]] = []
        walked = 0
        after: reads.Cursor | None = None
        while True:
            f = reads.InboxFilter(search=term, after=after, limit=limit)
            with pool.cursor(people[who], world.a.broker_id) as cur:
                conditions = {k: v for k, v in reads._conditions(f).items() if k != "search"}
                params = reads._params(world.a.broker_id, people[who].user_id, f)
                walked += reads._walk_search(cur, conditions, reads._after(f), params) is not None
                page = reads.inbox(cur, world.a.broker_id, people[who].user_id, f)
            seen.append([item["lead_id"] for item in page["items"]])
            if page["next"] is None:
                return seen, walked
            after = reads.Cursor.decode(page["next"])

    walks = 0
    for who in people:
        for term in ("a", "hola", "cami", "11111111", "example.cl", "zzqx"):
            for limit in (1, 2, 50):
                walking, walked = pages(who, term, limit)
                walks += walked
                monkeypatch.setattr(reads, "SEARCH_WALK", 0)
                indexed, none = pages(who, term, limit)
                monkeypatch.undo()
                assert none == 0
                assert walking == indexed, (who, term, limit)
                if who == "agent_a":
                    assert not {lead for page in walking for lead in page} & {world.leads.ana, world.leads.pedro}
    assert walks > 0  # the walk itself was exercised, not only the index


def test_an_agent_sees_only_its_own_leads_in_the_inbox_and_on_the_board(client: TestClient, world: World) -> None:
    lw = world.leads
    assert inbox_ids(client, world, "agent_a") == [lw.mallory, lw.camila, lw.tomas]
    assert inbox_ids(client, world, "agent2_a") == []
    counts = client.get(f"/brokers/{world.a.broker_id}/inbox/counts", headers=bearer(world, "agent_a")).json()
    assert counts["total"] == 3
    board = client.get(f"/brokers/{world.a.broker_id}/board", headers=bearer(world, "agent_a")).json()
    assert sum(column["count"] for column in board) == 3
    assert {card["lead_id"] for column in board for card in column["cards"]} == {lw.mallory, lw.tomas, lw.camila}


# --- lead page -------------------------------------------------------------------------------------------

def test_the_lead_page_has_the_whole_conversation_in_time_order(client: TestClient, world: World) -> None:
    answer = client.get(f"/brokers/{world.a.broker_id}/leads/{world.leads.camila}/workspace",
                        headers=bearer(world, "admin_a"))
    assert answer.status_code == 200, answer.text
    lead = answer.json()
    said = [(i["author"], i["channel"], i["body"]) for i in lead["conversation"]]
    assert said == [
        ("lead", "whatsapp", "Hola, busco depto 2d2b en Ñuñoa, hasta 5.200 UF, crédito preaprobado"),
        ("bot", "whatsapp", "¡Hola Camila! ¿Cuándo te gustaría visitar?"),
        ("lead", "telegram", "hola, soy Cami"),
        ("lead", "telegram", "escribo por acá también"),
        ("campaign", "whatsapp", "Hola Camila, ¿sigues buscando?"),
    ]
    assert lead["conversation"][-1]["delivery"] == "delivered" and lead["conversation"][-1]["campaign"] == "Reactivar"
    assert lead["qualification"]["budget_max"] == 5200 and lead["score"]["temperature"] == "hot"
    assert [e["to_stage"] for e in lead["stage_history"]][:2] == ["entrada", "perfilamiento"]
    assert {i["kind"] for i in lead["identities"]} >= {"phone", "whatsapp"}
    [merge] = lead["merges"]
    assert merge["into_lead_id"] == world.leads.camila and merge["moved_messages"] >= 1
    assert lead["assigned"]["display_name"] == "Agente Uno" and lead["handler"]["handler"] == "bot"
    assert "perdido" in [s["code"] for s in lead["stages"]]

    call = client.get(f"/brokers/{world.a.broker_id}/leads/{world.leads.pedro}/workspace",
                      headers=bearer(world, "admin_a")).json()
    assert [(i["author"], i["conversation_id"]) for i in call["conversation"]] == [("lead", "call-1"),
                                                                                   ("assistant", "call-1")]
    newest = client.get(f"/brokers/{world.a.broker_id}/leads/{world.leads.camila}/workspace", params={"limit": 1},
                        headers=bearer(world, "admin_a")).json()
    assert len(newest["conversation"]) == 1 and newest["older_left_out"]


def test_the_lead_pages_json_is_what_validating_every_item_gives(settings: Settings, world: World) -> None:
    from reports_api.routes.workspace import lead_workspace
    from reports_api.workspace.schemas import LeadWorkspace, lead_workspace_json

    pool = ScopedPool(settings.database_url, 1)
    admin = Principal(world.users["admin_a"].user_id, "x", "ADMIN", world.a.broker_id)
    for lead_id in (world.leads.camila, world.leads.pedro):
        with pool.cursor(admin, world.a.broker_id) as cur:
            page = lead_workspace(cur, world.a.broker_id, lead_id, 500)
        fast = json.loads(lead_workspace_json(page))
        assert fast == json.loads(LeadWorkspace.model_validate(page).model_dump_json())
        assert fast["conversation"] and set(fast["conversation"][0]) == set(ConversationItemFields)


ConversationItemFields = ("kind", "item_id", "channel", "direction", "message_type", "body", "at", "conversation_id",
                          "author", "delivery", "campaign", "detail")


def test_an_agent_cannot_read_a_lead_it_is_not_assigned(client: TestClient, world: World) -> None:
    path = f"/brokers/{world.a.broker_id}/leads/{world.leads.ana}/workspace"
    assert client.get(path, headers=bearer(world, "agent_a")).status_code == 404
    assert client.get(path, headers=bearer(world, "admin_a")).status_code == 200


# --- writes ----------------------------------------------------------------------------------------------

def test_notes_and_tags_carry_their_author_and_time_and_are_audited(client: TestClient, world: World,
                                                                   settings: Settings) -> None:
    base = f"/brokers/{world.a.broker_id}/leads/{world.leads.camila}"
    before = audit_count(settings, world)
    note = client.post(f"{base}/notes", json={"body": f"Llamó: quiere visitar el sábado {SCRIPT}"},
                       headers=bearer(world, "agent_a"))
    assert note.status_code == 201, note.text
    assert note.json()["author"] == "Agente Uno" and note.json()["author_id"] == world.users["agent_a"].user_id
    tag = client.post(f"{base}/tags", json={"tag": "  Inversionista  VIP "}, headers=bearer(world, "agent_a"))
    assert tag.status_code == 201 and tag.json()["tag"] == "inversionista vip"
    again = client.post(f"{base}/tags", json={"tag": "inversionista vip"}, headers=bearer(world, "admin_a"))
    assert again.status_code == 200 and again.json()["added_by"] == "Agente Uno"
    lead = client.get(f"{base}/workspace", headers=bearer(world, "admin_a")).json()
    assert lead["notes"][0]["body"].endswith(SCRIPT) and lead["notes"][0]["author"] == "Agente Uno"
    assert [(t["tag"], t["added_by"]) for t in lead["tags"]] == [("inversionista vip", "Agente Uno")]
    assert client.delete(f"{base}/tags/inversionista vip", headers=bearer(world, "admin_a")).status_code == 204
    assert client.delete(f"{base}/tags/inversionista vip", headers=bearer(world, "admin_a")).status_code == 404
    assert audit_count(settings, world) == before + 3  # the note, the tag, its removal (the repeat wrote nothing)
    entries = client.get(f"/brokers/{world.a.broker_id}/audit", params={"lead_id": world.leads.camila},
                         headers=bearer(world, "admin_a")).json()
    assert [e["action"] for e in entries[:3]] == ["tag.remove", "tag.add", "note.add"]
    assert entries[0]["before"]["tag"] == "inversionista vip" and entries[0]["after"] is None
    assert entries[2]["by_name"] == "Agente Uno" and entries[2]["after"]["body"].endswith(SCRIPT)
    for bad in ({"body": ""}, {"body": "x" * 5001}, {"body": "a\x00b"}, {"body": "   "}):
        assert client.post(f"{base}/notes", json=bad, headers=bearer(world, "admin_a")).status_code == 422, bad


def test_assignment_is_an_admins_and_keeps_agents_to_their_leads(client: TestClient, world: World,
                                                                 settings: Settings) -> None:
    path = f"/brokers/{world.a.broker_id}/leads/{world.leads.ana}/assignment"
    agent2 = world.users["agent2_a"].user_id
    assert client.put(path, json={"user_id": agent2}, headers=bearer(world, "agent_a")).status_code == 403
    foreign = client.put(path, json={"user_id": world.users["admin_b"].user_id}, headers=bearer(world, "admin_a"))
    assert foreign.status_code == 422
    before = audit_count(settings, world)
    counts_path = f"/brokers/{world.a.broker_id}/inbox/counts"
    unassigned = client.get(counts_path, headers=bearer(world, "admin_a")).json()["assigned"]["unassigned"]
    given = client.put(path, json={"user_id": agent2}, headers=bearer(world, "admin_a"))
    assert given.status_code == 200 and given.json()["assigned"]["display_name"] == "Agente Dos"
    assert inbox_ids(client, world, "agent2_a") == [world.leads.ana]
    # The counts are kept a few seconds, but a write forgets them: the inbox never contradicts what was just done.
    assert client.get(counts_path, headers=bearer(world, "admin_a")).json()["assigned"]["unassigned"] == unassigned - 1
    [entry] = client.get(f"/brokers/{world.a.broker_id}/audit", params={"lead_id": world.leads.ana, "limit": 1},
                         headers=bearer(world, "agent2_a")).json()
    assert (entry["action"], entry["before"], entry["after"]) == ("lead.assign", {"assigned_user_id": None},
                                                                  {"assigned_user_id": agent2})
    assert client.put(path, json={"user_id": None}, headers=bearer(world, "admin_a")).json()["assigned"] is None
    assert audit_count(settings, world) == before + 2
    assert inbox_ids(client, world, "agent2_a") == []


def test_a_person_moves_a_lead_forward_back_and_to_lost_with_a_reason(client: TestClient, world: World,
                                                                      settings: Settings) -> None:
    path = f"/brokers/{world.a.broker_id}/leads/{world.leads.pedro}/stage"
    headers = bearer(world, "admin_a")
    [(start,)] = rows(settings, "SELECT stage FROM leadflow.lead_stages WHERE lead_id = %s", world.leads.pedro)
    audited = audit_count(settings, world)
    forward = client.post(path, json={"stage": "agendado", "reason": "visita el sábado"}, headers=headers)
    assert forward.status_code == 200, forward.text
    assert (forward.json()["from_stage"], forward.json()["direction"]) == (start, "forward")
    assert client.post(path, json={"stage": "agendado"}, headers=headers).status_code == 409
    back = client.post(path, json={"stage": "perfilamiento"}, headers=headers).json()
    assert (back["direction"], back["reason"]) == ("back", "moved by hand")
    assert client.post(path, json={"stage": "perdido"}, headers=headers).status_code == 422
    assert client.post(path, json={"stage": "perdido", "reason": "  "}, headers=headers).status_code == 422
    assert client.post(path, json={"stage": "no_such_stage"}, headers=headers).status_code == 422
    lost = client.post(path, json={"stage": "perdido", "reason": "compró con otra corredora"}, headers=headers)
    assert lost.status_code == 200
    events = rows(settings, """SELECT e.from_stage, e.to_stage, e.automatic, u.email, e.reason
                               FROM leadflow.stage_events e LEFT JOIN leadflow.users u ON u.user_id = e.moved_by
                               WHERE e.lead_id = %s AND NOT e.automatic ORDER BY e.occurred_at, e.sequence""",
                  world.leads.pedro)
    admin = world.users["admin_a"].email
    assert events == [(start, "agendado", False, admin, "visita el sábado"),
                      ("agendado", "perfilamiento", False, admin, "moved by hand"),
                      ("perfilamiento", "perdido", False, admin, "compró con otra corredora")]
    assert rows(settings, "SELECT stage FROM leadflow.lead_stages WHERE lead_id = %s", world.leads.pedro) == \
        [("perdido",)]
    assert audit_count(settings, world) == audited + 3  # the refused moves wrote nothing
    [(before, after)] = rows(settings, """SELECT before, after FROM leadflow.audit_log WHERE lead_id = %s
                                          ORDER BY audit_id DESC LIMIT 1""", world.leads.pedro)
    assert (before["stage"], after["stage"], after["reason"]) == ("perfilamiento", "perdido",
                                                                  "compró con otra corredora")
    # The automatic stages never take a lost lead out again, even when it writes.
    update_stages(settings.database_url)
    assert rows(settings, "SELECT stage FROM leadflow.lead_stages WHERE lead_id = %s", world.leads.pedro) == \
        [("perdido",)]
    board = {c["code"]: c for c in client.get(f"/brokers/{world.a.broker_id}/board", headers=headers).json()}
    assert world.leads.pedro in [card["lead_id"] for card in board["perdido"]["cards"]]


def test_another_brokers_ids_are_refused_and_nothing_is_written(client: TestClient, world: World,
                                                                settings: Settings) -> None:
    before = audit_count(settings, world)
    notes_before = rows(settings, "SELECT count(*) FROM leadflow.lead_notes")[0][0]
    b_lead, a_lead = world.b_lead, world.leads.ana
    writes = [("post", "notes", {"body": "hola"}), ("post", "tags", {"tag": "x"}),
              ("put", "assignment", {"user_id": None}), ("post", "stage", {"stage": "ganado"})]
    for method, what, body in writes:
        # Broker B's id in the path: 403 before anything is read.
        answer = client.request(method.upper(), f"/brokers/{world.b.broker_id}/leads/{b_lead}/{what}", json=body,
                                headers=bearer(world, "admin_a"))
        assert answer.status_code == 403, (what, answer.text)
        # Broker B's lead under broker A's id: not found.
        answer = client.request(method.upper(), f"/brokers/{world.a.broker_id}/leads/{b_lead}/{what}", json=body,
                                headers=bearer(world, "admin_a"))
        assert answer.status_code == 404, (what, answer.text)
        # An agent on a lead of its broker that is not assigned to it: not found (assignment: 403 for agents).
        answer = client.request(method.upper(), f"/brokers/{world.a.broker_id}/leads/{a_lead}/{what}", json=body,
                                headers=bearer(world, "agent_a"))
        assert answer.status_code == (403 if what == "assignment" else 404), (what, answer.text)
    for path in ("inbox", "inbox/counts", "board", "people", "audit", f"leads/{b_lead}/workspace"):
        assert client.get(f"/brokers/{world.b.broker_id}/{path}", headers=bearer(world, "admin_a")).status_code == 403
    assert client.get(f"/brokers/{world.a.broker_id}/leads/{b_lead}/workspace",
                      headers=bearer(world, "admin_a")).status_code == 404
    assert audit_count(settings, world) == before
    assert rows(settings, "SELECT count(*) FROM leadflow.lead_notes")[0][0] == notes_before
    assert client.get(f"/brokers/{world.a.broker_id}/inbox").status_code == 401


def test_row_security_holds_for_writes_whatever_the_sql_asks(settings: Settings, world: World) -> None:
    pool = ScopedPool(settings.database_url, 1)
    agent = Principal(world.users["agent_a"].user_id, "x", "AGENT", world.a.broker_id)
    admin = Principal(world.users["admin_a"].user_id, "x", "ADMIN", world.a.broker_id)
    attempts = [
        # An agent writing on a lead not assigned to it.
        (agent, "INSERT INTO leadflow.lead_notes (broker_id, lead_id, body) VALUES (%s, %s, 'x')",
         (world.a.broker_id, world.leads.ana)),
        # An agent taking a lead it cannot see, or giving its own away.
        (agent, "UPDATE leadflow.leads SET assigned_user_id = %s WHERE lead_id = %s",
         (world.users["agent2_a"].user_id, world.leads.camila)),
        # An admin writing on another broker's lead, under either broker's id.
        (admin, "INSERT INTO leadflow.lead_tags (broker_id, lead_id, tag) VALUES (%s, %s, 'x')",
         (world.a.broker_id, world.b_lead)),
        (admin, "INSERT INTO leadflow.lead_tags (broker_id, lead_id, tag) VALUES (%s, %s, 'x')",
         (world.b.broker_id, world.b_lead)),
        # Signing a note, a stage move or an audit entry with someone else's name.
        (admin, "INSERT INTO leadflow.lead_notes (broker_id, lead_id, body, author_id) VALUES (%s, %s, 'x', %s)",
         (world.a.broker_id, world.leads.ana, world.users["agent_a"].user_id)),
        (admin, """INSERT INTO leadflow.stage_events (broker_id, lead_id, to_stage, occurred_at, reason,
                                                      automatic, sequence, moved_by)
                   VALUES (%s, %s, 'ganado', now(), 'x', false, 0, %s)""",
         (world.a.broker_id, world.leads.ana, world.users["agent_a"].user_id)),
        (admin, "INSERT INTO leadflow.audit_log (broker_id, action, user_id) VALUES (%s, 'x', %s)",
         (world.a.broker_id, world.users["agent_a"].user_id)),
        # Claiming to be someone else through the settings 0010's scope read.
        (admin, "SELECT set_config('leadflow.user_id', %s, true); "
                "INSERT INTO leadflow.lead_notes (broker_id, lead_id, body) VALUES (%s, %s, 'x')",
         (str(world.users["agent_a"].user_id), world.a.broker_id, world.leads.ana)),
        # Rewriting history.
        (admin, "DELETE FROM leadflow.audit_log WHERE broker_id = %s", (world.a.broker_id,)),
        (admin, "UPDATE leadflow.leads SET display_name = 'x' WHERE lead_id = %s", (world.leads.ana,)),
        # Assigning to a person of another broker.
        (admin, "UPDATE leadflow.leads SET assigned_user_id = %s WHERE lead_id = %s",
         (world.users["admin_b"].user_id, world.leads.ana)),
    ]
    try:
        for who, sql, params in attempts:
            refused = pytest.raises(psycopg2.errors.InsufficientPrivilege)
            with refused, write_cursor(pool, who, world.a.broker_id) as cur:
                cur.execute(sql, params)
                if cur.rowcount == 0:  # an UPDATE row security filtered out: as refused as an error
                    raise psycopg2.errors.InsufficientPrivilege("no row visible")
        # What the agent may do, it can: a note on its own lead.
        with write_cursor(pool, agent, world.a.broker_id) as cur:
            cur.execute("INSERT INTO leadflow.lead_notes (broker_id, lead_id, body) VALUES (%s, %s, 'mine') "
                        "RETURNING author_id", (world.a.broker_id, world.leads.tomas))
            assert cur.fetchone() == (world.users["agent_a"].user_id,)
    finally:
        pool.close()


# --- pages -----------------------------------------------------------------------------------------------

def session(client: TestClient, world: World, who: str) -> tuple[dict[str, str], str]:
    token = issue_token(world.tokens, world.users[who])
    return {COOKIE: token}, csrf.token_for(world.tokens.secret, token)


def test_pages_escape_html_and_every_form_needs_its_csrf_token(client: TestClient, world: World,
                                                               settings: Settings) -> None:
    cookies, token = session(client, world, "agent_a")
    client.cookies.update(cookies)
    try:
        inbox = client.get(f"/dashboard/brokers/{world.a.broker_id}/inbox", params={"assigned": "me"})
        assert inbox.status_code == 200
        assert SCRIPT not in inbox.text and "&lt;script&gt;" in inbox.text and "&lt;b&gt;Mal&lt;/b&gt;" in inbox.text
        assert 'name="csrf"' not in inbox.text  # an agent gets no assignment forms
        page = client.get(f"/dashboard/brokers/{world.a.broker_id}/leads/{world.leads.mallory}")
        assert page.status_code == 200 and SCRIPT not in page.text and "&lt;script&gt;" in page.text
        assert 'id="reply-and-take-over"' in page.text
        base = f"/dashboard/brokers/{world.a.broker_id}/leads/{world.leads.mallory}"
        before = audit_count(settings, world)
        for path, form in (("notes", {"body": "sin token"}), ("tags", {"tag": "x"}), ("stage", {"stage": "ganado"}),
                           ("tags/remove", {"tag": "x"})):
            for bad in ({}, {"csrf": "0" * 64}, {"csrf": csrf.token_for(world.tokens.secret, "another-session")}):
                answer = client.post(f"{base}/{path}", data={**form, **bad}, follow_redirects=False)
                assert answer.status_code == 403, (path, bad)
        assert audit_count(settings, world) == before
        ok = client.post(f"{base}/notes", data={"body": f"nota {SCRIPT}", "csrf": token}, follow_redirects=False)
        assert ok.status_code == 303 and ok.headers["location"] == base
        shown = client.get(base)
        assert f"nota {SCRIPT}" not in shown.text and "nota &lt;script&gt;" in shown.text
        lost = client.post(f"{base}/stage", data={"stage": "perdido", "csrf": token}, follow_redirects=False)
        assert lost.headers["location"] == f"{base}?error=lost_reason"
        assert "escribe el motivo" in client.get(lost.headers["location"]).text
        foreign = client.post(f"/dashboard/brokers/{world.a.broker_id}/leads/{world.leads.ana}/notes",
                              data={"body": "x", "csrf": token}, follow_redirects=False)
        assert foreign.status_code == 404
        assert client.get(f"/dashboard/brokers/{world.b.broker_id}/inbox").status_code == 403
        assert world.b.name not in client.get(f"/dashboard/brokers/{world.b.broker_id}/board").text
    finally:
        client.cookies.clear()
    assert client.get(f"/dashboard/brokers/{world.a.broker_id}/inbox", follow_redirects=False).status_code == 303


def test_an_admin_assigns_from_the_inbox_and_moves_cards_on_the_board(client: TestClient, world: World,
                                                                      settings: Settings) -> None:
    cookies, token = session(client, world, "admin_a")
    client.cookies.update(cookies)
    try:
        inbox = client.get(f"/dashboard/brokers/{world.a.broker_id}/inbox")
        assert inbox.status_code == 200 and "Agente Dos" in inbox.text
        assigned = client.post(f"/dashboard/brokers/{world.a.broker_id}/leads/{world.leads.ana}/assignment",
                               data={"user_id": str(world.users["agent_a"].user_id), "csrf": token, "back": "inbox"},
                               follow_redirects=False)
        assert assigned.headers["location"] == f"/dashboard/brokers/{world.a.broker_id}/inbox"
        assert rows(settings, "SELECT assigned_user_id FROM leadflow.leads WHERE lead_id = %s", world.leads.ana) == \
            [(world.users["agent_a"].user_id,)]
        board = client.get(f"/dashboard/brokers/{world.a.broker_id}/board")
        assert board.status_code == 200 and f'id="move-{world.leads.ana}"' in board.text
        moved = client.post(f"/dashboard/brokers/{world.a.broker_id}/leads/{world.leads.ana}/stage",
                            data={"stage": "ganado", "csrf": token, "back": "board"}, follow_redirects=False)
        assert moved.headers["location"] == f"/dashboard/brokers/{world.a.broker_id}/board"
        assert rows(settings, "SELECT stage FROM leadflow.lead_stages WHERE lead_id = %s", world.leads.ana) == \
            [("ganado",)]
    finally:
        client.cookies.clear()
        with transaction(settings.database_url) as conn, conn.cursor() as cur:
            cur.execute("UPDATE leadflow.leads SET assigned_user_id = NULL WHERE lead_id = %s", (world.leads.ana,))


# --- live ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(settings: Settings, world: World) -> Iterator[str]:
    # Its own app: an app's lifespan (its pool) is entered once, and the TestClient has this module's.
    with BackgroundServer(create_app(settings.database_url, world.tokens)) as running:
        yield running.url


def test_a_new_message_arrives_on_the_live_stream(server: str, world: World, settings: Settings) -> None:
    url = f"{server}/brokers/{world.a.broker_id}/leads/{world.leads.camila}/events"
    assert httpx.get(f"{server}/brokers/{world.a.broker_id}/leads/{world.leads.ana}/events",
                     headers=bearer(world, "agent_a")).status_code == 404
    assert httpx.get(url).status_code == 401
    received: list[dict[str, Any]] = []
    with httpx.stream("GET", url, headers=bearer(world, "agent_a"), timeout=60) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == "retry: 2000"
        deliver(settings, world.topics,
                message(world.a, "whatsapp", "wa-live-1", CAMILA, f"¿Puedo el sábado? {SCRIPT}", 60))
        deadline = time.monotonic() + 30
        event: dict[str, str] = {}
        for line in lines:
            if line.startswith(("event:", "id:", "data:")):
                key, _, value = line.partition(": ")
                event[key.rstrip(":")] = value
            elif not line and "data" in event:
                received.append({**json.loads(event["data"]), "event": event["event"], "id": event["id"]})
                break
            assert time.monotonic() < deadline, "no event"
    [item] = received
    assert (item["event"], item["author"], item["body"]) == ("message", "lead", f"¿Puedo el sábado? {SCRIPT}")
    assert int(item["id"]) == item["item_id"]
    assert SCRIPT not in item["html"] and "&lt;script&gt;" in item["html"]
    assert re.search(rf'id="message-{item["item_id"]}"', item["html"])


# --- migration -------------------------------------------------------------------------------------------

def test_the_migration_goes_down_and_up_again(pg_admin_url: str) -> None:
    name = f"leadflow_ws_{uuid.uuid4().hex[:8]}"
    embedded_postgres.create_database(pg_admin_url, name)
    url = with_database(pg_admin_url, name)
    try:
        upgrade(url, "0015_workspace")
        downgrade(url, "0013_agent_replies")
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('leadflow.audit_log'), to_regclass('leadflow.lead_notes')")
            assert cur.fetchone() == (None, None)
        conn.close()
        upgrade(url, "0015_workspace")
        upgrade(url)  # and the other branch (0014) after it
    finally:
        embedded_postgres.drop_database(pg_admin_url, name)
