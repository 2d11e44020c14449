"""`leadflow users add|assign|list`: accounts of the reports API, and the mistakes it refuses."""

from __future__ import annotations

import io
import uuid

import pytest

from leadflow.cli import main
from leadflow.config import Settings
from leadflow.users import authenticate
from tests.conftest import BrokerFactory


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")


def add(monkeypatch: pytest.MonkeyPatch, password: str, *args: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return main(["users", "add", *args, "--password-stdin"])


def test_users_add_creates_an_account_that_logs_in(settings: Settings, make_broker: BrokerFactory,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    broker = make_broker()
    email = f"admin-{uuid.uuid4().hex[:6]}@broker.test"
    assert add(monkeypatch, "una-clave-segura", email, "--role", "ADMIN", "--broker", broker.slug) == 0
    assert f"(ADMIN, broker {broker.broker_id})" in capsys.readouterr().out
    user = authenticate(settings.database_url, email, "una-clave-segura")
    assert user is not None and user.broker_id == broker.broker_id
    # Adding the same email again resets the password.
    assert add(monkeypatch, "otra-clave-segura", email, "--role", "ADMIN", "--broker", broker.slug) == 0
    assert authenticate(settings.database_url, email, "una-clave-segura") is None
    assert main(["users", "list"]) == 0 and email in capsys.readouterr().out


@pytest.mark.parametrize("password, args, message", [
    ("una-clave-segura", ["--role", "ADMIN", "--broker", "no-such-broker"], "there is no broker 'no-such-broker'"),
    ("una-clave-segura", ["--role", "SUPERADMIN", "--broker", "x"], "a SUPERADMIN belongs to no broker"),
    ("una-clave-segura", ["--role", "AGENT"], "ADMIN and AGENT need --broker"),
    ("corta", ["--role", "SUPERADMIN"], "at least 10 characters"),
])
def test_users_add_refuses_what_cannot_work(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str], password: str, args: list[str],
                                           message: str) -> None:
    email = f"u-{uuid.uuid4().hex[:6]}@broker.test"
    assert add(monkeypatch, password, email, *args) == 1
    assert message in capsys.readouterr().err
    assert authenticate(settings.database_url, email, password) is None


def test_leads_are_assigned_only_to_agents_of_their_broker(settings: Settings, make_broker: BrokerFactory,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    broker = make_broker()
    admin, agent = (f"{kind}-{uuid.uuid4().hex[:6]}@broker.test" for kind in ("admin", "agent"))
    assert add(monkeypatch, "una-clave-segura", admin, "--role", "ADMIN", "--broker", broker.slug) == 0
    assert add(monkeypatch, "una-clave-segura", agent, "--role", "AGENT", "--broker", broker.slug) == 0
    capsys.readouterr()
    assert main(["users", "assign", admin, "1"]) == 1
    assert "leads are assigned to agents" in capsys.readouterr().err
    assert main(["users", "assign", agent, "999999999"]) == 1
    assert "nothing was assigned" in capsys.readouterr().err
