"""The reports API on real PostgreSQL over a real dbt build: roles, tenancy, tokens, numbers."""

from __future__ import annotations

import base64
import importlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import psycopg2
import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from leadflow.config import Settings
from reports_api.app import create_app
from reports_api.deps import broker_cursor
from reports_api.scope import ScopedPool
from reports_api.security import LoginLimiter, Principal, issue_token
from tests.reports_world import PASSWORD, World, build_world
from tests.test_leads_pipeline import rows

RANGE = {"start": "2026-01-01", "end": "2027-12-31"}
BROKER_TABLES: tuple[str, ...] = importlib.import_module(
    "leadflow.db.migrations.versions.0010_reports_access").BROKER_TABLES


@pytest.fixture(scope="module")
def world(settings: Settings) -> World:
    return build_world(settings)


@pytest.fixture(scope="module")
def client(settings: Settings, world: World) -> Iterator[TestClient]:
    with TestClient(create_app(settings.database_url, world.tokens)) as test_client:
        yield test_client


def bearer(world: World, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(world.tokens, world.users[who])}"}


def login(client: TestClient, email: str, password: str = PASSWORD) -> Any:
    return client.post("/auth/token", json={"email": email, "password": password})


def test_login_gives_a_token_that_names_the_role_and_broker(client: TestClient, world: World) -> None:
    answer = login(client, world.users["admin_a"].email.upper())  # emails match without case
    assert answer.status_code == 200
    body = answer.json()
    assert (body["role"], body["broker_id"], body["token_type"]) == ("ADMIN", world.a.broker_id, "bearer")
    me = client.get("/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["email"] == world.users["admin_a"].email


@pytest.mark.parametrize("email_of, password", [("admin_a", "not-the-password"), ("nobody", PASSWORD)])
def test_wrong_credentials_are_refused_alike(client: TestClient, world: World, email_of: str, password: str) -> None:
    email = world.users[email_of].email if email_of in world.users else "nobody@nowhere.test"
    answer = login(client, email, password)
    assert answer.status_code == 401
    assert answer.json() == {"detail": "wrong email or password"}


def test_logins_are_rate_limited(settings: Settings, world: World) -> None:
    app = create_app(settings.database_url, world.tokens, limiter=LoginLimiter(attempts=3, window_s=60))
    with TestClient(app) as limited:
        codes = [login(limited, world.users["admin_b"].email, "guess-number-one").status_code for _ in range(3)]
        blocked = login(limited, world.users["admin_b"].email)  # even the right password waits
    assert codes == [401, 401, 401]
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1


def test_the_funnel_counts_what_the_stage_events_say(client: TestClient, world: World, settings: Settings) -> None:
    answer = client.get(f"/brokers/{world.a.broker_id}/funnel", params={**RANGE, "grain": "day"},
                        headers=bearer(world, "admin_a"))
    assert answer.status_code == 200
    stages = {s["stage"]: s for s in answer.json()["stages"]}
    # Counted again here, straight from the pipeline's own table.
    expected = dict(rows(settings, """
        SELECT e.to_stage, count(DISTINCT e.lead_id) FROM leadflow.stage_events e
        JOIN leadflow.leads l USING (lead_id) WHERE e.broker_id = %s AND l.merged_into IS NULL
        GROUP BY 1""", world.a.broker_id))
    assert {stage: s["leads_entered"] for stage, s in stages.items()} == expected
    # Rosa opted out in her first message: lost without ever being in entrada.
    assert expected["entrada"] == 4 and expected["ganado"] == 1 and expected["perdido"] == 1
    entrada = stages["entrada"]
    assert entrada["leads_won"] == 1 and entrada["conversion_to_won"] == pytest.approx(1 / 4, abs=1e-4)
    # Lost is not an advance: the lead that opted out did not go beyond entrada.
    went_further = rows(settings, """
        SELECT count(DISTINCT e.lead_id) FROM leadflow.stage_events e
        WHERE e.broker_id = %s AND e.to_stage NOT IN ('entrada', 'perdido')""", world.a.broker_id)[0][0]
    assert entrada["leads_advanced"] == went_further
    assert entrada["conversion_to_next"] == pytest.approx(went_further / 4, abs=1e-4)
    assert stages["perfilamiento"]["share_of_entries"] == pytest.approx(expected["perfilamiento"] / 4, abs=1e-4)
    # The periods add up to the totals.
    periods = answer.json()["periods"]
    assert sum(p["leads_entered"] for p in periods if p["stage"] == "entrada") == 4


def test_funnel_filters_and_weekly_grain(client: TestClient, world: World) -> None:
    path = f"/brokers/{world.a.broker_id}/funnel"
    whatsapp = client.get(path, params={**RANGE, "channel": "whatsapp"}, headers=bearer(world, "admin_a")).json()
    assert whatsapp["grain"] == "week"
    assert {s["stage"]: s["leads_entered"] for s in whatsapp["stages"]} == {
        "entrada": 1, "perfilamiento": 1, "calificacion_financiera": 1, "potencial": 1, "ganado": 1, "perdido": 1}
    assert all(date_.weekday() == 0 for date_ in (datetime.fromisoformat(p["period_start"])
                                                  for p in whatsapp["periods"]))
    by_channel = client.get(f"/brokers/{world.a.broker_id}/conversion", params={**RANGE, "by": "channel"},
                            headers=bearer(world, "admin_a")).json()
    assert {c["value"]: c["leads_entered"] for c in by_channel} == {"whatsapp": 1, "telegram": 1, "vapi": 1, "form": 1}
    assert {c["value"]: c["leads_won"] for c in by_channel}["whatsapp"] == 1
    by_source = client.get(f"/brokers/{world.a.broker_id}/conversion", params={**RANGE, "by": "source"},
                           headers=bearer(world, "admin_a")).json()
    assert {c["value"] for c in by_source} == {"direct", "call", "form"}
    backwards = client.get(path, params={"start": "2026-12-31", "end": "2026-01-01"}, headers=bearer(world, "admin_a"))
    assert backwards.status_code == 422
    # Found by the fuzz test: a default start before year 1 was a 500 (OverflowError), now a 422.
    too_early = client.get(f"/brokers/{world.a.broker_id}/conversion", params={"end": "0001-01-01"},
                           headers=bearer(world, "admin_a"))
    assert too_early.status_code == 422


def test_cohorts_campaigns_and_leads(client: TestClient, world: World) -> None:
    headers = bearer(world, "admin_a")
    base = f"/brokers/{world.a.broker_id}"
    cohorts = client.get(f"{base}/cohorts", params=RANGE, headers=headers).json()
    assert sum(c["leads_in_cohort"] for c in cohorts) == 5
    [campaign] = client.get(f"{base}/campaigns", headers=headers).json()
    assert campaign["name"] == "Reactivar tibios" and campaign["sends"]["sent"] == 0

    page = client.get(f"{base}/leads", params={"limit": 2, "sort": "score"}, headers=headers).json()
    assert page["total"] == 5 and len(page["items"]) == 2
    scores = [i["score"] for i in page["items"]]
    assert scores == sorted(scores, reverse=True)
    rest = client.get(f"{base}/leads", params={"limit": 2, "offset": 4}, headers=headers).json()
    assert rest["total"] == 5 and len(rest["items"]) == 1
    past_the_end = client.get(f"{base}/leads", params={"offset": 50}, headers=headers).json()
    assert (past_the_end["total"], past_the_end["items"]) == (5, [])
    won = client.get(f"{base}/leads", params={"stage": "ganado"}, headers=headers).json()
    assert [i["lead_id"] for i in won["items"]] == [world.won_lead]
    assert won["items"][0]["operation"] == "buy" and won["items"][0]["budget_currency"] == "UF"
    named = client.get(f"{base}/leads", params={"q": "camila"}, headers=headers).json()
    assert [i["lead_id"] for i in named["items"]] == [world.won_lead]

    detail = client.get(f"{base}/leads/{world.won_lead}", headers=headers).json()
    assert detail["qualification"]["locations"] == ["ñuñoa"]
    assert set(detail["score"]["breakdown"]) and detail["score"]["temperature"] == "hot"
    history = [e["to_stage"] for e in detail["stage_history"]]
    assert history[0] == "entrada" and history[-1] == "ganado"
    assert detail["stage"]["stage"] == "ganado"


def test_an_agent_sees_only_the_leads_assigned_to_it(client: TestClient, world: World, settings: Settings) -> None:
    headers = bearer(world, "agent_a")
    base = f"/brokers/{world.a.broker_id}"
    page = client.get(f"{base}/leads", headers=headers).json()
    assert sorted(i["lead_id"] for i in page["items"]) == world.agent_leads and page["total"] == 2
    [(other,)] = rows(settings, """SELECT lead_id FROM leadflow.leads WHERE broker_id = %s AND merged_into IS NULL
                                   AND NOT lead_id = ANY(%s) ORDER BY lead_id LIMIT 1""",
                      world.a.broker_id, world.agent_leads)
    assert client.get(f"{base}/leads/{other}", headers=headers).status_code == 404
    assert client.get(f"{base}/leads/{world.agent_leads[0]}", headers=headers).status_code == 200


def test_a_superadmin_reads_every_broker(client: TestClient, world: World) -> None:
    headers = bearer(world, "superadmin")
    listed = {b["broker_id"] for b in client.get("/brokers", headers=headers).json()}
    assert {world.a.broker_id, world.b.broker_id} <= listed
    for broker in (world.a, world.b):
        answer = client.get(f"/brokers/{broker.broker_id}/leads", headers=headers)
        assert answer.status_code == 200 and answer.json()["total"] >= 2
    assert client.get("/brokers/999999999/funnel", headers=headers).status_code == 404
    # An admin lists only its own broker.
    assert [b["broker_id"] for b in client.get("/brokers", headers=bearer(world, "admin_b")).json()] == \
        [world.b.broker_id]


def _b_lead(settings: Settings, world: World) -> int:
    return int(rows(settings, "SELECT min(lead_id) FROM leadflow.leads WHERE broker_id = %s", world.b.broker_id)[0][0])


@pytest.mark.parametrize("path", ["funnel", "conversion", "cohorts", "campaigns", "leads", "leads/{lead}"])
def test_another_brokers_id_in_the_path_is_forbidden(client: TestClient, world: World, settings: Settings,
                                                      path: str) -> None:
    url = f"/brokers/{world.b.broker_id}/" + path.format(lead=_b_lead(settings, world))
    answer = client.get(url, headers=bearer(world, "admin_a"))
    assert answer.status_code == 403
    assert set(answer.json()) == {"detail"}


def test_another_brokers_lead_under_ones_own_broker_is_not_found(client: TestClient, world: World,
                                                                  settings: Settings) -> None:
    answer = client.get(f"/brokers/{world.a.broker_id}/leads/{_b_lead(settings, world)}",
                        headers=bearer(world, "admin_a"))
    assert answer.status_code == 404 and "Lucía" not in answer.text


def _tamper(token: str, **claims: Any) -> str:
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**decoded, **claims}).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_bad_tokens_get_401_and_no_data(client: TestClient, world: World) -> None:
    url = f"/brokers/{world.b.broker_id}/leads"
    own = issue_token(world.tokens, world.users["admin_a"])
    expired = issue_token(world.tokens, world.users["admin_b"], now=datetime.now(UTC) - timedelta(days=1))
    foreign_key = jwt.encode({"sub": str(world.users["admin_b"].user_id), "email": "x", "role": "ADMIN",
                              "broker_id": world.b.broker_id, "iss": "leadflow-reports",
                              "iat": datetime.now(UTC), "exp": datetime.now(UTC) + timedelta(hours=1)},
                             "another-secret-that-is-long-enough-to-sign", algorithm="HS256")
    unsigned = jwt.encode({"sub": "1", "role": "SUPERADMIN", "broker_id": None}, "", algorithm="none")
    for token in (_tamper(own, broker_id=world.b.broker_id), _tamper(own, role="SUPERADMIN", broker_id=None),
                  expired, foreign_key, unsigned, "not-a-jwt"):
        answer = client.get(url, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, token
        assert "items" not in answer.json()
    assert "expired" in client.get(url, headers={"Authorization": f"Bearer {expired}"}).json()["detail"]
    assert client.get(url).status_code == 401


def test_row_security_hides_other_brokers_whatever_the_sql_asks(settings: Settings, world: World) -> None:
    pool = ScopedPool(settings.database_url, 1)
    admin_a = Principal(world.users["admin_a"].user_id, "a", "ADMIN", world.a.broker_id)
    try:
        with pool.cursor(admin_a, world.a.broker_id) as cur:
            for table in (*(f"leadflow.{t}" for t in BROKER_TABLES), "marts.fct_funnel_daily",
                          "marts.fct_cohorts_weekly", "marts.fct_campaign_attribution", "marts.fct_stage_conversion"):
                cur.execute(f"SELECT count(*) FILTER (WHERE broker_id <> %s), count(*) FROM {table}",
                            (world.a.broker_id,))
                others, total = cur.fetchone() or (None, None)
                assert others == 0, table
                if table in ("leadflow.leads", "marts.fct_funnel_daily", "leadflow.stage_events"):
                    assert total and total > 0, table  # the broker's own rows are there
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction), pool.cursor(admin_a, world.a.broker_id) as cur:
            cur.execute("UPDATE leadflow.leads SET display_name = 'x' WHERE broker_id = %s", (world.b.broker_id,))
        with pytest.raises(PermissionError), pool.cursor(admin_a, world.b.broker_id):
            pass
    finally:
        pool.close()
    # The role alone, with no broker named, sees nothing at all.
    conn = psycopg2.connect(settings.database_url)
    with conn, conn.cursor() as cur:
        cur.execute("SET LOCAL ROLE leadflow_reports; SELECT count(*) FROM leadflow.leads")
        assert cur.fetchone() == (0,)
    conn.close()


def test_openapi_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/auth/token", "/brokers/{broker_id}/funnel", "/brokers/{broker_id}/leads/{lead_id}"} <= set(paths)


def test_a_report_read_before_its_mart_is_built_is_a_503_saying_so(settings: Settings, world: World) -> None:
    # A fresh install has no marts until the first analytics build: the pages must say so, not fail with a 500.
    pool = ScopedPool(settings.database_url, 1)
    admin_a = Principal(world.users["admin_a"].user_id, "a", "ADMIN", world.a.broker_id)
    try:
        with pytest.raises(HTTPException) as refused, broker_cursor(pool, admin_a, world.a.broker_id) as cur:
            cur.execute("SELECT * FROM marts.fct_not_built_yet WHERE broker_id = %s", (world.a.broker_id,))
        assert refused.value.status_code == 503 and "not built yet" in str(refused.value.detail)
    finally:
        pool.close()
