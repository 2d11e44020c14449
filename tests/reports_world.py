"""Two brokers with leads that went through the real pipeline and a real dbt build, and their users.

Shared by the reports API, dashboard and fuzz tests (built once per test module that asks).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest
from dagster import materialize
from dagster_dbt import DbtCliResource

from leadflow.brokers import Broker, add_broker
from leadflow.campaigns.store import save_campaign
from leadflow.config import Settings, Topics
from leadflow.db.connection import transaction
from leadflow.events import Contact
from leadflow.kafka import ensure_topics
from leadflow.leads.stages import DEFAULT_PIPELINE
from leadflow.leads.store.stages import move_lead_forward
from leadflow.users import User, add_user, assign_leads
from reports_api.security import TokenSettings
from tests.test_leads_pipeline import T0, rows, run, send

PASSWORD = "una-clave-larga-de-prueba"
# The world's messages are sent from T0 on; the reports describe it an hour later, whatever today is.
AS_OF = T0 + timedelta(hours=1)


@dataclass(frozen=True)
class World:
    a: Broker
    b: Broker
    users: dict[str, User]  # superadmin, admin_a, admin_b, agent_a
    agent_leads: list[int]
    won_lead: int
    tokens: TokenSettings


def build_world(settings: Settings) -> World:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")  # the test's logins, not bcrypt's cost, are under test
        return _build(settings)


def _build(settings: Settings) -> World:
    url = settings.database_url
    topics = Topics(f"t{uuid.uuid4().hex[:8]}")
    ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_partitions)
    tag = uuid.uuid4().hex[:8]
    a = add_broker(url, f"reports-a-{tag}", name="Propiedades Andes", country="CL", timezone="America/Santiago")
    b = add_broker(url, f"reports-b-{tag}", name="Bienes Raíces Bajío", country="MX", timezone="America/Mexico_City")

    def contact(channel_user_id: str, name: str | None = None, phone: str | None = None) -> Contact:
        return Contact(channel_user_id=channel_user_id, display_name=name, phone_e164=phone)

    send(settings, topics, a,
         ("whatsapp", "wa-a1", contact("56911111111", "Camila Rojas", "+56911111111"),
          "Hola, busco depto 2d2b en Ñuñoa, hasta 5.200 UF, crédito preaprobado", 0),
         ("telegram", "tg-a2", contact("7001", "Tomás"), "hola", 3),
         ("vapi", "call-a3:1", contact("+56922222222", None, "+56922222222"),
          "Soy Pedro, quiero arrendar en Providencia hasta 600 lucas", 10),
         ("whatsapp", "wa-a4", contact("56933333333", "Rosa", "+56933333333"), "ya no me escriban más", 20),
         ("form", "form-a5", contact("ana@example.cl", "Ana Soto"),
          "Me llamo Ana, busco casa en La Reina hasta 9.000 UF, tengo el pie", 30))
    send(settings, topics, b,
         ("whatsapp", "wa-b1", contact("5215511111111", "Lucía", "+525511111111"),
          "Busco departamento en Polanco, hasta 7 millones de pesos, de contado", 0),
         ("telegram", "tg-b2", contact("8001", "Jorge"), "info por favor", 5))
    run(settings, topics)

    [(camila,)] = rows(settings, "SELECT lead_id FROM leadflow.leads WHERE broker_id = %s AND display_name = %s",
                       a.broker_id, "Camila Rojas")
    with transaction(url) as conn, conn.cursor() as cur:
        move_lead_forward(cur, a.broker_id, camila, "ganado", DEFAULT_PIPELINE, T0 + timedelta(minutes=40),
                          "signed the promesa", automatic=False)
    save_campaign(url, a.slug, "Reactivar tibios", {
        "trigger": {"type": "manual"}, "steps": [{"action": "message", "template": "Hola {{first_name}}"}]})

    build_analytics(settings)

    users = {
        "superadmin": add_user(url, f"root-{tag}@leadflow.test", PASSWORD, role="SUPERADMIN"),
        "admin_a": add_user(url, f"admin-{tag}@andes.test", PASSWORD, role="ADMIN", broker_slug=a.slug),
        "admin_b": add_user(url, f"admin-{tag}@bajio.test", PASSWORD, role="ADMIN", broker_slug=b.slug),
        "agent_a": add_user(url, f"agente-{tag}@andes.test", PASSWORD, role="AGENT", broker_slug=a.slug),
    }
    agent_leads = [lead for (lead,) in rows(
        settings, "SELECT lead_id FROM leadflow.leads WHERE broker_id = %s AND merged_into IS NULL "
                  "ORDER BY lead_id LIMIT 2", a.broker_id)]
    assign_leads(url, users["agent_a"].email, agent_leads)
    return World(a, b, users, agent_leads, camila, TokenSettings.ephemeral())


def build_analytics(settings: Settings) -> None:
    """The dbt build, as the analytics job runs it (incremental), as of ``AS_OF``."""
    from assets.analytics import dbt_project, leadflow_dbt_models

    result = materialize([leadflow_dbt_models], resources={
        "dbt": DbtCliResource(project_dir=dbt_project, profiles_dir=str(dbt_project.profiles_dir))},
        run_config={"ops": {leadflow_dbt_models.op.name: {"config": {"as_of": AS_OF.isoformat()}}}})
    assert result.success
