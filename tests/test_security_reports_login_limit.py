"""The login limit (issue 17, findings 1 and 6b): bounded memory, a backoff per email that a success clears.

Without services: the limiter directly, and the API with the password check replaced by a stand-in
(these tests are about what the limiter lets through, not about bcrypt or PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from leadflow.users import User
from reports_api import security
from reports_api.app import create_app
from reports_api.security import LoginLimiter, TokenSettings, address_key

ANA = User(7, 3, "ana@andes.test", "Ana", "ADMIN")
RIGHT = "the right password"
TOKENS = TokenSettings("s" * 40, timedelta(minutes=5))


@pytest.fixture
def accounts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Ana is the one account; every check is recorded (email) so a test can tell whether one ran."""
    checked: list[str] = []

    def authenticate(url: str, email: str, password: str) -> User | None:
        checked.append(email)
        return ANA if email.lower() == ANA.email and password == RIGHT else None

    monkeypatch.setattr(security, "authenticate", authenticate)
    yield checked


def client(limiter: LoginLimiter, address: str) -> TestClient:
    # No `with`: the lifespan would open a pool on a database these tests do not need.
    return TestClient(create_app("postgresql://nobody@127.0.0.1:1/none", TOKENS, limiter=limiter),
                      client=(address, 40000))


def login(api: TestClient, email: str, password: str) -> int:
    return api.post("/auth/token", json={"email": email, "password": password}).status_code


def test_more_than_ten_thousand_fresh_emails_from_one_address_leave_logins_working_and_memory_small() -> None:
    limiter = LoginLimiter(attempts=5, window_s=60)
    for i in range(5):
        assert limiter.check("198.51.100.1", f"guess{i}@andes.test", now=i) == 0
    for i in range(12_000):
        assert limiter.check("198.51.100.1", f"fresh{i}@andes.test", now=10) > 0
    # Anyone else still gets to try (the old limiter raised IndexError here once it held 10,000 keys).
    assert limiter.check("203.0.113.5", "ana@andes.test", now=11) == 0
    # A refused attempt stores nothing: two addresses and the six emails they tried.
    assert limiter.entries() == 8


def test_the_limiter_never_holds_more_than_its_cap_and_drops_expired_keys_first() -> None:
    limiter = LoginLimiter(attempts=5, window_s=60, max_entries=100)
    for i in range(1_000):
        assert limiter.check(f"198.51.100.{i % 250}", f"user{i}@andes.test", now=i / 100) == 0
        assert limiter.entries() <= 200
    # Long after the window, new keys push the expired ones out rather than crowding the table.
    for i in range(50):
        assert limiter.check(f"203.0.113.{i}", f"late{i}@andes.test", now=10_000) == 0
    assert limiter.entries() == 100


def test_wrong_passwords_delay_the_email_with_a_doubling_backoff_up_to_a_cap() -> None:
    limiter = LoginLimiter(attempts=5, window_s=60, max_delay_s=300)
    now = 0.0
    for i in range(5):  # from five addresses: the per-address limit is not what trips
        assert limiter.check(f"198.51.100.{i}", "ana@andes.test", now=now) == 0
    waits = []
    for i in range(8):
        wait = limiter.check(f"203.0.113.{i}", "ana@andes.test", now=now)
        waits.append(round(wait))
        now += wait
        assert limiter.check(f"203.0.113.{i}", "ana@andes.test", now=now) == 0  # and fails again
    assert waits == [12, 24, 48, 96, 192, 300, 300, 300]


def test_a_success_clears_the_emails_failures_so_someone_elses_guesses_only_delay_the_real_user() -> None:
    limiter = LoginLimiter(attempts=5, window_s=60)
    for i in range(5):
        assert limiter.check(f"198.51.100.{i}", "ana@andes.test", now=i) == 0
    # Five wrong guesses by someone else: Ana waits seconds, not a lock.
    wait = limiter.check("203.0.113.5", "ana@andes.test", now=5)
    assert 0 < wait <= 12
    assert limiter.check("203.0.113.5", "ana@andes.test", now=5 + wait) == 0
    limiter.succeeded("ana@andes.test")
    # Her next mistakes start from nothing again.
    for i in range(4):
        assert limiter.check("203.0.113.5", "ana@andes.test", now=20 + i) == 0


def test_concurrent_guesses_of_one_email_cannot_all_pass_before_the_first_one_fails() -> None:
    limiter = LoginLimiter(attempts=2, window_s=60)
    # Three checks at the same instant, none of them answered yet: the third waits.
    assert [limiter.check(f"198.51.100.{i}", "ana@andes.test", now=0) > 0 for i in range(3)] == [False, False, True]


def test_an_ipv6_client_counts_by_its_slash_64() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:198.51.100.7") == "198.51.100.7"
    assert address_key("198.51.100.7") == "198.51.100.7"


def test_hundreds_of_fresh_emails_through_the_api_are_refused_without_growing_the_limiter(
        accounts: list[str]) -> None:
    limiter = LoginLimiter(attempts=5, window_s=60)
    attacker = client(limiter, "198.51.100.1")
    assert [login(attacker, f"guess{i}@andes.test", "wrong password") for i in range(5)] == [401] * 5
    assert {login(attacker, f"fresh{i}@andes.test", "wrong password") for i in range(300)} == {429}
    assert len(accounts) == 5  # refused logins are not checked at all
    assert limiter.entries() == 6
    assert login(client(limiter, "203.0.113.5"), ANA.email, RIGHT) == 200


def test_through_the_api_a_full_limiter_evicts_and_logins_keep_answering(accounts: list[str]) -> None:
    limiter = LoginLimiter(attempts=5, window_s=60, max_entries=50)
    app_clients = [client(limiter, f"198.51.100.{i}") for i in range(200)]
    assert {login(api, f"user{i}@andes.test", "wrong password") for i, api in enumerate(app_clients)} == {401}
    assert limiter.entries() <= 100
    assert login(client(limiter, "203.0.113.5"), ANA.email, RIGHT) == 200


def test_the_real_user_logs_in_after_strangers_guessed_and_is_not_locked_by_it_afterwards(
        accounts: list[str]) -> None:
    limiter = LoginLimiter(attempts=5, window_s=60)
    strangers = [client(limiter, f"198.51.100.{i}") for i in range(4)]
    assert [login(api, ANA.email, "a wrong guess") for api in strangers] == [401] * 4
    ana = client(limiter, "203.0.113.5")
    assert login(ana, ANA.email, RIGHT) == 200
    # The success cleared the guesses: four more mistakes are answered, not refused.
    assert [login(ana, ANA.email, "a typo of hers") for _ in range(4)] == [401] * 4
