"""A broker's settings with validation, versions and a scoring preview (issue 14).

Pure first: each section refuses what its reader would misread, naming every bad field (crossing thresholds,
steps out of order, a pipeline that would send leads back). Then the JSON API on real PostgreSQL: versions with
who and when, revert, a stale save refused, another broker and an AGENT refused; the preview counts what the
next scoring run then writes; and the real landing job rescored a lead whose messages did not change.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from leadflow.brokers import Broker, add_broker
from leadflow.campaigns.store import record_opt_outs
from leadflow.config import Settings, Topics
from leadflow.db.connection import transaction
from leadflow.events import Contact
from leadflow.kafka import ensure_topics
from leadflow.leads.stages import DEFAULT_PIPELINE, Pipeline
from leadflow.qualification.scoring import ScoringConfig
from leadflow.settings_schema import (
    SettingsError,
    diff,
    effective,
    stage_regressions,
    validate,
    validate_agent,
    validate_campaigns,
    validate_llm,
    validate_pipeline,
    validate_scoring,
)
from leadflow.users import User, add_user
from reports_api.app import create_app
from reports_api.dashboard import COOKIE
from reports_api.security import TokenSettings, issue_token
from reports_api.workspace import csrf
from tests.test_leads_pipeline import rows, send
from tests.test_workspace_assignment import leads_job


def refused(section: str, value: Any, **context: Any) -> dict[str, str]:
    with pytest.raises(SettingsError) as caught:
        validate(section, value, **context)
    return {p.field: p.message for p in caught.value.problems}


def default_stages() -> list[dict[str, Any]]:
    stages: list[dict[str, Any]] = effective("pipeline", {})["stages"]
    return stages


# --- scoring ------------------------------------------------------------------------------------------------

def test_scoring_keeps_only_what_differs_from_the_defaults_and_reads_back_as_the_run_reads_it() -> None:
    stored = validate_scoring({**effective("scoring", {}), "budget": 20, "timeline": [[2, 15], [12, 5]]})
    assert stored == {"budget": 20, "timeline": [[2, 15], [12, 5]]}
    config = ScoringConfig.from_settings(stored)
    assert config.budget == 20 and config.timeline == ((2, 15), (12, 5)) and config.hot == ScoringConfig.hot
    assert validate_scoring({}) == {}


def test_scoring_thresholds_that_cross_are_refused_naming_the_field() -> None:
    problems = refused("scoring", {"hot": 40, "warm": 60})
    assert "hot" in problems and "above the warm one (60)" in problems["hot"]
    assert "hot" in refused("scoring", {"hot": 40})  # the default warm is 40: equal crosses too
    assert set(refused("scoring", {"hot": 150, "warm": 0})) == {"hot", "warm"}


def test_every_bad_scoring_field_is_listed_at_once() -> None:
    problems = refused("scoring", {"budget": "9", "financing": {"cash": 5, "bitcoin": 3},
                                   "engagement": [[1, 2], [6, 12]], "inactive_days": 0, "colour": "red", "name": True,
                                   "phone": 500})
    assert problems["budget"] == "Input should be a valid integer"
    assert problems["name"] == "Input should be a valid integer"  # true is not a number of points
    assert "unknown field" in problems["colour"]
    # The type errors stop the rest; once they are fixed the cross-field rules speak.
    problems = refused("scoring", {"financing": {"cash": 5, "bitcoin": 3}, "engagement": [[1, 2], [6, 12]],
                                   "inactive_days": 0, "phone": 500})
    assert "unknown" in problems["financing.bitcoin"]
    assert "largest first" in problems["engagement"]
    assert problems["inactive_days"] == "must be above 0"
    assert "between -100 and 100" in problems["phone"]


# --- pipeline -----------------------------------------------------------------------------------------------

def test_the_default_pipeline_stores_as_nothing_and_a_changed_one_stores_whole() -> None:
    assert validate_pipeline({"stages": default_stages()}) == {}
    stages = default_stages()
    stages[0]["stall_days"] = 3
    stored = validate_pipeline({"stages": stages})
    assert stored["stages"][0]["stall_days"] == 3 and len(stored["stages"]) == len(DEFAULT_PIPELINE.stages)
    assert Pipeline.from_settings(stored).stages[0].stall_days == 3


def test_bad_stages_are_named_by_position() -> None:
    stages = default_stages()
    stages[1]["code"] = "Perfil Amiento"
    stages[2]["requires"] = ["scored_warm", "tiene_credito"]
    stages[3]["stall_days"] = 0
    stages[4]["code"] = "entrada"
    problems = refused("pipeline", {"stages": [*stages, {"code": "perdido"}]})
    assert "lowercase" in problems["stages[1].code"]
    assert "tiene_credito" in problems["stages[2].requires"]
    assert "1 and 365" in problems["stages[3].stall_days"]
    assert "already a stage" in problems["stages[4].code"]
    assert "always there" in problems["stages[8].code"]
    assert "stages" in refused("pipeline", {"stages": []})


def test_a_pipeline_that_would_send_leads_back_is_refused_naming_the_stage_and_its_leads() -> None:
    occupied = {"potencial": 4, "entrada": 2}
    stages = [s for s in default_stages() if s["code"] != "potencial"]
    problems = refused("pipeline", {"stages": stages}, current={}, occupied=occupied)
    assert problems["stages"] == "stage 'potencial' has 4 lead(s): it cannot be removed (move them on first)"
    # "perfilamiento" put after "potencial": the 4 leads there passed it already.
    stages = default_stages()
    stages[1], stages[3] = stages[3], stages[1]
    problems = refused("pipeline", {"stages": stages}, current={}, occupied=occupied)
    assert "'perfilamiento' cannot go after 'potencial': its 4 lead(s) would go back" in problems["stages[3].code"]
    # The same change with nobody past those stages is fine; so is removing an empty stage.
    assert validate_pipeline({"stages": stages}, {}, {"entrada": 9})["stages"][1]["code"] == "potencial"
    empty = [s for s in default_stages() if s["code"] != "referidos"]
    assert "referidos" not in str(validate_pipeline({"stages": empty}, {}, occupied))
    assert stage_regressions(DEFAULT_PIPELINE, DEFAULT_PIPELINE, occupied) == []


# --- llm, campaigns, agent ----------------------------------------------------------------------------------

def test_llm_settings_name_the_provider_model_and_prompt() -> None:
    assert validate_llm({"provider": "openai", "model": "gpt-4.1", "prompt_additions": "  Sé breve. "}) == {
        "provider": "openai", "model": "gpt-4.1", "prompt_additions": "Sé breve."}
    assert validate_llm({"provider": "rules", "model": "", "prompt_additions": ""}) == {}
    problems = refused("llm", {"provider": "mistral", "model": "a b", "prompt_additions": "x" * 3000, "temp": 1})
    assert set(problems) == {"provider", "model", "prompt_additions", "temp"}
    assert "only with a provider" in refused("llm", {"model": "gpt-4.1"})["model"]


def test_contact_rules_and_the_brokers_own_opt_out_words() -> None:
    stored = validate_campaigns({"quiet_start": 22, "quiet_end": 8, "cap_messages": 3, "cap_days": 7,
                                 "opt_out_words": ["Ya  no más", "chao", "chao"]})
    assert stored == {"quiet_start": 22, "quiet_end": 8, "opt_out_words": ["ya no más", "chao"]}
    problems = refused("campaigns", {"quiet_start": 24, "cap_messages": 0, "cap_days": "7",
                                     "opt_out_words": ["ok", "?!", 3]})
    assert set(problems) == {"quiet_start", "cap_messages", "cap_days", "opt_out_words[1]", "opt_out_words[2]"}


def test_agent_settings_reuse_the_agents_own_model_and_name_nested_fields() -> None:
    assert validate_agent({"enabled": True, "facts": {"commission": "2% + IVA"}, "language": "es-CL"}, "CL") == {
        "enabled": True, "facts": {"commission": "2% + IVA"}}
    assert validate_agent({"language": "es-CL"}, "MX") == {"language": "es-CL"}  # not the country's: kept
    problems = refused("agent", {"tone": "gritón", "facts": {"commission": "", "pets": "sí"},
                                 "max_replies_per_hour": 0}, country="CL")
    assert set(problems) == {"tone", "facts.commission", "facts.pets", "max_replies_per_hour"}


def test_a_diff_names_each_changed_leaf() -> None:
    before, after = effective("pipeline", {}), default_stages()
    after[2]["stall_days"] = 9
    assert diff(before, {**before, "stages": after}) == [
        {"field": "stages[2].stall_days", "before": 7, "after": 9}]
    assert diff({"hot": 70, "warm": 40}, {"hot": 80, "warm": 40}) == [{"field": "hot", "before": 70, "after": 80}]


# --- the API on real PostgreSQL -----------------------------------------------------------------------------

PASSWORD = "una-clave-larga-de-prueba"


@dataclass
class World:
    a: Broker
    b: Broker
    users: dict[str, User]  # admin_a, agent_a, admin_b, root
    tokens: TokenSettings
    client: TestClient
    topics: Topics

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.tokens, self.users[who])}"}

    def url(self, tail: str = "", broker: Broker | None = None) -> str:
        return f"/admin/brokers/{(broker or self.a).broker_id}/settings{tail}"


@pytest.fixture(scope="module")
def world(settings: Settings) -> Iterator[World]:
    url = settings.database_url
    topics = Topics(f"t{uuid.uuid4().hex[:8]}")
    ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_partitions)
    tag = uuid.uuid4().hex[:8]
    a = add_broker(url, f"st-a-{tag}", name="Propiedades Andes", country="CL", timezone="America/Santiago")
    b = add_broker(url, f"st-b-{tag}", name="Bienes Raíces Bajío", country="MX", timezone="America/Mexico_City")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
        users = {"admin_a": add_user(url, f"admin-{tag}@andes.test", PASSWORD, role="ADMIN", broker_slug=a.slug,
                                     display_name="Admin Andes"),
                 "agent_a": add_user(url, f"agente-{tag}@andes.test", PASSWORD, role="AGENT", broker_slug=a.slug),
                 "admin_b": add_user(url, f"admin-{tag}@bajio.test", PASSWORD, role="ADMIN", broker_slug=b.slug),
                 "root": add_user(url, f"root-{tag}@leadflow.test", PASSWORD, role="SUPERADMIN")}
        tokens = TokenSettings.ephemeral()
        send(settings, topics, a,
             ("whatsapp", f"wa-cam-{tag}", Contact(channel_user_id="56987654321", phone_e164="+56987654321",
                                                   display_name="Camila"),
              "Hola, busco depto 2d2b en Ñuñoa hasta 5.200 UF, tengo crédito preaprobado, me cambio en 2 meses", 0),
             ("telegram", f"tg-tom-{tag}", Contact(channel_user_id="4242", display_name="Tomás"),
              "quiero arrendar en Providencia hasta 600 lucas", 1),
             ("telegram", f"tg-ola-{tag}", Contact(channel_user_id="4343", display_name="Olga"), "hola", 2),
             ("telegram", f"tg-ped-{tag}", Contact(channel_user_id="4444", display_name="Pedro"), "info", 3))
        leads_job(topics)
        with TestClient(create_app(url, tokens)) as client:
            yield World(a, b, users, tokens, client, topics)


def temperatures(settings: Settings, broker: Broker) -> dict[str, int]:
    found = {"hot": 0, "warm": 0, "cold": 0}
    found.update(dict(rows(settings, """SELECT s.temperature, count(*) FROM leadflow.lead_scores s
                                        JOIN leadflow.leads l USING (lead_id)
                                        WHERE l.broker_id = %s AND l.merged_into IS NULL GROUP BY 1""",
                           broker.broker_id)))
    return found


def audit_actions(settings: Settings, broker: Broker) -> list[str]:
    return [a for (a,) in rows(settings, "SELECT action FROM leadflow.audit_log WHERE broker_id = %s "
                                         "ORDER BY audit_id", broker.broker_id)]


def test_every_section_reads_with_its_defaults_and_version_1(world: World) -> None:
    answer = world.client.get(world.url(broker=world.b), headers=world.headers("admin_b"))
    assert answer.status_code == 200, answer.text
    found = {s["section"]: s for s in answer.json()}
    assert list(found) == ["scoring", "pipeline", "llm", "campaigns", "agent", "appointments"]
    assert all(s["version"] == 1 and s["changed_by"] is None for s in found.values())
    assert found["scoring"]["value"]["hot"] == 70 and found["scoring"]["stored"] == {}
    assert found["campaigns"]["value"]["quiet_start"] == 21
    assert found["agent"]["value"]["language"] == "es-MX"  # the broker's country's
    assert found["pipeline"]["value"]["stages"][0]["code"] == "entrada"


def test_a_save_is_a_version_with_who_and_what_changed_and_a_stale_one_is_a_409(world: World,
                                                                                 settings: Settings) -> None:
    headers = world.headers("admin_b")
    saved = world.client.put(world.url("/llm", world.b), headers=headers,
                             json={"based_on": 1, "value": {"provider": "openai", "model": "gpt-4.1",
                                                            "prompt_additions": "Pregunta siempre la comuna."}})
    assert saved.status_code == 200, saved.text
    assert saved.json()["version"] == 2 and saved.json()["changed_by"] == world.users["admin_b"].user_id
    [(stored,)] = rows(settings, "SELECT llm FROM leadflow.broker_settings WHERE broker_id = %s", world.b.broker_id)
    assert stored == {"provider": "openai", "model": "gpt-4.1", "prompt_additions": "Pregunta siempre la comuna."}
    stale = world.client.put(world.url("/llm", world.b), headers=headers,
                             json={"based_on": 1, "value": {"provider": "gemini"}})
    assert stale.status_code == 409 and "version 2" in stale.json()["detail"]
    versions = world.client.get(world.url("/llm/versions", world.b), headers=headers).json()
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["changed_by_name"] == world.users["admin_b"].display_name
    assert {c["field"]: (c["before"], c["after"]) for c in versions[0]["changes"]} == {
        "provider": ("rules", "openai"), "model": (None, "gpt-4.1"),
        "prompt_additions": ("", "Pregunta siempre la comuna.")}
    assert versions[1]["changed_by"] is None and versions[1]["stored"] == {}
    assert audit_actions(settings, world.b)[-1] == "settings.llm"
    # The same value again: nothing new.
    again = world.client.put(world.url("/llm", world.b), headers=headers,
                             json={"based_on": 2, "value": saved.json()["value"]})
    assert again.json()["version"] == 2


def test_a_revert_is_a_new_version_with_the_old_value(world: World, settings: Settings) -> None:
    headers = world.headers("root")  # a SUPERADMIN may manage any broker
    saved = world.client.put(world.url("/campaigns", world.b), headers=headers,
                             json={"based_on": 1, "value": {"quiet_start": 20, "quiet_end": 10}})
    assert saved.status_code == 200 and saved.json()["version"] == 2
    reverted = world.client.post(world.url("/campaigns/revert", world.b), headers=headers, json={"version": 1})
    assert reverted.status_code == 200, reverted.text
    assert reverted.json()["version"] == 3 and reverted.json()["reverted_from"] == 1
    assert reverted.json()["stored"] == {} and reverted.json()["value"]["quiet_start"] == 21
    assert world.client.post(world.url("/campaigns/revert", world.b), headers=headers,
                             json={"version": 9}).status_code == 404
    assert audit_actions(settings, world.b)[-2:] == ["settings.campaigns", "settings.campaigns.revert"]


def test_invalid_values_are_a_422_listing_each_field_and_nothing_is_written(world: World,
                                                                              settings: Settings) -> None:
    headers = world.headers("admin_b")
    before = audit_actions(settings, world.b)
    answer = world.client.put(world.url("/scoring", world.b), headers=headers,
                              json={"based_on": 1, "value": {"hot": 30, "warm": 50, "engagement": [[1, 2], [6, 12]]}})
    assert answer.status_code == 422
    fields = {p["field"]: p["message"] for p in answer.json()["detail"]}
    assert set(fields) == {"hot", "engagement"} and "above the warm one (50)" in fields["hot"]
    answer = world.client.put(world.url("/agent", world.b), headers=headers,
                              json={"based_on": 1, "value": {"tone": "gritón", "facts": {"pets": "sí"},
                                                             "persona_name": "Vale\u0000"}})
    assert answer.status_code == 422
    assert {p["field"] for p in answer.json()["detail"]} == {"tone", "facts.pets", "persona_name"}
    assert audit_actions(settings, world.b) == before
    assert rows(settings, "SELECT scoring, agent FROM leadflow.broker_settings WHERE broker_id = %s",
                world.b.broker_id) == [({}, {})]


def test_agents_and_other_brokers_admins_are_refused(world: World) -> None:
    body = {"based_on": 1, "value": {"hot": 90}}
    for who in ("agent_a", "admin_b"):
        headers = world.headers(who)
        assert world.client.get(world.url(), headers=headers).status_code == 403
        assert world.client.get(world.url("/scoring"), headers=headers).status_code == 403
        assert world.client.put(world.url("/scoring"), headers=headers, json=body).status_code == 403
        assert world.client.get(world.url("/scoring/versions"), headers=headers).status_code == 403
        assert world.client.post(world.url("/scoring/revert"), headers=headers,
                                 json={"version": 1}).status_code == 403
        assert world.client.post(world.url("/scoring/preview"), headers=headers,
                                 json={"value": body["value"]}).status_code == 403
    assert world.client.get(world.url()).status_code == 401
    assert world.client.get(world.url(), headers=world.headers("admin_a")).json()[0]["version"] == 1


def test_a_pipeline_or_a_revert_that_would_send_leads_back_is_refused(world: World, settings: Settings) -> None:
    headers = world.headers("admin_a")
    occupied = dict(rows(settings, "SELECT stage, count(*) FROM leadflow.lead_stages WHERE broker_id = %s GROUP BY 1",
                         world.a.broker_id))
    stage, leads = next(iter(sorted(occupied.items())))
    stages = [s for s in default_stages() if s["code"] != stage]
    answer = world.client.put(world.url("/pipeline"), headers=headers,
                              json={"based_on": 1, "value": {"stages": stages}})
    assert answer.status_code == 422
    assert answer.json()["detail"] == [{"field": "stages", "message": f"stage '{stage}' has {leads} lead(s): it "
                                                                      "cannot be removed (move them on first)"}]
    # A new stage is fine; then a lead is put in it, and going back to the pipeline without it is refused.
    stages = default_stages()
    stages.insert(6, {"code": "reserva", "name": "Reserva", "requires": [], "stall_days": 15})
    saved = world.client.put(world.url("/pipeline"), headers=headers, json={"based_on": 1, "value": {"stages": stages}})
    assert saved.status_code == 200, saved.text
    [(lead, was)] = rows(settings, "SELECT lead_id, stage FROM leadflow.lead_stages WHERE broker_id = %s "
                                   "ORDER BY lead_id LIMIT 1", world.a.broker_id)
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE leadflow.lead_stages SET stage = 'reserva' WHERE lead_id = %s", (lead,))
    try:
        refused = world.client.post(world.url("/pipeline/revert"), headers=headers, json={"version": 1})
        assert refused.status_code == 422
        assert "stage 'reserva' has 1 lead(s)" in refused.json()["detail"][0]["message"]
    finally:
        with transaction(settings.database_url) as conn, conn.cursor() as cur:
            cur.execute("UPDATE leadflow.lead_stages SET stage = %s WHERE lead_id = %s", (was, lead))
    reverted = world.client.post(world.url("/pipeline/revert"), headers=headers, json={"version": 1, "based_on": 2})
    assert reverted.status_code == 200 and reverted.json()["stored"] == {}


def test_the_preview_counts_what_the_next_run_writes_and_the_run_rescores_unchanged_leads(
        world: World, settings: Settings) -> None:
    headers = world.headers("admin_a")
    scores_before = dict(rows(settings, "SELECT s.lead_id, s.score FROM leadflow.lead_scores s "
                                        "JOIN leadflow.leads l USING (lead_id) WHERE l.broker_id = %s",
                              world.a.broker_id))
    assert len(scores_before) == 4
    current = world.client.get(world.url("/scoring"), headers=headers).json()
    # One message or more is now worth 45 points: enough for a lead who only said "hola" to be warm.
    candidate = {**current["value"], "engagement": [[1, 45]]}
    preview = world.client.post(world.url("/scoring/preview"), headers=headers, json={"value": candidate})
    assert preview.status_code == 200, preview.text
    found = preview.json()
    assert found["now"] == temperatures(settings, world.a) and found["leads"] == 4
    assert found["proposed"] != found["now"] and found["changed"] > 0
    refused = world.client.post(world.url("/scoring/preview"), headers=headers,
                                json={"value": {**candidate, "warm": 80}})
    assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "hot"

    saved = world.client.put(world.url("/scoring"), headers=headers,
                             json={"based_on": current["version"], "value": candidate})
    assert saved.status_code == 200 and saved.json()["stored"] == {"engagement": [[1, 45]]}
    leads_job(world.topics)  # no new message: only the settings changed
    assert temperatures(settings, world.a) == found["proposed"]
    scores_after = dict(rows(settings, "SELECT s.lead_id, s.score FROM leadflow.lead_scores s "
                                       "JOIN leadflow.leads l USING (lead_id) WHERE l.broker_id = %s",
                             world.a.broker_id))
    assert all(scores_after[lead] > score for lead, score in scores_before.items() if score < 100)
    # Reverting rescores them back on the run after.
    world.client.post(world.url("/scoring/revert"), headers=headers, json={"version": 1})
    leads_job(world.topics)
    assert temperatures(settings, world.a) == found["now"]


def test_the_brokers_own_opt_out_words_stop_its_leads_only(world: World, settings: Settings) -> None:
    saved = world.client.put(world.url("/campaigns"), headers=world.headers("admin_a"),
                             json={"based_on": 1, "value": {"opt_out_words": ["ya no me interesa"]}})
    assert saved.status_code == 200, saved.text
    tag = uuid.uuid4().hex[:8]
    send(settings, world.topics, world.a, ("telegram", f"tg-ines-{tag}", Contact(channel_user_id="5151",
                                                                               display_name="Inés"),
                                           "Ya  NO me interesa, gracias", 20))
    send(settings, world.topics, world.b, ("telegram", f"tg-luz-{tag}", Contact(channel_user_id="5252",
                                                                              display_name="Luz"),
                                           "ya no me interesa", 20))
    leads_job(world.topics)
    record_opt_outs(settings.database_url)
    stopped = rows(settings, """SELECT l.broker_id FROM leadflow.lead_consent c JOIN leadflow.leads l USING (lead_id)
                                WHERE l.display_name IN ('Inés', 'Luz') AND l.broker_id IN (%s, %s)""",
                   world.a.broker_id, world.b.broker_id)
    assert stopped == [(world.a.broker_id,)]


# --- the page -----------------------------------------------------------------------------------------------

def test_the_page_keeps_what_was_typed_and_names_the_field_and_needs_its_csrf_token(world: World,
                                                                                    settings: Settings) -> None:
    cookie = issue_token(world.tokens, world.users["admin_b"])
    token = csrf.token_for(world.tokens.secret, cookie)
    path = f"/dashboard/brokers/{world.b.broker_id}/admin/settings"
    world.client.cookies.update({COOKIE: cookie})
    try:
        shown = world.client.get(path)
        assert shown.status_code == 200 and 'id="form-scoring"' in shown.text and 'id="form-agent"' in shown.text
        assert f'href="{path}"' in shown.text  # the navigation's "Ajustes"
        form = {"based_on": "1", "hot": "35", "warm": "40", **{k: v for k, v in _scoring_form().items()
                                                              if k not in ("hot", "warm")}}
        assert world.client.post(f"{path}/scoring", data=form, follow_redirects=False).status_code == 403
        refused = world.client.post(f"{path}/scoring", data={**form, "csrf": token}, follow_redirects=False)
        assert refused.status_code == 422
        assert "hot: the hot threshold (35) must be above the warm one (40)" in refused.text
        assert 'name="hot" inputmode="decimal" value="35" aria-invalid="true"' in refused.text
        bad_json = world.client.post(f"{path}/scoring", data={**form, "hot": "80", "timeline": "[[3, 12]",
                                                              "csrf": token}, follow_redirects=False)
        assert bad_json.status_code == 422 and "no es JSON válido" in bad_json.text
        saved = world.client.post(f"{path}/scoring", data={**form, "hot": "80", "csrf": token},
                                  follow_redirects=False)
        assert saved.status_code == 303 and saved.headers["location"].startswith(f"{path}?saved=scoring")
    finally:
        world.client.cookies.clear()
    assert rows(settings, "SELECT scoring FROM leadflow.broker_settings WHERE broker_id = %s",
                world.b.broker_id) == [({"hot": 80},)]
    world.client.cookies.update({COOKIE: issue_token(world.tokens, world.users["agent_a"])})
    try:
        assert world.client.get(f"/dashboard/brokers/{world.a.broker_id}/admin/settings").status_code == 403
        inbox = world.client.get(f"/dashboard/brokers/{world.a.broker_id}/inbox")
        assert "/admin/settings" not in inbox.text  # no link an AGENT would be refused
    finally:
        world.client.cookies.clear()


def _scoring_form() -> dict[str, str]:
    from reports_api.routes.admin_settings_pages import shown

    return shown("scoring", effective("scoring", {}))


def test_the_migration_goes_down_and_up_again(pg_admin_url: str) -> None:
    from leadflow.config import with_database
    from leadflow.db.migrate import downgrade, upgrade
    from leadflow.services import postgres as embedded_postgres

    name = f"leadflow_st_{uuid.uuid4().hex[:8]}"
    embedded_postgres.create_database(pg_admin_url, name)
    url = with_database(pg_admin_url, name)
    try:
        upgrade(url, "0025_settings_versions")
        downgrade(url, "0024_user_invitations")
        with transaction(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('leadflow.broker_settings_versions'), "
                        "(SELECT count(*) FROM pg_attribute WHERE attrelid = 'leadflow.broker_settings'::regclass "
                        " AND attname IN ('scoring_changed_at', 'pipeline_changed_at'))")
            assert cur.fetchone() == (None, 0)
        upgrade(url)
    finally:
        embedded_postgres.drop_database(pg_admin_url, name)
