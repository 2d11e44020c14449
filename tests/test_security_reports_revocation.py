"""Tokens stop working when their account changes and when their session logs out (issue 17, finding 2):
the `leadflow users` commands against a running API on real PostgreSQL.

The API here keeps no session answers (cache 0 s): "at once" means the very next request. The default
cache, SESSION_CACHE_S, is tested on its own with a stand-in clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from leadflow.brokers import Broker
from leadflow.cli import main
from leadflow.config import Settings
from leadflow.db.connection import transaction
from leadflow.users import User, add_user
from reports_api import sessions
from reports_api.app import create_app
from reports_api.dashboard import COOKIE
from reports_api.security import LoginLimiter, TokenSettings, read_token
from reports_api.sessions import SESSION_CACHE_S, PgAccounts
from tests.conftest import BrokerFactory
from tests.test_leads_pipeline import rows

TOKENS = TokenSettings("r" * 40, timedelta(minutes=30))
PASSWORD = "una-clave-larga-de-prueba"


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    # This process's limiter only: these tests log in often, from the one TestClient address.
    app = create_app(settings.database_url, TOKENS, accounts=PgAccounts(settings.database_url, cache_s=0),
                     limiter=LoginLimiter(attempts=1000))
    with TestClient(app, follow_redirects=False) as client:
        yield client


def person(settings: Settings, broker: Broker | None, role: str) -> User:
    email = f"{role.lower()}-{uuid.uuid4().hex[:8]}@revocation.test"
    return add_user(settings.database_url, email, PASSWORD, role=role,
                    broker_slug=None if broker is None else broker.slug)


def login(api: TestClient, user: User, password: str = PASSWORD) -> dict[str, str] | None:
    answer = api.post("/auth/token", json={"email": user.email, "password": password})
    return {"Authorization": f"Bearer {answer.json()['access_token']}"} if answer.status_code == 200 else None


def works(api: TestClient, headers: dict[str, str], broker: Broker) -> bool:
    """Whether the token reads: who it is, and its broker's leads (401 both when it does not)."""
    codes = {api.get("/me", headers=headers).status_code,
             api.get(f"/brokers/{broker.broker_id}/leads", headers=headers).status_code}
    assert codes in ({200}, {401}), codes
    return codes == {200}


def test_disabling_ends_every_session_at_once_and_enabling_does_not_bring_them_back(
        api: TestClient, settings: Settings, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    ana = person(settings, broker, "ADMIN")
    first, second = login(api, ana), login(api, ana)
    assert first and second and works(api, first, broker) and works(api, second, broker)
    assert main(["users", "disable", ana.email]) == 0
    assert not works(api, first, broker) and not works(api, second, broker)
    assert api.get("/me", headers=first).json() == {"detail": "this session has ended; log in again"}
    assert login(api, ana) is None
    assert main(["users", "enable", ana.email]) == 0
    assert not works(api, first, broker)  # ended for good: she logs in anew
    again = login(api, ana)
    assert again and works(api, again, broker)


def test_a_new_role_or_broker_ends_the_sessions_and_the_next_token_carries_them(
        api: TestClient, settings: Settings, make_broker: BrokerFactory) -> None:
    home, other = make_broker(), make_broker()
    pedro = person(settings, home, "AGENT")
    as_agent = login(api, pedro)
    assert as_agent and works(api, as_agent, home)
    assert main(["users", "set-role", pedro.email, "--role", "ADMIN"]) == 0  # promoted
    assert not works(api, as_agent, home)
    as_admin = login(api, pedro)
    assert as_admin and api.get("/me", headers=as_admin).json()["role"] == "ADMIN"
    assert main(["users", "set-role", pedro.email, "--role", "ADMIN", "--broker", other.slug]) == 0  # moved
    assert not works(api, as_admin, home)
    moved = login(api, pedro)
    assert moved and api.get("/me", headers=moved).json()["broker_id"] == other.broker_id
    assert api.get(f"/brokers/{home.broker_id}/leads", headers=moved).status_code == 403
    assert main(["users", "set-role", pedro.email, "--role", "AGENT"]) == 0  # demoted, in the broker it is in
    assert not works(api, moved, other)
    assert api.get("/me", headers=login(api, pedro)).json() == {
        "user_id": pedro.user_id, "email": pedro.email, "role": "AGENT", "broker_id": other.broker_id}


def test_removing_a_user_ends_its_sessions_and_its_logins(api: TestClient, settings: Settings,
                                                          make_broker: BrokerFactory,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    broker = make_broker()
    ana = person(settings, broker, "ADMIN")
    token = login(api, ana)
    assert token and works(api, token, broker)
    assert main(["users", "remove", ana.email]) == 0
    assert not works(api, token, broker)
    assert login(api, ana) is None
    # The same email added again is a new start: the same row, a new password; the old token stays dead.
    monkeypatch.setenv("REVOCATION_PASSWORD", "otra-clave-larga-de-prueba")
    assert main(["users", "add", ana.email, "--role", "ADMIN", "--broker", broker.slug,
                 "--password-env", "REVOCATION_PASSWORD"]) == 0
    assert login(api, ana) is None
    back = login(api, ana, "otra-clave-larga-de-prueba")
    assert back and api.get("/me", headers=back).json()["user_id"] == ana.user_id
    assert not works(api, token, broker)


def test_a_password_reset_or_any_change_to_the_row_ends_the_sessions(api: TestClient, settings: Settings,
                                                                     make_broker: BrokerFactory) -> None:
    broker = make_broker()
    ana = person(settings, broker, "ADMIN")
    token = login(api, ana)
    assert token and works(api, token, broker)
    add_user(settings.database_url, ana.email, "otra-clave-larga-de-prueba", role="ADMIN", broker_slug=broker.slug)
    assert not works(api, token, broker)
    # Even a change made by hand in SQL, without the CLI: the trigger raises the version.
    fresh = login(api, ana, "otra-clave-larga-de-prueba")
    assert fresh and works(api, fresh, broker)
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE leadflow.users SET role = 'AGENT' WHERE user_id = %s", (ana.user_id,))
    assert not works(api, fresh, broker)
    # A display name is not a matter of access: it leaves sessions alone.
    renewed = login(api, ana, "otra-clave-larga-de-prueba")
    assert renewed
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE leadflow.users SET display_name = 'Ana María' WHERE user_id = %s", (ana.user_id,))
    assert works(api, renewed, broker)


def test_a_token_of_a_user_that_does_not_exist_is_refused(api: TestClient, make_broker: BrokerFactory) -> None:
    from reports_api.security import issue_token

    broker = make_broker()
    ghost = User(2**62, broker.broker_id, "ghost@revocation.test", "ghost", "ADMIN")
    assert not works(api, {"Authorization": f"Bearer {issue_token(TOKENS, ghost)}"}, broker)


def test_dashboard_logout_ends_that_session_only(api: TestClient, settings: Settings,
                                                 make_broker: BrokerFactory) -> None:
    broker = make_broker()
    ana = person(settings, broker, "ADMIN")
    script = login(api, ana)  # her API token, used elsewhere
    assert script
    page = api.post("/dashboard/login", content=f"email={ana.email}&password={PASSWORD}",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert page.status_code == 303
    cookie = page.cookies[COOKIE]
    api.cookies.set(COOKIE, cookie)
    assert api.get("/dashboard").headers["location"] == f"/dashboard/brokers/{broker.broker_id}"
    assert api.post("/dashboard/logout").status_code == 303
    # Someone who copied the cookie before the logout: to the login page, and refused as a bearer token too.
    api.cookies.set(COOKIE, cookie)
    assert api.get("/dashboard").headers["location"] == "/dashboard/login"
    assert api.get(f"/dashboard/brokers/{broker.broker_id}").headers["location"] == "/dashboard/login"
    assert api.get("/me", headers={"Authorization": f"Bearer {cookie}"}).status_code == 401
    # Another process, which never saw the logout, refuses it too.
    with TestClient(create_app(settings.database_url, TOKENS, limiter=LoginLimiter()),
                    follow_redirects=False) as elsewhere:
        assert elsewhere.get("/me", headers={"Authorization": f"Bearer {cookie}"}).status_code == 401
        assert elsewhere.get("/me", headers=script).status_code == 200
    assert works(api, script, broker)  # her other session stands
    session = read_token(TOKENS, cookie)
    assert rows(settings, "SELECT user_id, extract(epoch FROM expires_at)::bigint FROM leadflow.revoked_sessions "
                          "WHERE session_id = %s", session.session_id) == [(ana.user_id, int(session.expires_at))]


def test_revocations_are_kept_only_until_their_token_would_have_expired(settings: Settings,
                                                                         make_broker: BrokerFactory) -> None:
    ana = person(settings, make_broker(), "ADMIN")
    accounts = PgAccounts(settings.database_url, cache_s=0)
    try:
        from reports_api.security import Principal

        expired = Principal(ana.user_id, ana.email, "ADMIN", ana.broker_id, 0, f"old-{uuid.uuid4().hex}", 1.0)
        accounts.end_session(expired)
        current = Principal(ana.user_id, ana.email, "ADMIN", ana.broker_id, 0, f"new-{uuid.uuid4().hex}", 4e9)
        accounts.end_session(current)  # sweeps what expired before
        kept = rows(settings, "SELECT session_id FROM leadflow.revoked_sessions WHERE user_id = %s", ana.user_id)
        assert kept == [(current.session_id,)]
    finally:
        accounts.close()


def test_answers_are_cached_two_seconds_at_most(settings: Settings, make_broker: BrokerFactory,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert SESSION_CACHE_S == 2.0
    broker = make_broker()
    ana = person(settings, broker, "ADMIN")
    clock = [1000.0]
    monkeypatch.setattr(sessions.time, "monotonic", lambda: clock[0])
    from reports_api.security import issue_token

    accounts = PgAccounts(settings.database_url)
    try:
        principal = read_token(TOKENS, issue_token(TOKENS, ana))
        assert accounts.confirm(principal)
        assert main(["users", "disable", ana.email]) == 0
        clock[0] += SESSION_CACHE_S - 0.1
        assert accounts.confirm(principal)  # another process's change, not seen yet
        clock[0] += 0.2
        assert not accounts.confirm(principal)
        # Ended here: this process knows at once.
        other = read_token(TOKENS, issue_token(TOKENS, ana))
        accounts.end_session(other)
        assert not accounts.confirm(other)
    finally:
        accounts.close()
