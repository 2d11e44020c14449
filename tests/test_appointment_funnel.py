"""The appointment funnel: set, held and no-show rates in the dbt marts (a real build of the appointment models and
what they read) and in the reports API, per broker, agent and channel — never another broker's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from dagster import materialize
from dagster_dbt import DbtCliResource
from fastapi.testclient import TestClient

from leadflow.appointments import store
from leadflow.appointments.slots import Slot
from leadflow.brokers import Broker, add_broker
from leadflow.config import Settings, Topics
from leadflow.db.connection import transaction
from leadflow.events import Contact
from leadflow.kafka import ensure_topics
from leadflow.users import User, add_user, assign_leads
from reports_api.app import create_app
from reports_api.scope import ScopedPool
from reports_api.security import Principal, TokenSettings, issue_token
from tests.test_leads_pipeline import T0, rows, run, send

pytestmark = pytest.mark.services
# The visits below are booked an hour after the first messages (T0, a Monday) and the funnel is read a day later:
# one visit is ahead then, and one marked two hours after that is still unmarked as of then.
AS_OF = T0 + timedelta(days=1)
PASSWORD = "una-clave-larga-de-prueba"


@dataclass(frozen=True)
class Funnel:
    a: Broker
    b: Broker
    ana: User
    admin_a: User
    tokens: TokenSettings


def _lead(settings: Settings, broker: Broker, name: str) -> int:
    [(lead_id,)] = rows(settings, "SELECT lead_id FROM leadflow.leads WHERE broker_id = %s AND display_name = %s",
                        broker.broker_id, name)
    return int(lead_id)


def _book(cur: Any, broker: Broker, lead_id: int, hours: float, channel: str, agent: int | None = None,
          status: str | None = None, at: float | None = None) -> int:
    start = T0 + timedelta(hours=hours)
    booked = store.book(cur, broker.broker_id, lead_id, Slot(start, start + timedelta(hours=1), (agent,)),
                        T0 + timedelta(hours=1), source="agent", actor="lead", channel=channel, check_free=False)
    assert isinstance(booked, store.Appointment)
    if status is not None:
        store.change_status(cur, broker.broker_id, booked.appointment_id, status,  # type: ignore[arg-type]
                            T0 + timedelta(hours=at or hours + 1), actor="person")
    return booked.appointment_id


@pytest.fixture(scope="module")
def funnel(settings: Settings) -> Funnel:
    topics = Topics(f"t{uuid.uuid4().hex[:8]}")
    ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_partitions)
    tag = uuid.uuid4().hex[:8]
    url = settings.database_url
    a = add_broker(url, f"citas-a-{tag}", name="Propiedades Andes", country="CL", timezone="America/Santiago")
    b = add_broker(url, f"citas-b-{tag}", name="Bienes Raíces Bajío", country="MX", timezone="America/Mexico_City")
    send(settings, topics, a,
         ("whatsapp", "wa-c1", Contact(channel_user_id="56910000001", display_name="Camila"), "hola, busco depto", 0),
         ("whatsapp", "wa-c2", Contact(channel_user_id="56910000002", display_name="Rosa"), "hola", 1),
         ("telegram", "tg-c3", Contact(channel_user_id="7101", display_name="Tomás"), "hola", 2),
         ("telegram", "tg-c4", Contact(channel_user_id="7102", display_name="Pedro"), "hola", 3))
    send(settings, topics, b,
         ("whatsapp", "wa-c5", Contact(channel_user_id="5215510000001", display_name="Lucía"), "hola", 0))
    run(settings, topics)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
        ana = add_user(url, f"ana-{tag}@andes.test", PASSWORD, role="AGENT", broker_slug=a.slug, display_name="Ana")
        admin_a = add_user(url, f"admin-{tag}@andes.test", PASSWORD, role="ADMIN", broker_slug=a.slug)
    camila, rosa, tomas = (_lead(settings, a, n) for n in ("Camila", "Rosa", "Tomás"))
    assign_leads(url, ana.email, [camila])
    with transaction(url) as conn, conn.cursor() as cur:
        _book(cur, a, camila, 3, "whatsapp", ana.user_id, "completed")
        _book(cur, a, rosa, 5, "whatsapp", None, "no_show")
        # Came due and nobody marked it by the funnel's instant (marked two hours after it).
        _book(cur, a, tomas, 7, "telegram", None, "no_show", at=26)
        _book(cur, a, rosa, 9, "whatsapp", None, "cancelled", at=2)
        moved = _book(cur, a, camila, 20, "whatsapp", ana.user_id)
        start = T0 + timedelta(hours=30)
        assert isinstance(store.reschedule(cur, a.broker_id, moved, Slot(start, start + timedelta(hours=1),
                                                                         (ana.user_id,)),
                                           T0 + timedelta(hours=2), actor="lead", check_free=False), store.Appointment)
        _book(cur, b, _lead(settings, b, "Lucía"), 3, "whatsapp", None, "no_show")
    from assets.analytics import dbt_project, leadflow_dbt_models

    # The whole build, as the analytics job runs it: the appointment marts beside every other (the dashboard reads
    # them all), their tests with the others'.
    result = materialize([leadflow_dbt_models], resources={
        "dbt": DbtCliResource(project_dir=dbt_project, profiles_dir=str(dbt_project.profiles_dir))},
        run_config={"ops": {leadflow_dbt_models.op.name: {"config": {"as_of": AS_OF.isoformat()}}}})
    assert result.success
    return Funnel(a, b, ana, admin_a, TokenSettings.ephemeral())


def _cell(settings: Settings, broker: Broker, period: str, agent: str, channel: str) -> tuple[Any, ...]:
    [row] = rows(settings, """SELECT leads, leads_with_appointment, appointments_set, appointments_due,
                                     appointments_held, appointments_no_show, appointments_cancelled,
                                     appointments_unmarked, round(appointment_set_rate, 4), round(held_rate, 4),
                                     round(no_show_rate, 4)
                              FROM marts.fct_appointment_rates
                              WHERE broker_id = %s AND period = %s AND agent = %s AND channel = %s""",
                 broker.broker_id, period, agent, channel)
    return tuple(float(v) if v is not None and not isinstance(v, int) else v for v in row)


def test_the_marts_count_set_held_and_no_show_visits_as_of_the_build(settings: Settings, funnel: Funnel) -> None:
    # Four leads, three with a visit; five visits set (the rescheduled one counts as the one it moved to), three came
    # due: one held, one missed, one not marked yet (its no-show came after the funnel's instant); one cancelled.
    everything = (4, 3, 5, 3, 1, 1, 1, 1, 0.75, 0.3333, 0.3333)
    assert _cell(settings, funnel.a, "week", "all", "all") == everything
    assert _cell(settings, funnel.a, "month", "all", "all") == everything
    ana = str(funnel.ana.user_id)
    assert _cell(settings, funnel.a, "week", ana, "all") == (1, 1, 2, 1, 1, 0, 0, 0, 1.0, 1.0, 0.0)
    assert _cell(settings, funnel.a, "week", "none", "all") == (3, 2, 3, 2, 0, 1, 1, 1, 0.6667, 0.0, 0.5)
    assert _cell(settings, funnel.a, "week", "all", "whatsapp") == (2, 2, 4, 2, 1, 1, 1, 0, 1.0, 0.5, 0.5)
    assert _cell(settings, funnel.a, "week", "all", "telegram") == (2, 1, 1, 1, 0, 0, 0, 1, 0.5, 0.0, 0.0)
    assert _cell(settings, funnel.b, "week", "all", "all") == (1, 1, 1, 1, 0, 1, 0, 0, 1.0, 0.0, 1.0)
    [(start,)] = rows(settings, "SELECT DISTINCT period_start FROM marts.fct_appointment_rates "
                                "WHERE broker_id = %s AND period = 'week'", funnel.a.broker_id)
    assert str(start) == "2026-11-02"  # the Monday, in Santiago


@pytest.fixture(scope="module")
def client(settings: Settings, funnel: Funnel) -> Iterator[TestClient]:
    with TestClient(create_app(settings.database_url, funnel.tokens)) as test_client:
        yield test_client


def test_the_reports_api_gives_a_broker_its_rates_per_agent_and_channel(client: TestClient, funnel: Funnel) -> None:
    headers = {"Authorization": f"Bearer {issue_token(funnel.tokens, funnel.admin_a)}"}
    answer = client.get(f"/brokers/{funnel.a.broker_id}/appointments/rates",
                        params={"start": "2026-11-01", "end": "2026-11-30", "period": "week"}, headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    totals = body["totals"]
    assert (totals["leads"], totals["leads_with_appointment"], totals["appointments_due"]) == (4, 3, 3)
    assert (totals["appointment_set_rate"], totals["held_rate"], totals["no_show_rate"]) == (0.75, 0.3333, 0.3333)
    assert [p["period_start"] for p in body["periods"]] == ["2026-11-02"]
    def rates(row: dict[str, Any]) -> tuple[float | None, ...]:
        return row["appointment_set_rate"], row["held_rate"], row["no_show_rate"]

    agents = {r["agent_name"]: rates(r) for r in body["by_agent"]}
    assert agents == {"Ana": (1.0, 1.0, 0.0), "Sin agente": (0.6667, 0.0, 0.5)}
    channels = {r["channel"]: rates(r) for r in body["by_channel"]}
    assert channels == {"whatsapp": (1.0, 0.5, 0.5), "telegram": (0.5, 0.0, 0.0)}
    monthly = client.get(f"/brokers/{funnel.a.broker_id}/appointments/rates",
                         params={"start": "2026-11-01", "end": "2026-11-30", "period": "month"}, headers=headers)
    assert monthly.json()["totals"] == totals


def test_another_brokers_rates_are_never_read(client: TestClient, settings: Settings, funnel: Funnel) -> None:
    headers = {"Authorization": f"Bearer {issue_token(funnel.tokens, funnel.admin_a)}"}
    forbidden = client.get(f"/brokers/{funnel.b.broker_id}/appointments/rates",
                           params={"start": "2026-11-01", "end": "2026-11-30"}, headers=headers)
    assert forbidden.status_code == 403 and "no_show_rate" not in forbidden.text
    pool = ScopedPool(settings.database_url, 1)
    try:
        with pool.cursor(Principal(funnel.admin_a.user_id, "a", "ADMIN", funnel.a.broker_id),
                         funnel.a.broker_id) as cur:
            for mart in ("marts.fct_appointments", "marts.fct_appointment_rates"):
                cur.execute(f"SELECT count(*) FILTER (WHERE broker_id <> %s), count(*) FROM {mart}",
                            (funnel.a.broker_id,))
                others, own = cur.fetchone() or (None, None)
                assert others == 0 and own, mart
    finally:
        pool.close()


def test_rates_with_nothing_to_divide_are_null_not_zero(client: TestClient, funnel: Funnel) -> None:
    headers = {"Authorization": f"Bearer {issue_token(funnel.tokens, funnel.admin_a)}"}
    body = client.get(f"/brokers/{funnel.a.broker_id}/appointments/rates",
                      params={"start": "2025-01-01", "end": "2025-01-31"}, headers=headers).json()
    assert body["periods"] == [] and body["totals"]["held_rate"] is None and body["totals"]["leads"] == 0


def test_the_dashboard_shows_the_appointment_rates_per_agent_and_channel(client: TestClient, funnel: Funnel) -> None:
    from reports_api.dashboard import COOKIE

    client.cookies.set(COOKIE, issue_token(funnel.tokens, funnel.admin_a))
    try:
        page = client.get(f"/dashboard/brokers/{funnel.a.broker_id}", params={"start": "2026-11-01",
                                                                              "end": "2026-11-30"})
    finally:
        client.cookies.clear()
    assert page.status_code == 200
    section = page.text[page.text.index('<table id="appointments">'):]
    section = section[:section.index("</table>")]
    rows_shown = [" ".join(cell.split("<")[0] for cell in row.split("<td>")[1:])
                  for row in section.split("<tr")[2:]]
    assert rows_shown[0].split() == ["Total", "4", "3", "75.0%", "5", "3", "1", "1", "1", "33.3%", "33.3%"]
    shown = {" ".join(r.split()) for r in rows_shown}
    assert {"Ana 1 1 100.0% 2 1 1 0 0 100.0% 0.0%", "Sin agente 3 2 66.7% 3 2 0 1 1 0.0% 50.0%",
            "Canal whatsapp 2 2 100.0% 4 2 1 1 0 50.0% 50.0%", "Canal telegram 2 1 50.0% 1 1 0 0 1 0.0% 0.0%"} <= shown
