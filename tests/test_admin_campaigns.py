"""Segments and campaigns edited through the admin JSON API, against real PostgreSQL and Kafka (issue 14): a segment's
live count is the batch's own ``members``; a campaign's problems are named field by field; its preview renders for
a real lead; a manual campaign applied to leads (another broker's refused, twice enrolls once) is sent by the real
campaign job to exactly those leads through the fake WhatsApp API, and its log says what became of each lead;
paused, nothing new goes out; AGENTs and other brokers' admins are refused. These routes write as the database
owner, so each refusal is tested here."""

from __future__ import annotations

import html
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from leadflow.brokers import Broker, add_broker, default_secret_env
from leadflow.campaigns.segments import members
from leadflow.campaigns.store import load_profiles, target_campaigns
from leadflow.config import Settings, Topics
from leadflow.db.connection import transaction
from leadflow.events import Contact
from leadflow.kafka import ensure_topics
from leadflow.outbound.dispatcher import dispatch
from leadflow.outbound.senders import Sender, WhatsAppSender
from leadflow.users import add_user
from reports_api.app import create_app
from reports_api.security import LoginLimiter, TokenSettings
from tests.fake_channels import FakeChannels
from tests.test_leads_pipeline import T0, rows, run, send

TOKENS = TokenSettings("c" * 40, timedelta(minutes=30))
PASSWORD = "una-clave-larga-de-prueba"
NOON = T0 + timedelta(hours=3)  # 12:00 in Santiago: outside quiet hours, inside the leads' WhatsApp window
Headers = dict[str, str]

CAMILA = Contact(channel_user_id="56911112222", phone_e164="+56911112222", display_name="Camila Rojas")
BRUNO = Contact(channel_user_id="56922223333", phone_e164="+56922223333", display_name="Bruno Díaz")
CARLA = Contact(channel_user_id="56944445555", phone_e164="+56944445555", display_name="Carla Soto")
TOMAS = Contact(channel_user_id="700200", display_name="Tomás")  # Telegram only: no WhatsApp to send to
ANA = Contact(channel_user_id="56966667777", phone_e164="+56966667777", display_name="Ana")  # says BAJA
ZOE = Contact(channel_user_id="56988889999", phone_e164="+56988889999", display_name="Zoe")  # broker B's
WHATSAPP_STEP = {"action": "message", "channel": "whatsapp",
                 "template": "Hola {{first_name}}, ¿seguimos buscando en {{location}}?",
                 "whatsapp_template": {"name": "seguimiento", "language": "es", "parameters": ["{{first_name}}"]}}


@dataclass
class World:
    a: Broker
    b: Broker
    topics: Topics
    leads: dict[str, int]  # first name → lead id
    admin_a: Headers
    agent_a: Headers
    admin_b: Headers


def login(api: TestClient, email: str) -> Headers:
    answer = api.post("/auth/token", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


@pytest.fixture(scope="module")
def env() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
        yield patch


@pytest.fixture(scope="module")
def api(settings: Settings, env: pytest.MonkeyPatch) -> Iterator[TestClient]:
    app = create_app(settings.database_url, TOKENS, limiter=LoginLimiter(attempts=1000))
    with TestClient(app, follow_redirects=False) as client:
        yield client


def build_world(settings: Settings, env: pytest.MonkeyPatch) -> tuple[
        Broker, Broker, Topics, dict[str, int], dict[str, str]]:
    """Two brokers with leads landed and qualified through the real jobs; A's WhatsApp credentials for the fake."""
    tag = uuid.uuid4().hex[:8]
    topics = Topics(f"t{uuid.uuid4().hex[:8]}")
    ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_partitions)
    a = add_broker(settings.database_url, f"camp-a-{tag}", name="Propiedades Norte", country="CL",
                   timezone="America/Santiago")
    b = add_broker(settings.database_url, f"camp-b-{tag}", name="Propiedades Sur", country="CL",
                   timezone="America/Santiago")
    env.setenv(default_secret_env(a.slug, "whatsapp_access_token"), "wa-token-not-a-secret")
    env.setenv(default_secret_env(a.slug, "whatsapp_phone_number_id"), "1098765")
    send(settings, topics, a,
         ("whatsapp", f"wamid.{tag}.c1", CAMILA, "Hola, soy Camila, busco depto en Ñuñoa hasta 5.000 UF", 0),
         ("whatsapp", f"wamid.{tag}.b1", BRUNO, "Hola, busco casa en Macul para comprar", 1),
         ("whatsapp", f"wamid.{tag}.k1", CARLA, "Hola, busco arriendo en Providencia", 2),
         ("telegram", f"{tag}01", TOMAS, "Hola, busco casa en La Reina", 3),
         ("whatsapp", f"wamid.{tag}.a1", ANA, "Hola, busco depto en Santiago", 4),
         ("whatsapp", f"wamid.{tag}.a2", ANA, "BAJA", 5))
    send(settings, topics, b, ("whatsapp", f"wamid.{tag}.z1", ZOE, "Hola, busco depto en Ñuñoa", 6))
    run(settings, topics)
    found = rows(settings, """SELECT split_part(l.display_name, ' ', 1), l.lead_id FROM leadflow.leads l
                              WHERE l.broker_id IN (%s, %s) AND l.merged_into IS NULL""", a.broker_id, b.broker_id)
    emails = {role: f"{role}-{tag}@campanas.test" for role in ("admin_a", "agent_a", "admin_b", "root")}
    add_user(settings.database_url, emails["admin_a"], PASSWORD, role="ADMIN", broker_slug=a.slug,
             display_name="Jefa Norte")
    add_user(settings.database_url, emails["agent_a"], PASSWORD, role="AGENT", broker_slug=a.slug)
    add_user(settings.database_url, emails["admin_b"], PASSWORD, role="ADMIN", broker_slug=b.slug)
    add_user(settings.database_url, emails["root"], PASSWORD, role="SUPERADMIN")
    return a, b, topics, {name: int(lead) for name, lead in found}, emails


@pytest.fixture(scope="module")
def world(settings: Settings, env: pytest.MonkeyPatch, api: TestClient) -> World:
    a, b, topics, leads, emails = build_world(settings, env)
    return World(a, b, topics, leads, login(api, emails["admin_a"]), login(api, emails["agent_a"]),
                 login(api, emails["admin_b"]))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeChannels]:
    server = FakeChannels().start()
    yield server
    server.stop()


def campaign_job(settings: Settings, topics: Topics, fake: FakeChannels, now: datetime) -> dict[str, dict[str, Any]]:
    """The campaign job's assets, materialized as Dagster runs them, with the channels at the fake providers."""
    from dagster import materialize

    from assets.campaigns import campaign_sends, lead_consent, outbound_dispatch, segment_memberships
    from pipelines.resources import ChannelSendersResource, KafkaResource, PostgresResource

    as_of = {"config": {"as_of": now.isoformat()}}
    result = materialize([lead_consent, segment_memberships, campaign_sends, outbound_dispatch], resources={
        "postgres": PostgresResource(url=settings.database_url),
        "kafka": KafkaResource(bootstrap_servers=settings.kafka_bootstrap_servers, topic_prefix=topics.prefix),
        "channels": ChannelSendersResource(whatsapp_api_url=fake.url, telegram_api_url=fake.url, timeout_s=2)},
        run_config={"ops": {"segment_memberships": as_of, "campaign_sends": as_of, "outbound_dispatch": as_of}})
    assert result.success
    return {node: {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}
            for node in ("campaign_sends", "outbound_dispatch")}


def whatsapp_to(fake: FakeChannels, *contacts: Contact) -> list[dict[str, Any]]:
    numbers = {c.channel_user_id for c in contacts}
    return [body for body in fake.sent("whatsapp") if body.get("to") in numbers]


def new_campaign(api: TestClient, world: World, steps: list[dict[str, Any]] | None = None,
                 trigger: dict[str, Any] | None = None, activate: bool = True) -> int:
    answer = api.post(f"/admin/brokers/{world.a.broker_id}/campaigns", headers=world.admin_a, json={
        "name": f"seguimiento {uuid.uuid4().hex[:6]}",
        "definition": {"trigger": trigger or {"type": "manual"}, "steps": steps or [WHATSAPP_STEP]}})
    assert answer.status_code == 201, answer.text
    campaign_id = int(answer.json()["campaign_id"])
    assert answer.json()["status"] == "draft"
    if activate:
        assert status(api, world, campaign_id, "activate").status_code == 200
    return campaign_id


def status(api: TestClient, world: World, campaign_id: int, action: str) -> Any:
    return api.post(f"/admin/brokers/{world.a.broker_id}/campaigns/{campaign_id}/status", headers=world.admin_a,
                    json={"action": action})


def apply(api: TestClient, world: World, campaign_id: int, *lead_ids: int, headers: Headers | None = None) -> Any:
    return api.post(f"/admin/brokers/{world.a.broker_id}/campaigns/{campaign_id}/enrollments",
                    headers=headers or world.admin_a, json={"lead_ids": list(lead_ids)})


def log_of(api: TestClient, world: World, campaign_id: int, **params: Any) -> dict[str, Any]:
    answer = api.get(f"/admin/brokers/{world.a.broker_id}/campaigns/{campaign_id}/log", headers=world.admin_a,
                     params=params)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def test_a_segments_live_count_is_what_the_batch_finds(api: TestClient, world: World, settings: Settings) -> None:
    url = f"/admin/brokers/{world.a.broker_id}/segments"
    rules = {"all": [{"field": "channels", "op": "any_of", "value": ["whatsapp"]}],
             "any": [{"field": "score", "op": "gte", "value": 0}, {"field": "score", "op": "is_null"}]}
    counted = api.post(f"{url}/count", headers=world.admin_a, json={"rules": rules})
    assert counted.status_code == 200, counted.text
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        profiles = load_profiles(cur, [world.a.broker_id, world.b.broker_id], datetime.now(UTC))
    expected = members(profiles, pl.DataFrame({"segment_id": [1], "broker_id": [world.a.broker_id],
                                               "rules": [rules]}))
    assert counted.json()["count"] == expected.height == 4  # Camila, Bruno, Carla and Ana; not B's Zoe
    assert {s["lead_id"] for s in counted.json()["sample"]} == set(expected["lead_id"].to_list())

    # Bad rows are named by their place in the rules and their part, in one answer.
    bad = api.post(f"{url}/count", headers=world.admin_a, json={"rules": {"all": [
        {"field": "score", "op": "gte", "value": "alto"}, {"field": "sueldo", "op": "eq", "value": 1},
        {"field": "locations", "op": "gte", "value": "x"}]}})
    assert bad.status_code == 422
    assert set(bad.json()["fields"]) == {"all[0].value", "all[1].field", "all[2].op"}
    assert "score is a number field" in bad.json()["fields"]["all[0].value"]

    created = api.post(url, headers=world.admin_a, json={"name": "con whatsapp", "rules": rules})
    assert created.status_code == 201, created.text
    segment_id = created.json()["segment_id"]
    assert api.post(url, headers=world.admin_a, json={"name": "con whatsapp", "rules": rules}).status_code == 409
    shown = api.get(f"{url}/{segment_id}", headers=world.admin_a).json()
    assert shown["members"] == 4 and shown["rules"] == rules
    assert [s["segment_id"] for s in api.get(url, headers=world.admin_a).json()
            if s["name"] == "con whatsapp"] == [segment_id]
    # Both groups at once: the page shows and counts it, and leaves its editing to the API.
    shown_page = api.get(f"/dashboard/brokers/{world.a.broker_id}/admin/segments/{segment_id}",
                         headers=cookie(world.admin_a))
    assert shown_page.status_code == 200 and 'id="not-editable"' in shown_page.text

    # A manual campaign applied to the segment's members now (a draft keeps them until it is active).
    campaign_id = new_campaign(api, world, activate=False)
    applied = api.post(f"{url}/{segment_id}/enrollments", headers=world.admin_a, json={"campaign_id": campaign_id})
    assert applied.status_code == 200 and applied.json()["enrolled"] == 4
    assert log_of(api, world, campaign_id)["counts"]["pending"] == 4


def test_a_campaigns_problems_are_named_field_by_field(api: TestClient, world: World) -> None:
    url = f"/admin/brokers/{world.a.broker_id}/campaigns"
    answer = api.post(url, headers=world.admin_a, json={"name": " ", "definition": {
        "trigger": {"type": "score_threshold"},
        "steps": [{"action": "message"}, {"action": "message", "template": "Hola {{nombre}}", "delay_hours": -1},
                  {"action": "message", "template": "Hola", "whatsapp_template": {"name": "Seguimiento Uno"}},
                  {"action": "move_stage", "stage": "en_la_luna"}]}})
    assert answer.status_code == 422
    fields = answer.json()["fields"]
    assert set(fields) == {"name", "trigger.score_min", "steps[0].template", "steps[1].delay_hours",
                           "steps[1].template", "steps[2].whatsapp_template.name", "steps[3].stage"}
    assert "needs 'score_min'" in fields["trigger.score_min"] and "needs a 'template'" in fields["steps[0].template"]
    assert "greater than or equal to 0" in fields["steps[1].delay_hours"]
    assert fields["steps[3].stage"].startswith("'en_la_luna' is not a stage of this broker: use ")
    # What the models accept, checked against the broker: variables, template names, stages, segments.
    answer = api.post(url, headers=world.admin_a, json={"name": "x", "definition": {
        "trigger": {"type": "manual", "segment": "no existe"},
        "steps": [{"action": "message", "template": "Hola {{nombre}}"},
                  {"action": "message", "template": "Hola", "whatsapp_template": {"name": "Seguimiento Uno",
                                                                                  "parameters": ["{{apellido}}"]}},
                  {"action": "move_stage", "stage": "en_la_luna"},
                  {"action": "message", "template": "Hola\u0000"}]}})
    assert answer.status_code == 422
    fields = answer.json()["fields"]
    assert set(fields) == {"trigger.segment", "steps[0].template", "steps[1].whatsapp_template.name",
                           "steps[1].whatsapp_template.parameters", "steps[2].stage", "steps[3].template"}
    assert fields["steps[0].template"].startswith("unknown variables nombre: use ")
    assert "apellido" in fields["steps[1].whatsapp_template.parameters"]


def test_a_preview_renders_each_step_for_a_real_lead(api: TestClient, world: World) -> None:
    url = f"/admin/brokers/{world.a.broker_id}/campaigns/preview"
    definition = {"trigger": {"type": "manual"},
                  "steps": [WHATSAPP_STEP, {"action": "call", "provider": "bland", "delay_hours": 24}]}
    shown = api.post(url, headers=world.admin_a, json={"definition": definition, "lead_id": world.leads["Camila"]})
    assert shown.status_code == 200, shown.text
    first, call = shown.json()["steps"]
    assert first["text"] == "Hola Camila, ¿seguimos buscando en Ñuñoa?"
    assert first["whatsapp_template"]["parameters"] == ["Camila"]
    assert call["channel"] == "bland" and "Camila" in call["text"] and "Propiedades Norte" in call["text"]
    refused = api.post(url, headers=world.admin_a, json={"definition": definition, "lead_id": world.leads["Zoe"]})
    assert refused.status_code == 422 and set(refused.json()["fields"]) == {"lead_id"}  # B's lead


def test_a_manual_campaign_applied_to_three_leads_is_sent_to_exactly_them(
        api: TestClient, world: World, settings: Settings, fake: FakeChannels) -> None:
    campaign_id = new_campaign(api, world)
    leads = world.leads
    chosen = (leads["Camila"], leads["Bruno"], leads["Carla"])
    answer = apply(api, world, campaign_id, *chosen, leads["Zoe"])
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"enrolled": 3, "already": 0,
                             "refused": [{"lead_id": leads["Zoe"], "reason": "not a lead of this broker"}]}
    again = apply(api, world, campaign_id, *chosen).json()
    assert (again["enrolled"], again["already"]) == (0, 3)  # applying twice enrolls once
    # Two more whom eligibility keeps out: no WhatsApp to write to, and a lead who said BAJA.
    assert apply(api, world, campaign_id, leads["Tomás"], leads["Ana"]).json()["enrolled"] == 2
    waiting = log_of(api, world, campaign_id)
    assert waiting["counts"]["pending"] == 5 and waiting["entries"][0]["reason"].startswith("applied")

    metadata = campaign_job(settings, world.topics, fake, NOON)
    assert metadata["campaign_sends"]["enrolled"] >= 4  # Ana is refused, not enrolled
    sent = whatsapp_to(fake, CAMILA, BRUNO, CARLA, TOMAS, ANA, ZOE)
    assert sorted(body["to"] for body in sent) == sorted(str(c.channel_user_id) for c in (CAMILA, BRUNO, CARLA))
    assert {body["text"]["body"] for body in sent} == {"Hola Camila, ¿seguimos buscando en Ñuñoa?",
                                                        "Hola Bruno, ¿seguimos buscando en Macul?",
                                                        "Hola Carla, ¿seguimos buscando en Providencia?"}

    found = log_of(api, world, campaign_id)
    by_lead = {e["lead_id"]: e for e in found["entries"]}
    assert {by_lead[lead]["status"] for lead in chosen} == {"sent"}
    assert all(by_lead[lead]["sent_at"] and by_lead[lead]["requested_at"] for lead in chosen)
    assert (by_lead[leads["Tomás"]]["status"], by_lead[leads["Tomás"]]["reason"]) == (
        "skipped", "no whatsapp channel for this lead")
    assert (by_lead[leads["Ana"]]["status"], by_lead[leads["Ana"]]["reason"]) == ("skipped", "opted out")
    assert {k: found["counts"][k] for k in ("sent", "skipped", "pending")} == {"sent": 3, "skipped": 2, "pending": 0}
    skipped = log_of(api, world, campaign_id, status="skipped")
    assert skipped["total"] == 2 and {e["status"] for e in skipped["entries"]} == {"skipped"}
    assert log_of(api, world, campaign_id, limit=2)["next_offset"] == 2

    # The same job again sends nothing more; the audit log holds the campaign's writes, by its admin.
    campaign_job(settings, world.topics, fake, NOON + timedelta(minutes=5))
    assert len(whatsapp_to(fake, CAMILA, BRUNO, CARLA)) == 3
    actions = [a for (a,) in rows(settings, """SELECT action FROM leadflow.audit_log WHERE broker_id = %s
                                               AND (after ->> 'campaign_id')::bigint = %s ORDER BY audit_id""",
                                  world.a.broker_id, campaign_id)]
    assert actions == ["campaign.create", "campaign.activate", "campaign.apply", "campaign.apply", "campaign.apply"]


def test_a_paused_campaign_sends_nothing_new_and_resumed_sends_what_it_held(
        api: TestClient, world: World, settings: Settings, fake: FakeChannels) -> None:
    campaign_id = new_campaign(api, world)
    lead = world.leads["Carla"]
    assert status(api, world, campaign_id, "pause").status_code == 200
    assert apply(api, world, campaign_id, lead).json()["enrolled"] == 1  # kept until it is active
    before = len(whatsapp_to(fake, CARLA))
    later = NOON + timedelta(hours=1)
    campaign_job(settings, world.topics, fake, later)
    assert len(whatsapp_to(fake, CARLA)) == before
    assert log_of(api, world, campaign_id)["entries"][0]["reason"].startswith("applied")

    # Resumed, the batch decides the send; paused again before the dispatcher ran, the send is held, not sent.
    assert status(api, world, campaign_id, "resume").status_code == 200
    target_campaigns(settings.database_url, later, lambda commands: None)  # commands never reach the topic
    assert status(api, world, campaign_id, "pause").status_code == 200
    held = log_of(api, world, campaign_id)["entries"]
    assert [(e["status"], e["reason"]) for e in held] == [("skipped", "held: the campaign was paused before this "
                                                                      "was sent")]
    senders: dict[str, Sender] = {"whatsapp": WhatsAppSender(fake.url, 2, clock=lambda: later)}
    dispatch(settings.database_url, settings.kafka_bootstrap_servers, world.topics, senders, clock=lambda: later)
    assert len(whatsapp_to(fake, CARLA)) == before
    assert status(api, world, campaign_id, "pause").status_code == 409  # already paused
    assert status(api, world, campaign_id, "resume").status_code == 200
    dispatch(settings.database_url, settings.kafka_bootstrap_servers, world.topics, senders, clock=lambda: later)
    assert len(whatsapp_to(fake, CARLA)) == before + 1
    assert [e["status"] for e in log_of(api, world, campaign_id)["entries"]] == ["sent"]

    # Completed is final: nothing more is applied, nothing is edited.
    assert status(api, world, campaign_id, "complete").json()["status"] == "completed"
    assert apply(api, world, campaign_id, lead).status_code == 409
    assert status(api, world, campaign_id, "resume").status_code == 409


def test_only_a_manual_campaign_is_applied_and_an_active_one_is_not_edited(api: TestClient, world: World) -> None:
    campaign_id = new_campaign(api, world, trigger={"type": "score_threshold", "score_min": 90})
    refused = apply(api, world, campaign_id, world.leads["Camila"])
    assert refused.status_code == 409 and "only a manual campaign" in refused.json()["detail"]
    edit = api.put(f"/admin/brokers/{world.a.broker_id}/campaigns/{campaign_id}", headers=world.admin_a,
                   json={"name": "otra", "definition": {"trigger": {"type": "manual"}, "steps": [WHATSAPP_STEP]}})
    assert edit.status_code == 409 and "pause it first" in edit.json()["detail"]


def test_agents_and_other_brokers_admins_are_refused(api: TestClient, world: World) -> None:
    campaign_id = new_campaign(api, world, activate=False)
    a = world.a.broker_id
    for headers in (world.agent_a, world.admin_b):
        assert api.get(f"/admin/brokers/{a}/campaigns", headers=headers).status_code == 403
        assert api.post(f"/admin/brokers/{a}/segments/count", headers=headers,
                        json={"rules": {"all": [{"field": "score", "op": "gte", "value": 0}]}}).status_code == 403
        assert apply(api, world, campaign_id, world.leads["Camila"], headers=headers).status_code == 403
        assert api.get(f"/admin/brokers/{a}/campaigns/{campaign_id}/log", headers=headers).status_code == 403
        assert api.post(f"/admin/brokers/{a}/campaigns/{campaign_id}/status", headers=headers,
                        json={"action": "activate"}).status_code == 403
    # B's admin, in its own broker, cannot reach A's campaign by its id.
    b = world.b.broker_id
    assert api.post(f"/admin/brokers/{b}/campaigns/{campaign_id}/enrollments", headers=world.admin_b,
                    json={"lead_ids": [world.leads["Zoe"]]}).status_code == 404
    assert api.get(f"/admin/brokers/{a}/campaigns/{campaign_id}", headers=world.admin_a).json()["status"] == "draft"


# --- the pages (the browser's flow is tests/test_admin_campaigns_browser.py) --------------------------------

def cookie(headers: Headers) -> Headers:
    """The session cookie of a bearer token (the dashboard's cookie holds the same token)."""
    from reports_api.dashboard import COOKIE

    return {"Cookie": f"{COOKIE}={headers['Authorization'].removeprefix('Bearer ')}"}


def csrf_of(headers: Headers) -> str:
    from reports_api.workspace import csrf

    return csrf.token_for(TOKENS.secret, headers["Authorization"].removeprefix("Bearer "))


def test_the_pages_refuse_bad_forms_naming_the_field_and_keep_what_was_typed(api: TestClient, world: World) -> None:
    base = f"/dashboard/brokers/{world.a.broker_id}/admin"
    page = cookie(world.admin_a)
    listed = api.get(f"{base}/campaigns", headers=page)
    assert listed.status_code == 200 and "Nuevo segmento" in listed.text
    form = {"csrf": csrf_of(world.admin_a), "name": "ricos", "match": "all", "cond0_field": "budget_max",
            "cond0_op": "gte", "cond0_value": "mucho", "cond1_field": "temperature", "cond1_op": "eq",
            "cond1_value": "hot"}
    refused = api.post(f"{base}/segments/new", headers=page, data=form)
    assert refused.status_code == 422
    assert "Condición 1 · valor: budget_max is a number field" in refused.text
    assert 'value="mucho"' in refused.text and 'value="ricos"' in refused.text
    counted = api.post(f"{base}/segments/count", headers=page, data={**form, "cond0_value": "4.000,5"})
    assert counted.status_code == 422  # 4.000,5 is not a number the form reads; its field is named
    counted = api.post(f"{base}/segments/count", headers=page, data={**form, "cond0_value": "0"})
    assert counted.status_code == 200 and counted.json()["count"] >= 0
    assert api.post(f"{base}/segments/count", headers=page, data={**form, "csrf": "x"}).status_code == 403

    campaign = {"csrf": csrf_of(world.admin_a), "name": "sin texto", "trigger_type": "manual",
                "step0_action": "message", "step0_channel": "whatsapp", "step0_delay_hours": "pronto",
                "step0_wa_name": "Mi Plantilla", "do": "save"}
    refused = api.post(f"{base}/campaigns/new", headers=page, data=campaign)
    assert refused.status_code == 422
    assert "Paso 1 · espera (horas): Input should be a valid number" in refused.text
    assert 'value="pronto"' in refused.text
    # The step's own checks come once its fields parse.
    refused = api.post(f"{base}/campaigns/new", headers=page, data={**campaign, "step0_delay_hours": "2"})
    for message in ("Paso 1 · texto: a message step needs a 'template'", "Paso 1 · plantilla de WhatsApp: "):
        assert message in html.unescape(refused.text)
    previewed = api.post(f"{base}/campaigns/new", headers=page, data={
        **campaign, "step0_delay_hours": "0", "step0_wa_name": "seguimiento", "step0_template": "Hola {{first_name}}",
        "do": "preview", "preview_lead_id": str(world.leads["Bruno"])})
    assert previewed.status_code == 200 and "Hola Bruno" in previewed.text


def test_the_inbox_offers_active_manual_campaigns_to_admins_only(api: TestClient, world: World) -> None:
    campaign_id = new_campaign(api, world)
    inbox = f"/dashboard/brokers/{world.a.broker_id}/inbox"
    shown = api.get(inbox, headers=cookie(world.admin_a)).text
    assert 'form="apply-campaign"' in shown and f'value="{campaign_id}"' in shown and ">Campañas</a>" in shown
    as_agent = api.get(inbox, headers=cookie(world.agent_a)).text
    assert "apply-campaign" not in as_agent and ">Campañas</a>" not in as_agent
    assert api.get(f"/dashboard/brokers/{world.a.broker_id}/admin/campaigns",
                   headers=cookie(world.agent_a)).status_code == 403
