"""A person answers a lead from the workspace (issue 13, "answer and take over"), on real PostgreSQL and Kafka,
the providers faked on 127.0.0.1: the reply goes out through the lead agent's senders, once per key, inside
WhatsApp's window or as a template outside it, takes the lead over, is audited, and lands as a person's
outbound message; another broker's or another agent's lead is refused with nothing written."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest
from fastapi.testclient import TestClient

from leadflow.brokers import Broker, add_broker, default_secret_env
from leadflow.config import Settings, Topics, with_database
from leadflow.db.migrate import downgrade, upgrade
from leadflow.events import ChannelMessage, Contact
from leadflow.kafka import ensure_topics, make_producer, produce_all
from leadflow.outbound.senders import TelegramSender, WhatsAppSender
from leadflow.services import postgres as embedded_postgres
from leadflow.services.ports import free_port
from leadflow.users import User, add_user, assign_leads
from reports_api.app import create_app
from reports_api.dashboard import COOKIE
from reports_api.security import TokenSettings, issue_token
from reports_api.workspace import csrf
from reports_api.workspace.publish import MessagePublisher
from tests.fake_channels import FakeChannels, Reply
from tests.test_leads_pipeline import rows, run

PASSWORD = "una-clave-larga-de-prueba"

FRESH = Contact(channel_user_id="56933333333", display_name="Josefa", phone_e164="+56933333333")
OLD = Contact(channel_user_id="56944444444", display_name="Ignacio", phone_e164="+56944444444")
RETRY = Contact(channel_user_id="56966666666", display_name="Rocío", phone_e164="+56966666666")
QUIT = Contact(channel_user_id="56977777777", display_name="Baja", phone_e164="+56977777777")
TG = Contact(channel_user_id="8001", display_name="Matías")
FORM = Contact(channel_user_id="form@example.cl", display_name="Form", email="form@example.cl")


@dataclass(frozen=True)
class World:
    a: Broker
    b: Broker
    users: dict[str, User]
    leads: dict[str, int]
    b_lead: int
    topics: Topics
    tokens: TokenSettings
    fake: FakeChannels


def _message(broker: Broker, channel: str, provider_id: str, contact: Contact, text: str, sent_at: datetime,
             **fields: Any) -> tuple[bytes, bytes]:
    event = ChannelMessage.build(broker_id=broker.broker_id, broker_slug=broker.slug, channel=channel,  # type: ignore[arg-type]
                                 provider_message_id=provider_id, contact=contact, text=text, sent_at=sent_at,
                                 **fields)
    return event.kafka_key(), event.model_dump_json().encode()


@pytest.fixture(scope="module")
def world(settings: Settings) -> Iterator[World]:
    tag = uuid.uuid4().hex[:8]
    topics = Topics(f"t{tag}")
    ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_partitions)
    url = settings.database_url
    a = add_broker(url, f"ans-a-{tag}", name="Andes", country="CL", timezone="America/Santiago")
    b = add_broker(url, f"ans-b-{tag}", name="Bajío", country="MX", timezone="America/Mexico_City")
    now = datetime.now(UTC)
    produce_all(make_producer(settings.kafka_bootstrap_servers), topics.messages, [
        _message(a, "whatsapp", "wa-f1", FRESH, "Hola, busco depto en Ñuñoa", now - timedelta(minutes=5)),
        _message(a, "whatsapp", "wa-o1", OLD, "Hola, busco casa", now - timedelta(days=2)),
        _message(a, "whatsapp", "wa-r1", RETRY, "¿Tienen algo en Providencia?", now - timedelta(minutes=3)),
        _message(a, "whatsapp", "wa-q1", QUIT, "hola", now - timedelta(minutes=9)),
        _message(a, "whatsapp", "wa-q2", QUIT, "no me escriban más", now - timedelta(minutes=8)),
        _message(a, "telegram", "tg-1", TG, "hola, quiero info", now - timedelta(minutes=2),
                 conversation_id="8001"),
        _message(a, "form", "form-1", FORM, "Busco casa en La Reina", now - timedelta(minutes=1)),
        _message(b, "whatsapp", "wa-b1", Contact(channel_user_id="5215511111111", phone_e164="+525511111111"),
                 "Busco depto en Polanco", now - timedelta(minutes=1)),
    ])
    run(settings, topics)

    def lead(broker: Broker, name: str) -> int:
        [(lead_id,)] = rows(settings, "SELECT lead_id FROM leadflow.leads WHERE broker_id = %s AND display_name = %s",
                            broker.broker_id, name)
        return int(lead_id)

    leads = {key: lead(a, c.display_name or "") for key, c in
             {"fresh": FRESH, "old": OLD, "retry": RETRY, "quit": QUIT, "tg": TG, "form": FORM}.items()}
    [(b_lead,)] = rows(settings, "SELECT lead_id FROM leadflow.leads WHERE broker_id = %s", b.broker_id)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
        users = {
            "admin_a": add_user(url, f"admin-{tag}@andes.test", PASSWORD, role="ADMIN", broker_slug=a.slug),
            "agent_a": add_user(url, f"agente-{tag}@andes.test", PASSWORD, role="AGENT", broker_slug=a.slug),
            "admin_b": add_user(url, f"admin-{tag}@bajio.test", PASSWORD, role="ADMIN", broker_slug=b.slug),
        }
    assign_leads(url, users["agent_a"].email, [leads["tg"]])
    fake = FakeChannels().start()
    with pytest.MonkeyPatch.context() as env:
        for broker in (a, b):
            env.setenv(default_secret_env(broker.slug, "telegram_bot_token"), "123:tg-token-not-a-secret")
            env.setenv(default_secret_env(broker.slug, "whatsapp_access_token"), "wa-token-not-a-secret")
            env.setenv(default_secret_env(broker.slug, "whatsapp_phone_number_id"), "1098765")
        try:
            yield World(a, b, users, leads, int(b_lead), topics, TokenSettings.ephemeral(), fake)
        finally:
            fake.stop()


@pytest.fixture(scope="module")
def client(settings: Settings, world: World) -> Iterator[TestClient]:
    app = create_app(settings.database_url, world.tokens,
                     senders={"telegram": TelegramSender(world.fake.url), "whatsapp": WhatsAppSender(world.fake.url)},
                     publisher=MessagePublisher(settings.kafka_bootstrap_servers, world.topics.messages))
    with TestClient(app) as test_client:
        yield test_client


def bearer(world: World, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(world.tokens, world.users[who])}"}


def reply(client: TestClient, world: World, lead: int, who: str = "admin_a", broker: Broker | None = None,
          **body: Any) -> Any:
    broker_id = (broker or world.a).broker_id
    return client.post(f"/brokers/{broker_id}/leads/{lead}/reply", headers=bearer(world, who),
                       json={"idempotency_key": uuid.uuid4().hex, **body})


def handler_of(settings: Settings, lead: int) -> tuple[str, int | None] | None:
    found = rows(settings, """SELECT handler, user_id FROM leadflow.lead_handlers WHERE lead_id = %s
                              ORDER BY switch_id DESC LIMIT 1""", lead)
    return (found[0][0], found[0][1]) if found else None


def sent_to(world: World, provider: str, to: str) -> list[dict[str, Any]]:
    key = "to" if provider == "whatsapp" else "chat_id"
    return [body for body in world.fake.sent(provider) if str(body.get(key)) == to]


def written(settings: Settings, lead: int) -> tuple[int, int, int]:
    """person_replies, lead_handlers and audit rows of the lead."""
    return (int(rows(settings, "SELECT count(*) FROM leadflow.person_replies WHERE lead_id = %s", lead)[0][0]),
            int(rows(settings, "SELECT count(*) FROM leadflow.lead_handlers WHERE lead_id = %s", lead)[0][0]),
            int(rows(settings, "SELECT count(*) FROM leadflow.audit_log WHERE lead_id = %s", lead)[0][0]))


def test_a_person_answers_inside_the_window_takes_the_lead_over_and_the_reply_lands_as_theirs(
        settings: Settings, world: World, client: TestClient) -> None:
    lead = world.leads["fresh"]
    answer = reply(client, world, lead, text="Hola Josefa, te llamo en 5 minutos")
    assert answer.status_code == 200, answer.text
    sent = answer.json()
    assert sent["took_over"] and sent["produced"] and not sent["repeated"]
    [body] = sent_to(world, "whatsapp", "56933333333")
    assert body["type"] == "text" and body["text"]["body"] == "Hola Josefa, te llamo en 5 minutos"
    assert handler_of(settings, lead) == ("person", world.users["admin_a"].user_id)
    actions = [r[0] for r in rows(settings, """SELECT action FROM leadflow.audit_log WHERE lead_id = %s
                                              ORDER BY audit_id""", lead)]
    assert actions == ["lead.handler", "lead.reply"]
    # On the topic with the lead's contact: the landing stores it, resolved to the same lead, as a person's turn.
    run(settings, world.topics)
    [(direction, author, user_id, landed_lead)] = rows(settings, """
        SELECT m.direction, m.payload->'leadflow'->>'author', m.payload->'leadflow'->>'user_id',
               ml.lead_id
        FROM leadflow.raw_messages m JOIN leadflow.message_leads ml USING (message_id)
        WHERE m.broker_id = %s AND m.provider_message_id = %s""", world.a.broker_id, f"person:{sent['reply_id']}")
    assert (direction, author, int(user_id), landed_lead) == ("outbound", "person", world.users["admin_a"].user_id,
                                                               lead)
    # The lead page shows it as the person's.
    page = client.get(f"/brokers/{world.a.broker_id}/leads/{lead}/workspace", headers=bearer(world, "admin_a")).json()
    assert page["handler"]["handler"] == "person"
    assert any(i.get("author") == "person" and i.get("body") == "Hola Josefa, te llamo en 5 minutos"
               for i in page["conversation"])


def test_the_same_key_twice_sends_once(settings: Settings, world: World, client: TestClient) -> None:
    lead = world.leads["fresh"]
    before = len(sent_to(world, "whatsapp", "56933333333"))
    body = {"text": "¿Te acomoda el jueves?", "idempotency_key": uuid.uuid4().hex}
    url = f"/brokers/{world.a.broker_id}/leads/{lead}/reply"
    first = client.post(url, headers=bearer(world, "admin_a"), json=body)
    second = client.post(url, headers=bearer(world, "admin_a"), json=body)
    assert first.status_code == second.status_code == 200, second.text
    assert second.json()["repeated"] and second.json()["reply_id"] == first.json()["reply_id"]
    assert len(sent_to(world, "whatsapp", "56933333333")) == before + 1
    assert rows(settings, "SELECT count(*) FROM leadflow.person_replies WHERE idempotency_key = %s",
                body["idempotency_key"]) == [(1,)]


def test_outside_the_window_only_a_template_goes(settings: Settings, world: World, client: TestClient) -> None:
    lead = world.leads["old"]
    refused = reply(client, world, lead, text="Hola Ignacio, ¿sigues buscando?")
    assert refused.status_code == 409
    assert "24 hours" in refused.json()["detail"] and "template" in refused.json()["detail"]
    assert sent_to(world, "whatsapp", "56944444444") == []
    assert written(settings, lead) == (0, 0, 0)
    answer = reply(client, world, lead, template={"name": "seguimiento", "language": "es",
                                                  "parameters": ["Ignacio"]})
    assert answer.status_code == 200, answer.text
    [body] = sent_to(world, "whatsapp", "56944444444")
    assert body["type"] == "template" and body["template"]["name"] == "seguimiento"
    assert body["template"]["components"][0]["parameters"] == [{"type": "text", "text": "Ignacio"}]
    assert handler_of(settings, lead) == ("person", world.users["admin_a"].user_id)


def test_an_agent_answers_its_telegram_lead(settings: Settings, world: World, client: TestClient) -> None:
    lead = world.leads["tg"]
    answer = reply(client, world, lead, who="agent_a", text="Hola Matías, soy tu agente")
    assert answer.status_code == 200, answer.text
    [body] = sent_to(world, "telegram", "8001")
    assert body["text"] == "Hola Matías, soy tu agente"
    assert handler_of(settings, lead) == ("person", world.users["agent_a"].user_id)


def test_a_provider_failure_sends_nothing_and_the_same_key_retries_once(settings: Settings, world: World,
                                                                        client: TestClient) -> None:
    lead = world.leads["retry"]
    world.fake.script("whatsapp", Reply(500), Reply(500))  # the sender retries a 5xx once itself
    body = {"text": "Sí, tenemos dos en Providencia", "idempotency_key": uuid.uuid4().hex}
    url = f"/brokers/{world.a.broker_id}/leads/{lead}/reply"
    failed = client.post(url, headers=bearer(world, "admin_a"), json=body)
    assert failed.status_code == 502 and "not sent" in failed.json()["detail"]
    assert sent_to(world, "whatsapp", "56966666666") == []
    assert rows(settings, "SELECT status, provider_message_id FROM leadflow.person_replies WHERE lead_id = %s",
                lead) == [("failed", None)]
    assert handler_of(settings, lead) is None
    retried = client.post(url, headers=bearer(world, "admin_a"), json=body)
    assert retried.status_code == 200, retried.text
    again = client.post(url, headers=bearer(world, "admin_a"), json=body)
    assert again.json()["repeated"]
    assert len(sent_to(world, "whatsapp", "56966666666")) == 1
    assert rows(settings, "SELECT status, attempts FROM leadflow.person_replies WHERE lead_id = %s",
                lead) == [("sent", 2)]


def test_another_brokers_lead_is_refused_and_nothing_is_written(settings: Settings, world: World,
                                                                 client: TestClient) -> None:
    wrong_broker = reply(client, world, world.b_lead, broker=world.b, text="hola")
    assert wrong_broker.status_code == 403
    wrong_lead = reply(client, world, world.b_lead, text="hola")
    assert wrong_lead.status_code == 404
    handover = client.post(f"/brokers/{world.a.broker_id}/leads/{world.b_lead}/handler",
                           headers=bearer(world, "admin_a"), json={"handler": "person", "reason": "mío"})
    assert handover.status_code == 404
    assert written(settings, world.b_lead) == (0, 0, 0)
    assert sent_to(world, "whatsapp", "5215511111111") == []


def test_an_agent_cannot_answer_a_lead_not_assigned_to_it(settings: Settings, world: World,
                                                          client: TestClient) -> None:
    lead = world.leads["form"]  # not assigned to agent_a (and with no chat)
    before = written(settings, lead)
    refused = reply(client, world, lead, who="agent_a", text="hola")
    assert refused.status_code == 404
    taken = client.post(f"/brokers/{world.a.broker_id}/leads/{lead}/handler", headers=bearer(world, "agent_a"),
                        json={"handler": "person", "reason": "lo tomo"})
    assert taken.status_code == 404
    assert written(settings, lead) == before


def test_no_chat_channel_or_an_opted_out_lead_is_refused(settings: Settings, world: World, client: TestClient) -> None:
    no_chat = reply(client, world, world.leads["form"], text="hola")
    assert no_chat.status_code == 409 and "no Telegram or WhatsApp chat" in no_chat.json()["detail"]
    opted_out = reply(client, world, world.leads["quit"], text="hola de nuevo")
    assert opted_out.status_code == 409 and "opted out" in opted_out.json()["detail"]
    assert sent_to(world, "whatsapp", "56977777777") == []
    assert written(settings, world.leads["quit"]) == (0, 0, 0)


def test_take_over_and_hand_back_to_the_bot(settings: Settings, world: World, client: TestClient) -> None:
    lead = world.leads["quit"]
    url = f"/brokers/{world.a.broker_id}/leads/{lead}/handler"
    taken = client.post(url, headers=bearer(world, "admin_a"), json={"handler": "person", "reason": "la llamo yo"})
    assert taken.status_code == 200 and taken.json()["changed"]
    assert handler_of(settings, lead) == ("person", world.users["admin_a"].user_id)
    back = client.post(url, headers=bearer(world, "admin_a"), json={"handler": "bot", "reason": "vuelve al bot"})
    assert back.status_code == 200 and back.json()["changed"]
    assert handler_of(settings, lead) == ("bot", world.users["admin_a"].user_id)
    again = client.post(url, headers=bearer(world, "admin_a"), json={"handler": "bot", "reason": "otra vez"})
    assert again.status_code == 200 and not again.json()["changed"]
    assert [r[0] for r in rows(settings, """SELECT after->>'handler' FROM leadflow.audit_log
                                            WHERE lead_id = %s AND action = 'lead.handler' ORDER BY audit_id""",
                               lead)] == ["person", "bot"]


def test_the_lead_page_answers_through_its_form_and_says_why_only_templates(settings: Settings, world: World,
                                                                            client: TestClient) -> None:
    token = issue_token(world.tokens, world.users["admin_a"])
    client.cookies.update({COOKIE: token})
    form_token = csrf.token_for(world.tokens.secret, token)
    base = f"/dashboard/brokers/{world.a.broker_id}/leads"
    try:
        fresh = client.get(f"{base}/{world.leads['fresh']}")
        assert 'id="reply-form"' in fresh.text
        match = re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', fresh.text)
        assert match is not None
        before = len(sent_to(world, "whatsapp", "56933333333"))
        form = {"csrf": form_token, "idempotency_key": match.group(1), "text": "Desde la página <b>hola</b>"}
        for _ in range(2):  # a double click
            sent = client.post(f"{base}/{world.leads['fresh']}/reply", data=form, follow_redirects=False)
            assert sent.status_code == 303 and "error" not in sent.headers["location"]
        assert len(sent_to(world, "whatsapp", "56933333333")) == before + 1
        forged = client.post(f"{base}/{world.leads['fresh']}/reply", data={**form, "csrf": "0" * 64,
                                                                            "idempotency_key": uuid.uuid4().hex})
        assert forged.status_code == 403
        assert len(sent_to(world, "whatsapp", "56933333333")) == before + 1

        old = client.get(f"{base}/{world.leads['old']}")
        assert "más de 24 horas" in old.text and 'name="template_name"' in old.text
        assert 'name="text"' not in old.text
        refused = client.post(f"{base}/{world.leads['old']}/reply", follow_redirects=False,
                              data={"csrf": form_token, "idempotency_key": uuid.uuid4().hex, "text": "hola"})
        assert refused.headers["location"].endswith("?error=window")
        assert "solo se puede enviar una plantilla" in client.get(refused.headers["location"]).text

        back = client.post(f"{base}/{world.leads['fresh']}/handler", follow_redirects=False,
                           data={"csrf": form_token, "handler": "bot", "reason": "que siga el bot"})
        assert back.status_code == 303 and "error" not in back.headers["location"]
        assert handler_of(settings, world.leads["fresh"]) == ("bot", world.users["admin_a"].user_id)
        assert "Tomar el lead" in client.get(f"{base}/{world.leads['fresh']}").text
    finally:
        client.cookies.clear()


def test_a_reply_kafka_did_not_take_is_produced_with_the_next_one(settings: Settings, world: World,
                                                                  client: TestClient) -> None:
    lead = world.leads["retry"]
    down = create_app(settings.database_url, world.tokens,
                      senders={"whatsapp": WhatsAppSender(world.fake.url)},
                      publisher=MessagePublisher(f"127.0.0.1:{free_port()}", world.topics.messages))
    with TestClient(down) as offline:
        answer = reply(offline, world, lead, text="Kafka no estaba")
    assert answer.status_code == 200, answer.text
    assert not answer.json()["produced"]  # sent and recorded all the same
    reply_id = answer.json()["reply_id"]
    assert rows(settings, "SELECT status, produced FROM leadflow.person_replies WHERE reply_id = %s",
                reply_id) == [("sent", False)]
    assert reply(client, world, lead, text="y ahora sí").status_code == 200
    assert rows(settings, "SELECT produced FROM leadflow.person_replies WHERE reply_id = %s", reply_id) == [(True,)]
    run(settings, world.topics)
    assert rows(settings, """SELECT body, payload->'leadflow'->>'author' FROM leadflow.raw_messages
                             WHERE broker_id = %s AND provider_message_id = %s""",
                world.a.broker_id, f"person:{reply_id}") == [("Kafka no estaba", "person")]


def test_the_migration_goes_down_and_up_again(pg_admin_url: str) -> None:
    name = f"leadflow_ans_{uuid.uuid4().hex[:8]}"
    embedded_postgres.create_database(pg_admin_url, name)
    url = with_database(pg_admin_url, name)
    try:
        upgrade(url)
        downgrade(url, "0016_merge_hardening_workspace")
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('leadflow.person_replies')")
            assert cur.fetchone() == (None,)
        conn.close()
        upgrade(url)
    finally:
        embedded_postgres.drop_database(pg_admin_url, name)
