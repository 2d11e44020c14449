"""The analytics job: incremental dbt models agree with a full rebuild, the refresh sensor, dbt docs."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, RunRequest, SensorResult, SkipReason, build_sensor_context, materialize
from dagster_dbt import DbtCliResource
from fastapi.testclient import TestClient

from leadflow.brokers import add_broker
from leadflow.config import Settings, Topics
from leadflow.events import Contact
from leadflow.kafka import ensure_topics
from leadflow.users import add_user
from pipelines.resources import PostgresResource
from reports_api.app import create_app
from reports_api.security import TokenSettings, issue_token
from tests.test_leads_pipeline import T0, rows, run, send

AS_OF = T0 + timedelta(days=1)


def dbt(settings: Settings, **config: Any) -> None:
    """The analytics build, as of a day after the tests' messages (``T0``), whatever today is."""
    from assets.analytics import dbt_project, leadflow_dbt_models

    config = {"as_of": AS_OF.isoformat(), **config}
    result = materialize([leadflow_dbt_models], resources={
        "dbt": DbtCliResource(project_dir=dbt_project, profiles_dir=str(dbt_project.profiles_dir))},
        run_config={"ops": {"leadflow_dbt_models": {"config": config}}})
    assert result.success


def snapshot(settings: Settings, broker_id: int) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "visits": rows(settings, """SELECT stage_visit_id, lead_id, stage, entered_at, exited_at, next_stage
                                    FROM intermediate.int_stage_visits WHERE broker_id = %s ORDER BY 1""", broker_id),
        "sources": rows(settings, """SELECT lead_id, is_merged, first_channel, source, first_contact_at
                                     FROM intermediate.int_leads_sourced WHERE broker_id = %s ORDER BY 1""", broker_id),
        "funnel": rows(settings, """SELECT period_start, channel, source, campaign, stage, leads_entered,
                                           leads_advanced, leads_won, leads_now
                                    FROM marts.fct_funnel_daily WHERE broker_id = %s
                                    ORDER BY 1, 2, 3, 4, 5""", broker_id),
        "cohorts": rows(settings, """SELECT cohort_week, stage, leads_in_cohort, leads_reached
                                     FROM marts.fct_cohorts_weekly WHERE broker_id = %s ORDER BY 1, 2""", broker_id),
    }


@pytest.fixture
def topics(settings: Settings) -> Topics:
    fresh = Topics(f"t{uuid.uuid4().hex[:8]}")
    ensure_topics(settings.kafka_bootstrap_servers, fresh.all(), settings.kafka_partitions)
    return fresh


def test_an_incremental_rerun_gives_what_a_full_rebuild_gives(settings: Settings, topics: Topics) -> None:
    broker = add_broker(settings.database_url, f"incr-{uuid.uuid4().hex[:8]}", name="Incremental", country="CL",
                        timezone="America/Santiago")
    ana = Contact(channel_user_id="56944444444", phone_e164="+56944444444")
    send(settings, topics, broker, ("whatsapp", "wa-i1", ana, "hola", 0),
         ("telegram", "tg-i2", Contact(channel_user_id="9101"), "hola", 1))
    run(settings, topics)
    dbt(settings)
    first = snapshot(settings, broker.broker_id)
    assert [(v[2], v[4]) for v in first["visits"]] == [("entrada", None), ("entrada", None)]

    # Ana moves on (her entrada visit gets an exit), a third lead arrives through a link.
    send(settings, topics, broker,
         ("whatsapp", "wa-i3", ana, "Soy Ana, busco depto en Ñuñoa hasta 4.000 UF", 30),
         ("telegram", "tg-i4", Contact(channel_user_id="9102", display_name="Caro"), "/start portal_inmobiliario", 31))
    run(settings, topics)
    dbt(settings)
    incremental = snapshot(settings, broker.broker_id)
    [(ana_lead,)] = rows(settings, "SELECT lead_id FROM leadflow.leads WHERE broker_id = %s AND phone_e164 = %s",
                         broker.broker_id, "+56944444444")
    ana_visits = [v for v in incremental["visits"] if v[1] == ana_lead]
    assert ana_visits[0][2] == "entrada" and ana_visits[0][4] is not None and ana_visits[0][5] == "perfilamiento"
    assert {s[3] for s in incremental["sources"]} == {"direct", "link"}

    dbt(settings, full_refresh=True)
    assert snapshot(settings, broker.broker_id) == incremental

    # The telegram lead shares Ana's phone: the two merge, and the merged lead's rows must go.
    send(settings, topics, broker, ("telegram", "tg-i5", Contact(channel_user_id="9101", phone_e164="+56944444444"),
                                    "este es mi número", 40))
    assert run(settings, topics)["leads"]["merges"] == 1
    dbt(settings)
    merged = snapshot(settings, broker.broker_id)
    assert sum(c[2] for c in merged["cohorts"] if c[1] == "entrada") == 2  # three leads, one merged away
    dbt(settings, full_refresh=True)
    assert snapshot(settings, broker.broker_id) == merged


def test_the_refresh_sensor_asks_for_a_build_only_when_data_changed(settings: Settings, topics: Topics) -> None:
    from sensors.analytics_refresh import analytics_refresh_sensor

    postgres = PostgresResource(url=settings.database_url)
    instance = DagsterInstance.ephemeral()

    def tick(cursor: str | None) -> SensorResult | SkipReason:
        context = build_sensor_context(instance=instance, cursor=cursor, resources={"postgres": postgres})
        result = analytics_refresh_sensor(context)
        assert isinstance(result, SensorResult | SkipReason)
        return result

    first = tick(None)
    assert isinstance(first, SensorResult) and first.cursor
    [request] = first.run_requests or []
    assert isinstance(request, RunRequest) and request.run_key == f"analytics-{first.cursor}"
    assert isinstance(tick(first.cursor), SkipReason)

    broker = add_broker(settings.database_url, f"fresh-{uuid.uuid4().hex[:8]}", name="Fresh", country="CL",
                        timezone="America/Santiago")
    send(settings, topics, broker, ("whatsapp", "wa-f1", Contact(channel_user_id="56955555555"), "hola", 0))
    run(settings, topics)
    after = tick(first.cursor)
    assert isinstance(after, SensorResult) and after.cursor != first.cursor


def test_dbt_docs_are_generated_and_served(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from assets.analytics import dbt_docs, dbt_project

    monkeypatch.setenv("LEADFLOW_DBT_DOCS_DIR", str(tmp_path / "docs"))
    result = materialize([dbt_docs], resources={
        "dbt": DbtCliResource(project_dir=dbt_project, profiles_dir=str(dbt_project.profiles_dir))})
    assert result.success
    [materialization] = result.asset_materializations_for_node("dbt_docs")
    assert materialization.metadata["models_in_catalog"].value > 10  # type: ignore[operator]
    docs = Settings.from_environment().docs_dir
    tokens = TokenSettings.ephemeral()
    monkeypatch.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
    # A real account: the API checks every token's account (issue 17, finding 2).
    ops = add_user(settings.database_url, f"ops-{uuid.uuid4().hex[:8]}@leadflow.test", "una-clave-larga-de-prueba",
                   role="SUPERADMIN")
    analyst = {"Authorization": "Bearer " + issue_token(tokens, ops)}
    with TestClient(create_app(settings.database_url, tokens, docs_dir=docs)) as client:
        page = client.get("/dbt-docs/", headers=analyst)
        catalog = client.get("/dbt-docs/catalog.json", headers=analyst)
    assert page.status_code == 200 and "dbt" in page.text.lower()
    assert "model.leadflow.fct_funnel_daily" in catalog.json()["nodes"]


def test_a_broker_with_its_own_pipeline_gets_its_own_funnel(settings: Settings, topics: Topics) -> None:
    from leadflow.db.connection import transaction
    from leadflow.leads.stages import Pipeline
    from leadflow.leads.store.stages import move_lead_forward

    broker = add_broker(settings.database_url, f"own-{uuid.uuid4().hex[:8]}", name="Own pipeline", country="CL",
                        timezone="America/Santiago")
    pipeline = {"stages": [
        {"code": "nuevo", "name": "Nuevo", "stall_days": 1},
        {"code": "con_datos", "name": "Con datos", "requires": ["has_name", "has_contact_or_budget"]},
        {"code": "firmado", "name": "Firmado"}]}
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO leadflow.broker_settings (broker_id, pipeline) VALUES (%s, %s::jsonb)",
                    (broker.broker_id, json.dumps(pipeline)))
    send(settings, topics, broker,
         ("whatsapp", "wa-o1", Contact(channel_user_id="56966666666", phone_e164="+56966666666"),
          "Soy Marta, busco casa hasta 6.000 UF", 0),
         ("telegram", "tg-o2", Contact(channel_user_id="9301"), "hola", 1))
    run(settings, topics)
    [(marta,)] = rows(settings, "SELECT lead_id FROM leadflow.leads WHERE broker_id = %s AND phone_e164 = %s",
                      broker.broker_id, "+56966666666")
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        move_lead_forward(cur, broker.broker_id, marta, "firmado", Pipeline.from_settings(pipeline),
                          T0 + timedelta(minutes=30), "signed", automatic=False)
    dbt(settings)
    funnel = rows(settings, """SELECT stage, stage_name, stage_position, sum(leads_entered), sum(leads_won)
                               FROM marts.fct_funnel_daily WHERE broker_id = %s AND channel = 'all'
                               AND source = 'all' AND campaign = 'all' GROUP BY 1, 2, 3 ORDER BY 3""",
                  broker.broker_id)
    assert funnel == [("nuevo", "Nuevo", 1, 2, 1), ("con_datos", "Con datos", 2, 1, 1), ("firmado", "Firmado", 3, 1, 1)]
    cohort_stages = rows(settings, "SELECT DISTINCT stage FROM marts.fct_cohorts_weekly WHERE broker_id = %s",
                         broker.broker_id)
    assert {s for (s,) in cohort_stages} == {"nuevo", "con_datos", "firmado", "perdido"}
