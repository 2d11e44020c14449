"""The login limit holds across API processes (issue 17, finding 1): counted in PostgreSQL behind each
process's own bounded limiter. Two apps on one database stand for two processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from leadflow.config import Settings
from leadflow.users import add_user
from reports_api import sessions
from reports_api.app import create_app
from reports_api.security import LoginLimiter, TokenSettings
from reports_api.sessions import PgAccounts, SharedLoginLimiter
from tests.conftest import BrokerFactory
from tests.test_leads_pipeline import rows

TOKENS = TokenSettings.ephemeral()
PASSWORD = "una-clave-larga-de-prueba"


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")


@pytest.fixture
def processes(settings: Settings) -> Iterator[list[SharedLoginLimiter]]:
    """Two processes' limiters: each its own memory, one database."""
    accounts = [PgAccounts(settings.database_url) for _ in range(2)]
    limiters = [account.login_limiter(attempts=3, window_s=60) for account in accounts]
    assert all(isinstance(limiter, SharedLoginLimiter) for limiter in limiters)
    yield limiters  # type: ignore[misc]
    for account in accounts:
        account.close()


def address() -> str:
    return f"198.18.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


def email() -> str:
    return f"nobody-{uuid.uuid4().hex[:10]}@shared-limit.test"


def api(settings: Settings, limiter: LoginLimiter, peer: str) -> TestClient:
    return TestClient(create_app(settings.database_url, TOKENS, limiter=limiter), client=(peer, 40000))


def test_attempts_from_one_address_count_in_every_process(settings: Settings,
                                                          processes: list[SharedLoginLimiter]) -> None:
    peer = address()
    apis = [api(settings, limiter, peer) for limiter in processes]
    codes = [apis[i % 2].post("/auth/token", json={"email": email(), "password": "a wrong guess"}).status_code
             for i in range(4)]
    # Each process saw two attempts, under its own limit of three; together they spent the address's.
    assert codes == [401, 401, 401, 429]
    refused = apis[1].post("/auth/token", json={"email": email(), "password": "a wrong guess"})
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60


def test_an_emails_failures_count_in_every_process_and_a_success_clears_them(
        settings: Settings, processes: list[SharedLoginLimiter], make_broker: BrokerFactory) -> None:
    broker = make_broker()
    ana = add_user(settings.database_url, f"ana-{uuid.uuid4().hex[:8]}@shared-limit.test", PASSWORD, role="ADMIN",
                   broker_slug=broker.slug)
    first, second = processes
    # Three wrong guesses from three addresses, spread over both processes.
    for limiter in (first, second, first):
        assert limiter.check(address(), ana.email) == 0
    # The fourth waits, in either process, from any address.
    assert 0 < second.check(address(), ana.email) <= 20
    assert rows(settings, "SELECT failures FROM leadflow.login_failures WHERE email = %s", ana.email) == [(3,)]
    # A right password in one process clears her failures for all.
    first.succeeded(ana.email)
    assert rows(settings, "SELECT count(*) FROM leadflow.login_failures WHERE email = %s", ana.email) == [(0,)]
    assert second.check(address(), ana.email) == 0


def test_refused_attempts_store_nothing_in_the_database(settings: Settings,
                                                        processes: list[SharedLoginLimiter]) -> None:
    peer = address()
    first, second = processes
    for limiter in (first, second, first):
        assert limiter.check(peer, email()) == 0
    before = rows(settings, "SELECT count(*) FROM leadflow.login_failures")
    for i in range(300):
        assert processes[i % 2].check(peer, email()) > 0
    assert rows(settings, "SELECT count(*) FROM leadflow.login_attempts WHERE address = %s", peer) == [(3,)]
    assert rows(settings, "SELECT count(*) FROM leadflow.login_failures") == before
    # Each process's own limiter stays as small as before (finding 1): the fresh emails were never stored.
    assert first.entries() <= 4 and second.entries() <= 4


def test_rows_that_no_longer_count_are_deleted(settings: Settings, processes: list[SharedLoginLimiter],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from leadflow.db.connection import transaction

    stale_address, stale_email = address(), email()
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO leadflow.login_attempts VALUES (%s, now() - interval '2 minutes')", (stale_address,))
        cur.execute("""INSERT INTO leadflow.login_failures VALUES (%s, 9, now() - interval '3 minutes',
                                                                   now() - interval '1 minute')""", (stale_email,))
    monkeypatch.setattr(sessions, "SWEEP_EVERY", 1)
    assert processes[0].check(address(), email()) == 0
    assert rows(settings, "SELECT count(*) FROM leadflow.login_attempts WHERE address = %s", stale_address) == [(0,)]
    assert rows(settings, "SELECT count(*) FROM leadflow.login_failures WHERE email = %s", stale_email) == [(0,)]
    # A forgotten email starts over: one failure, no wait.
    assert processes[0].check(address(), stale_email) == 0


def test_the_default_app_limits_logins_across_processes(settings: Settings) -> None:
    peer = address()
    apps = [TestClient(create_app(settings.database_url, TOKENS), client=(peer, 40000)) for _ in range(2)]
    assert all(isinstance(client.app.state.limiter, SharedLoginLimiter) for client in apps)  # type: ignore[attr-defined]
    attempts = Settings.from_environment().reports_login_attempts
    codes = [apps[i % 2].post("/auth/token", json={"email": email(), "password": "a wrong guess"}).status_code
             for i in range(attempts + 1)]
    assert codes == [401] * attempts + [429]
