"""The lead page shows where each qualification fact came from, on real PostgreSQL, Kafka and the landing and
leads jobs: the JSON lead route and the page put each fact next to the message that stated it."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from leadflow.brokers import Broker, add_broker
from leadflow.config import Settings, Topics
from leadflow.events import Contact
from leadflow.kafka import ensure_topics
from leadflow.users import User, add_user
from reports_api.app import create_app
from reports_api.dashboard import COOKIE
from reports_api.security import TokenSettings, issue_token
from tests.test_leads_pipeline import rows
from tests.test_workspace import PASSWORD, deliver, message

LEAD = Contact(channel_user_id="56977777777", display_name="Valentina", phone_e164="+56977777777")
BEDROOMS = "Hola! busco depto de 3 dormitorios en Ñuñoa"
BUDGET = "Mi presupuesto es 4.500 UF <b>máximo</b>, tengo crédito preaprobado"
QUESTION = "¿Para cuándo lo necesitas?"


@dataclass(frozen=True)
class World:
    broker: Broker
    admin: User
    lead_id: int
    message_ids: dict[str, int]  # the lead's messages by text
    tokens: TokenSettings


@pytest.fixture(scope="module")
def world(settings: Settings) -> World:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
        tag = uuid.uuid4().hex[:8]
        topics = Topics(f"t{tag}")
        ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_partitions)
        broker = add_broker(settings.database_url, f"prov-{tag}", name="Propiedades Provenance", country="CL",
                            timezone="America/Santiago")
        # Bedrooms and budget in two messages; then a bare "ya" answering the bot's question about when.
        deliver(settings, topics,
                message(broker, "whatsapp", "wa-p1", LEAD, BEDROOMS, 0),
                message(broker, "whatsapp", "wa-p2", LEAD, "¡Hola Valentina! ¿Cuál es tu presupuesto?", 1,
                        direction="outbound", raw={"leadflow": {"author": "bot", "asks": "budget"}}),
                message(broker, "whatsapp", "wa-p3", LEAD, BUDGET, 2),
                message(broker, "whatsapp", "wa-p4", LEAD, QUESTION, 3, direction="outbound",
                        raw={"leadflow": {"author": "bot", "asks": "timeline"}}),
                message(broker, "whatsapp", "wa-p5", LEAD, "ya", 4))
        admin = add_user(settings.database_url, f"admin-{tag}@prov.test", PASSWORD, role="ADMIN",
                         broker_slug=broker.slug, display_name="Admin Prov")
    [(lead_id,)] = rows(settings, "SELECT lead_id FROM leadflow.leads WHERE broker_id = %s", broker.broker_id)
    ids = dict(rows(settings, """SELECT m.body, m.message_id FROM leadflow.raw_messages m
                                 WHERE m.broker_id = %s AND m.direction = 'inbound'""", broker.broker_id))
    return World(broker, admin, int(lead_id), {str(k): int(v) for k, v in ids.items()}, TokenSettings.ephemeral())


@pytest.fixture(scope="module")
def client(settings: Settings, world: World) -> Iterator[TestClient]:
    with TestClient(create_app(settings.database_url, world.tokens)) as test_client:
        yield test_client


def test_the_lead_route_gives_each_fact_the_message_that_stated_it(client: TestClient, world: World) -> None:
    token = issue_token(world.tokens, world.admin)
    answer = client.get(f"/brokers/{world.broker.broker_id}/leads/{world.lead_id}/workspace",
                        headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    lead = answer.json()
    assert lead["qualification"]["bedrooms_min"] == 3 and lead["qualification"]["budget_max"] == 4500
    sources = {s["field"]: s for s in lead["provenance"]}
    bedrooms, budget, timeline = sources["bedrooms_min"], sources["budget"], sources["timeline_months"]
    assert (bedrooms["kind"], bedrooms["message_id"]) == ("message", world.message_ids[BEDROOMS])
    assert bedrooms["excerpt"] == "busco depto de 3 dormitorios en Ñuñoa"
    assert (budget["kind"], budget["message_id"], budget["value"]) == ("message", world.message_ids[BUDGET], "4500 UF")
    assert budget["excerpt"] == "Mi presupuesto es 4.500 UF <b>máximo</b>"
    assert budget["channel"] == "whatsapp" and budget["at"] is not None and budget["model"] is None
    assert (timeline["kind"], timeline["message_id"], timeline["question"]) == ("answer", world.message_ids["ya"],
                                                                                QUESTION)
    # Every source is one of the lead's messages on the page.
    shown = {i["item_id"] for i in lead["conversation"] if i["author"] == "lead"}
    assert {s["message_id"] for s in lead["provenance"]} <= shown


def test_the_lead_page_shows_each_fact_next_to_its_message_escaped(client: TestClient, world: World) -> None:
    client.cookies.update({COOKIE: issue_token(world.tokens, world.admin)})
    try:
        page = client.get(f"/dashboard/brokers/{world.broker.broker_id}/leads/{world.lead_id}")
    finally:
        client.cookies.clear()
    assert page.status_code == 200
    lines = {m.group(1): m.group(0) for m in re.finditer(r'<dd class="source muted" data-field="(\w+)".*?</dd>',
                                                          page.text, re.S)}
    bedrooms, budget, timeline = lines["bedrooms_min"], lines["budget"], lines["timeline_months"]
    assert f'href="#message-{world.message_ids[BEDROOMS]}"' in bedrooms and "3 dormitorios en Ñuñoa" in bedrooms
    assert f'href="#message-{world.message_ids[BUDGET]}"' in budget
    assert "4.500 UF &lt;b&gt;máximo&lt;/b&gt;" in budget and "<b>máximo" not in page.text  # never |safe
    assert html.escape(QUESTION, quote=False) in timeline and "«ya»" in timeline
    # The anchors lead somewhere: the messages are on the page.
    assert f'id="message-{world.message_ids[BEDROOMS]}"' in page.text
    assert f'id="message-{world.message_ids[BUDGET]}"' in page.text
