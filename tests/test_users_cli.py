"""`leadflow users add|assign|list|disable|enable|remove|set-role`: accounts of the reports API, and the
mistakes it refuses."""

from __future__ import annotations

import io
import uuid

import pytest

from leadflow.cli import main
from leadflow.config import Settings, Topics
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


def test_disable_enable_remove_and_set_role_refuse_what_cannot_work(
        settings: Settings, make_broker: BrokerFactory, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    broker = make_broker()
    admin, root = f"admin-{uuid.uuid4().hex[:6]}@broker.test", f"root-{uuid.uuid4().hex[:6]}@broker.test"
    assert add(monkeypatch, "una-clave-segura", admin, "--role", "ADMIN", "--broker", broker.slug) == 0
    assert add(monkeypatch, "una-clave-segura", root, "--role", "SUPERADMIN") == 0
    capsys.readouterr()
    for args, message in ((["disable", "nobody@broker.test"], "there is no user 'nobody@broker.test'"),
                          (["set-role", root, "--role", "ADMIN"], "belongs to no broker: an ADMIN needs --broker"),
                          (["set-role", admin, "--role", "SUPERADMIN", "--broker", broker.slug],
                           "a SUPERADMIN belongs to no broker"),
                          (["set-role", admin, "--role", "AGENT", "--broker", "no-such-broker"],
                           "there is no broker 'no-such-broker'")):
        assert main(["users", *args]) == 1, args
        assert message in capsys.readouterr().err, args
    assert main(["users", "disable", admin.upper()]) == 0  # emails match without case
    assert "disabled; its sessions have ended" in capsys.readouterr().out
    assert authenticate(settings.database_url, admin, "una-clave-segura") is None
    assert main(["users", "enable", admin]) == 0
    assert authenticate(settings.database_url, admin, "una-clave-segura") is not None
    assert main(["users", "set-role", root, "--role", "ADMIN", "--broker", broker.slug]) == 0
    assert f"now {root} (ADMIN, broker {broker.broker_id})" in capsys.readouterr().out
    assert main(["users", "remove", admin]) == 0
    assert main(["users", "enable", admin]) == 1
    assert "was removed; `leadflow users add` creates it again" in capsys.readouterr().err
    assert main(["users", "list"]) == 0
    assert f"{admin}  (removed)" in capsys.readouterr().out


def test_remove_keeps_the_row_that_leads_and_handlers_point_at_and_frees_the_agents_leads(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory,
        capsys: pytest.CaptureFixture[str]) -> None:
    from leadflow.agent.store import history, take_over
    from leadflow.users import add_user, assign_leads
    from tests.test_agent_store import broker_with_lead
    from tests.test_leads_pipeline import rows

    broker, lead_id, agent = broker_with_lead(settings, fresh_topics, make_broker)
    assert assign_leads(settings.database_url, agent, [lead_id]) == 1
    take_over(settings.database_url, broker.slug, lead_id, agent, "the agent answers this one")
    [(user_id, version)] = rows(settings, "SELECT user_id, token_version FROM leadflow.users WHERE email = %s", agent)
    assert main(["users", "remove", agent]) == 0
    assert "removed; its sessions have ended and its leads are unassigned" in capsys.readouterr().out
    # Soft: the row stays (the handler switch still names who made it), unusable, and the lead waits for someone.
    assert rows(settings, """SELECT disabled, removed_at IS NOT NULL, password_hash LIKE '$2%%', token_version > %s
                             FROM leadflow.users WHERE user_id = %s""", version, user_id) == [(True, True, False, True)]
    assert [s.user_email for s in history(settings.database_url, broker.slug, lead_id)] == [agent]
    assert rows(settings, "SELECT assigned_user_id FROM leadflow.leads WHERE lead_id = %s", lead_id) == [(None,)]
    assert authenticate(settings.database_url, agent, "una-clave-larga-de-prueba") is None
    assert main(["users", "assign", agent, str(lead_id)]) == 1
    assert "is removed; assign the leads to someone who can read them" in capsys.readouterr().err
    # Added again: the same row, a new password, no leads until assigned.
    add_user(settings.database_url, agent, "una-clave-nueva-larga", role="AGENT", broker_slug=broker.slug)
    back = authenticate(settings.database_url, agent, "una-clave-nueva-larga")
    assert back is not None and back.user_id == user_id and not back.removed


def test_an_agent_that_stops_being_one_gives_its_leads_back(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    from leadflow.users import assign_leads
    from tests.test_agent_store import broker_with_lead
    from tests.test_leads_pipeline import rows

    _broker, lead_id, agent = broker_with_lead(settings, fresh_topics, make_broker)
    assert assign_leads(settings.database_url, agent, [lead_id]) == 1
    assert main(["users", "set-role", agent, "--role", "AGENT"]) == 0  # no change of role or broker: kept
    assert rows(settings, "SELECT assigned_user_id IS NOT NULL FROM leadflow.leads WHERE lead_id = %s",
                lead_id) == [(True,)]
    assert main(["users", "set-role", agent, "--role", "ADMIN"]) == 0
    assert rows(settings, "SELECT assigned_user_id FROM leadflow.leads WHERE lead_id = %s", lead_id) == [(None,)]
