"""Whose address the login limit counts (issue 17, finding 6a): X-Forwarded-For only from a trusted proxy.

The app is run as `leadflow reports-api` runs it: wrapped by uvicorn's own Config (proxy headers on,
127.0.0.1 and ::1 trusted by uvicorn), and as recommended, with ``proxy_headers=False``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import uvicorn
from fastapi.testclient import TestClient

from leadflow.config import ConfigurationError, Settings
from leadflow.users import User
from reports_api import security
from reports_api.app import create_app
from reports_api.proxies import UNVERIFIED, client_address, parse_trusted_proxies
from reports_api.security import LoginLimiter, TokenSettings

TOKENS = TokenSettings("s" * 40, timedelta(minutes=5))
FORGED = ("198.51.100.1", "198.51.100.2", "198.51.100.3:4444", "unknown, 198.51.100.4")


class KeyRecorder(LoginLimiter):
    """A limiter that never refuses and remembers the address of every check."""

    def __init__(self) -> None:
        super().__init__(attempts=10**9)
        self.addresses: list[str] = []

    def check(self, address: str, email: str, now: float | None = None) -> float:
        self.addresses.append(address)
        return super().check(address, email, now)


@pytest.fixture(autouse=True)
def nobody_logs_in(monkeypatch: pytest.MonkeyPatch) -> None:
    def authenticate(url: str, email: str, password: str) -> User | None:
        return None

    monkeypatch.setattr(security, "authenticate", authenticate)
    # uvicorn reads this when no forwarded_allow_ips is given; its default is what `leadflow reports-api` gets.
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)


def keys(peer: str, headers: list[dict[str, str]], *, trusted: str = "", proxy_headers: bool = True) -> list[str]:
    """The limiter's address key for a login from ``peer`` with each of ``headers``, through uvicorn's app stack."""
    recorder = KeyRecorder()
    config = uvicorn.Config(create_app("postgresql://nobody@127.0.0.1:1/none", TOKENS, limiter=recorder,
                                       trusted_proxies=trusted), host="127.0.0.1", port=8100,
                            proxy_headers=proxy_headers)
    config.load()
    api = TestClient(config.loaded_app, client=(peer, 40000))
    for extra in headers:
        answer = api.post("/auth/token", json={"email": "ana@andes.test", "password": "a guess"}, headers=extra)
        assert answer.status_code == 401
    return recorder.addresses


def test_a_forged_forwarded_for_from_an_untrusted_peer_does_not_change_the_limiter_key() -> None:
    forged = [{"X-Forwarded-For": value} for value in FORGED]
    # A remote peer: the header is ignored, the key is the peer.
    assert keys("203.0.113.9", [{}, *forged]) == ["203.0.113.9"] * 5
    # As uvicorn is started with proxy_headers=False (--no-proxy-headers), the same from loopback.
    assert keys("127.0.0.1", [{}, *forged], proxy_headers=False) == ["127.0.0.1"] * 5
    # As `leadflow reports-api` starts it today: uvicorn believes the header from 127.0.0.1 and replaces the
    # peer before the app sees it. The forger still cannot pick an address: every forged login shares one key.
    replaced = keys("127.0.0.1", forged)
    assert set(replaced) == {UNVERIFIED}
    assert not {value.split(":")[0] for value in FORGED} & set(replaced)


def test_a_trusted_proxy_names_the_client_and_what_the_client_prepends_is_ignored() -> None:
    proxies = "10.0.0.0/8"
    assert keys("10.0.0.2", [{"X-Forwarded-For": "198.51.100.9"},
                             {"X-Forwarded-For": "1.1.1.1, 198.51.100.9"},
                             {"X-Forwarded-For": "1.1.1.1, 198.51.100.9, 10.0.0.3"},
                             {"X-Forwarded-For": "1.1.1.1", "x-forwarded-for": "198.51.100.9"},
                             {}], trusted=proxies, proxy_headers=False) == ["198.51.100.9"] * 4 + ["10.0.0.2"]
    # Not from the proxy: the same header is ignored.
    assert keys("198.51.100.200", [{"X-Forwarded-For": "198.51.100.9"}], trusted=proxies) == ["198.51.100.200"]


def test_client_address_reads_from_the_right_and_stops_at_what_no_proxy_wrote() -> None:
    proxies = parse_trusted_proxies("10.0.0.0/8, ::1")
    assert client_address("10.0.0.2", ["198.51.100.9", "10.0.0.7"], proxies) == "198.51.100.9"
    assert client_address("::1", ["[2001:db8::5]:443"], proxies) == "2001:db8::5"
    assert client_address("10.0.0.2", ["not-an-address"], proxies) == "10.0.0.2"
    assert client_address("10.0.0.2", ["10.0.0.3"], proxies) == "10.0.0.3"  # proxies all the way: the farthest
    assert client_address("10.0.0.2", [], proxies) == "10.0.0.2"
    assert client_address("198.51.100.7", ["198.51.100.9"], ()) == "198.51.100.7"
    assert client_address(None, ["198.51.100.9"], proxies) == "unknown"


def test_trusted_proxies_is_a_setting_refused_with_its_name_when_it_is_not_addresses() -> None:
    assert Settings.from_environment({"LEADFLOW_TRUSTED_PROXIES": "10.0.0.0/8,::1"}).trusted_proxies == "10.0.0.0/8,::1"
    assert Settings.from_environment({}).trusted_proxies == ""
    with pytest.raises(ConfigurationError, match="LEADFLOW_TRUSTED_PROXIES"):
        Settings.from_environment({"LEADFLOW_TRUSTED_PROXIES": "proxy.internal"})
    with pytest.raises(ConfigurationError, match="LEADFLOW_TRUSTED_PROXIES"):
        parse_trusted_proxies("10.0.0.0/33")


def test_the_app_takes_its_trusted_proxies_from_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_TRUSTED_PROXIES", "10.0.0.0/8")
    recorder = KeyRecorder()
    api = TestClient(create_app("postgresql://nobody@127.0.0.1:1/none", TOKENS, limiter=recorder),
                     client=("10.0.0.2", 40000))
    api.post("/auth/token", json={"email": "ana@andes.test", "password": "a guess"},
             headers={"X-Forwarded-For": "198.51.100.9"})
    assert recorder.addresses == ["198.51.100.9"]
