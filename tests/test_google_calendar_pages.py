"""The Google Calendar page of the reports app (issue 15): an admin connects the broker's calendar, a person their own,
through the OAuth redirect and callback against a local fake Google; forged or borrowed states are refused and store
nothing; another broker's admin can neither see nor touch a connection; no token reaches a page, a log or the audit."""

from __future__ import annotations

import html
import json
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from leadflow.appointments import google
from leadflow.brokers import Broker, add_broker
from leadflow.config import Settings
from leadflow.db.connection import transaction
from leadflow.users import User, add_user
from reports_api.app import create_app
from reports_api.security import LoginLimiter, TokenSettings
from tests.fake_google import CLIENT_ID, CLIENT_SECRET, FakeGoogle

pytestmark = pytest.mark.services
PASSWORD = "una-clave-larga-de-prueba"


@dataclass
class World:
    a: Broker
    b: Broker
    users: dict[str, User]
    app: object
    fake: FakeGoogle
    url: str

    def browser(self, who: str) -> TestClient:
        client = TestClient(self.app, follow_redirects=False)  # type: ignore[arg-type]
        answer = client.post("/dashboard/login", data={"email": self.users[who].email, "password": PASSWORD})
        assert answer.status_code == 303, answer.text
        return client

    def rows(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        with transaction(self.url) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()


@pytest.fixture(scope="module")
def world(settings: Settings) -> Iterator[World]:
    tag = uuid.uuid4().hex[:8]
    url = settings.database_url
    a = add_broker(url, f"gc-a-{tag}", name="Calendario A", country="CL", timezone="America/Santiago")
    b = add_broker(url, f"gc-b-{tag}", name="Calendario B", country="MX", timezone="America/Mexico_City")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
        users = {"admin_a": add_user(url, f"admin-{tag}@a.cl", PASSWORD, role="ADMIN", broker_slug=a.slug,
                                     display_name="Admin A"),
                 "agent_a": add_user(url, f"agent-{tag}@a.cl", PASSWORD, role="AGENT", broker_slug=a.slug,
                                     display_name="Agente A"),
                 "admin_b": add_user(url, f"admin-{tag}@b.mx", PASSWORD, role="ADMIN", broker_slug=b.slug)}
    fake = FakeGoogle().start()
    app = create_app(url, TokenSettings.ephemeral(), limiter=LoginLimiter(attempts=1000))
    app.state.google = google.Google(fake.api_url, fake.auth_url, fake.token_url, CLIENT_ID, CLIENT_SECRET)
    try:
        with TestClient(app):
            yield World(a, b, users, app, fake, url)
    finally:
        fake.stop()


def base(broker: Broker) -> str:
    return f"/dashboard/brokers/{broker.broker_id}/admin/calendar-connections"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the page has no form"
    return found.group(1)


def start(world: World, client: TestClient, broker: Broker, target: str) -> Any:
    token = csrf_of(client.get(base(broker)).text)
    return client.post(f"{base(broker)}/connect", data={"csrf": token, "for": target})


def consent(world: World, location: str) -> str:
    """What the person's browser does at Google: consents; the path and query Google sends it back to."""
    assert location.startswith(world.fake.auth_url)
    back = httpx.get(location, follow_redirects=False)
    assert back.status_code == 302
    parts = urlsplit(back.headers["location"])
    assert parts.path == "/dashboard/google-calendar/callback"
    return f"{parts.path}?{parts.query}"


def connections(world: World, broker: Broker) -> list[tuple[object, ...]]:
    return world.rows("SELECT agent_key, status, account_email, connected_by FROM leadflow.google_calendar_connections "
                      "WHERE broker_id = %s ORDER BY agent_key", broker.broker_id)


def test_an_admin_connects_the_brokers_calendar_through_google_and_no_token_is_ever_shown(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    admin = world.browser("admin_a")
    page = admin.get(base(world.a))
    assert page.status_code == 200 and "Conectar el calendario de la corredora" in page.text
    assert "Agente A" in page.text  # every person's state is listed for the admin

    started = start(world, admin, world.a, "broker")
    assert started.status_code == 303
    asked = {k: v[0] for k, v in parse_qs(urlsplit(started.headers["location"]).query).items()}
    assert (asked["access_type"], asked["prompt"], asked["code_challenge_method"]) == ("offline", "consent", "S256")
    assert {"https://www.googleapis.com/auth/calendar.events",
            "https://www.googleapis.com/auth/calendar.freebusy"} <= set(asked["scope"].split())
    assert asked["redirect_uri"] == "http://testserver/dashboard/google-calendar/callback"
    callback = consent(world, started.headers["location"])
    back = admin.get(callback)
    assert back.status_code == 303 and back.headers["location"].endswith("?done=connected")

    assert connections(world, world.a) == [(0, "connected", world.fake.email, world.users["admin_a"].user_id)]
    shown = admin.get(back.headers["location"])
    assert "Google Calendar conectado" in shown.text and world.fake.email in shown.text
    issued = world.fake.secrets_issued()
    audit = json.dumps(world.rows("SELECT action, before, after FROM leadflow.audit_log WHERE broker_id = %s",
                                  world.a.broker_id), default=str)
    assert "calendar.connected" in audit
    for secret in issued:
        assert secret not in shown.text and secret not in audit and secret not in caplog.text
    # The same callback again (a reload, or someone who saw the address): refused, nothing changes.
    again = admin.get(callback)
    assert again.status_code == 400 and connections(world, world.a)[0][1] == "connected"


def test_a_forged_or_borrowed_state_is_refused_and_nothing_is_stored(world: World) -> None:
    agent, admin_b = world.browser("agent_a"), world.browser("admin_b")
    tokens_before, rows_before = len(world.fake.token_calls()), connections(world, world.a)
    forged = agent.get("/dashboard/google-calendar/callback", params={"state": "forged-" + "x" * 40, "code": "4/x"})
    assert forged.status_code == 400 and "no es válido" in forged.text
    assert agent.get("/dashboard/google-calendar/callback").status_code == 400

    started = start(world, agent, world.a, "me")
    assert started.status_code == 303
    callback = consent(world, started.headers["location"])
    # Another broker's admin (or anyone without the session that began it) cannot use it...
    assert admin_b.get(callback).status_code == 400
    # A browser coming back from Google leaves the SameSite=Strict session cookie off: it gets a page of ours that
    # sends it on to the same address (a same-site request, which carries the cookie), never a half-done exchange.
    cross_site = TestClient(world.app, follow_redirects=False)  # type: ignore[arg-type]
    hop = cross_site.get(callback)
    assert hop.status_code == 200 and hop.headers["referrer-policy"] == "no-referrer"
    found = re.search(r'http-equiv="refresh" content="0;url=([^"]+)"', hop.text)
    assert found is not None
    onward = html.unescape(found.group(1))
    assert onward.startswith("/dashboard/google-calendar/callback?") and "hop=1" in onward
    assert cross_site.get(onward).status_code == 400  # still no session: refused
    assert len(world.fake.token_calls()) == tokens_before and connections(world, world.a) == rows_before
    # ...and it is still the agent's to finish, through the hop with their cookie: their own calendar, connected.
    done = agent.get(onward)
    assert done.status_code == 303
    agent_id = world.users["agent_a"].user_id
    assert (agent_id, "connected", world.fake.email, agent_id) in connections(world, world.a)


def test_an_agent_manages_only_their_own_calendar(world: World) -> None:
    agent = world.browser("agent_a")
    page = agent.get(base(world.a))
    assert page.status_code == 200
    assert "Conectar mi Google Calendar" in page.text or "Volver a conectar mi" in page.text
    # The broker's calendar and their own: not the other people's rows, nor the broker's connect button.
    admin_row = f'data-agent-key="{world.users["admin_a"].user_id}"'
    assert admin_row not in page.text and 'data-agent-key="0"' in page.text and "connect-broker" not in page.text
    assert start(world, agent, world.a, "broker").status_code == 403
    token = csrf_of(page.text)
    assert agent.post(f"{base(world.a)}/0/disconnect", data={"csrf": token}).status_code == 403
    admin_key = world.users["admin_a"].user_id
    assert agent.post(f"{base(world.a)}/{admin_key}/disconnect", data={"csrf": token}).status_code == 403
    assert agent.post(f"{base(world.a)}/{world.users['agent_a'].user_id}/disconnect", data={}).status_code == 403

    # Connected (again) and disconnected by the agent: the row and the busy times read from it are gone.
    back = agent.get(consent(world, start(world, agent, world.a, "me").headers["location"]))
    assert back.status_code == 303
    agent_id = world.users["agent_a"].user_id
    world.rows("INSERT INTO leadflow.calendar_busy (broker_id, agent_key, starts_at, ends_at) VALUES "
               "(%s, %s, '2027-03-02T12:00Z', '2027-03-02T13:00Z') RETURNING 1", world.a.broker_id, agent_id)
    gone = agent.post(f"{base(world.a)}/{agent_id}/disconnect", data={"csrf": token})
    assert gone.status_code == 200 and "Calendario desconectado" in gone.text
    assert agent_id not in [r[0] for r in connections(world, world.a)]
    assert world.rows("SELECT count(*) FROM leadflow.calendar_busy WHERE broker_id = %s AND agent_key = %s",
                      world.a.broker_id, agent_id) == [(0,)]


def test_another_brokers_admin_can_neither_see_nor_touch_a_connection(world: World) -> None:
    admin_b = world.browser("admin_b")
    assert admin_b.get(base(world.a)).status_code == 403
    token = csrf_of(admin_b.get(base(world.b)).text)
    before = connections(world, world.a)
    assert admin_b.post(f"{base(world.a)}/0/disconnect", data={"csrf": token}).status_code == 403
    assert admin_b.post(f"{base(world.a)}/connect", data={"csrf": token, "for": "broker"}).status_code == 403
    assert connections(world, world.a) == before
    # B's own page lists none of A's people or connections.
    own = admin_b.get(base(world.b)).text
    assert "Agente A" not in own and world.fake.email not in own


def test_a_broken_connection_is_shown_to_the_admin(world: World) -> None:
    admin = world.browser("admin_a")
    if not any(r[0] == 0 for r in connections(world, world.a)):
        assert admin.get(consent(world, start(world, admin, world.a, "broker").headers["location"])).status_code == 303
    with transaction(world.url) as conn, conn.cursor() as cur:
        found = google.connection(cur, world.a.broker_id, 0)
        assert found is not None
        google.mark_broken(cur, found, "Google refused a freshly refreshed access token (401)", datetime.now(UTC))
    page = admin.get(base(world.a)).text
    assert 'id="broken"' in page and "rota" in page and "(401)" in page
    assert "Volver a conectar" in page
    # The health page counts it too, with the way to fix it.
    health = admin.get(f"/dashboard/brokers/{world.a.broker_id}/admin/health")
    assert health.status_code == 200
    assert re.search(r'class="calendars-broken"><span class="error">1</span>', health.text)
