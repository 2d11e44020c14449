"""Who answers a lead (the bot or a person), each broker's agent settings: on the real database."""

from __future__ import annotations

import uuid

import pytest

from leadflow.agent.store import AgentError, agent_configs, handlers, history, release, save_agent_settings, take_over
from leadflow.brokers import Broker
from leadflow.cli import main
from leadflow.config import Settings, Topics
from leadflow.db.connection import connect, transaction
from leadflow.events import Contact
from leadflow.users import add_user
from reports_api.scope import ScopedPool
from reports_api.security import Principal
from tests.conftest import BrokerFactory
from tests.test_leads_pipeline import rows, run, send

PASSWORD = "una-clave-larga-de-prueba"


def broker_with_lead(settings: Settings, topics: Topics, make_broker: BrokerFactory) -> tuple[Broker, int, str]:
    """A broker, one of its leads (through the real pipeline) and one of its agents' email."""
    broker = make_broker()
    send(settings, topics, broker, ("whatsapp", f"wamid.{uuid.uuid4().hex}",
                                    Contact(channel_user_id="56911112222", phone_e164="+56911112222"), "hola", 0))
    run(settings, topics)
    [(lead_id,)] = rows(settings, "SELECT lead_id FROM leadflow.leads WHERE broker_id = %s", broker.broker_id)
    email = f"agente-{uuid.uuid4().hex[:8]}@{broker.slug}.test"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
        add_user(settings.database_url, email, PASSWORD, role="AGENT", broker_slug=broker.slug)
    return broker, lead_id, email


def current(settings: Settings, lead_id: int) -> str:
    conn = connect(settings.database_url)
    try:
        with conn.cursor() as cur:
            return handlers(cur, [lead_id])[lead_id]
    finally:
        conn.close()


def test_a_person_takes_a_lead_over_and_gives_it_back_and_every_switch_is_recorded(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    broker, lead_id, email = broker_with_lead(settings, fresh_topics, make_broker)
    assert current(settings, lead_id) == "bot"  # never switched: the bot's
    take_over(settings.database_url, broker.slug, lead_id, email.upper(), "wants to negotiate the price")
    assert current(settings, lead_id) == "person"
    release(settings.database_url, broker.slug, lead_id, email, "price agreed; the bot books the visit")
    assert current(settings, lead_id) == "bot"
    assert [(s.handler, s.user_email, s.reason) for s in history(settings.database_url, broker.slug, lead_id)] == [
        ("person", email, "wants to negotiate the price"), ("bot", email, "price agreed; the bot books the visit")]


def test_the_cli_takes_over_and_reports_refusals_with_exit_code_1(settings: Settings, fresh_topics: Topics,
                                                                   make_broker: BrokerFactory,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    broker, lead_id, email = broker_with_lead(settings, fresh_topics, make_broker)
    assert main(["agent", "take-over", "--broker", broker.slug, "--lead", str(lead_id), "--by", email]) == 0
    assert "answered by the person now" in capsys.readouterr().out
    assert main(["agent", "release", "--broker", broker.slug, "--lead", str(lead_id), "--by", "nobody@x.test"]) == 1
    assert "no active user 'nobody@x.test'" in capsys.readouterr().err
    assert current(settings, lead_id) == "person"


def test_another_brokers_lead_or_person_is_refused_and_nothing_is_written(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    mine, my_lead, my_agent = broker_with_lead(settings, fresh_topics, make_broker)
    _, their_lead, their_agent = broker_with_lead(settings, fresh_topics, make_broker)
    with pytest.raises(AgentError, match=f"{mine.slug} has no lead {their_lead}"):
        take_over(settings.database_url, mine.slug, their_lead, my_agent)
    with pytest.raises(AgentError, match=f"is not a user of {mine.slug}"):
        take_over(settings.database_url, mine.slug, my_lead, their_agent)
    with pytest.raises(AgentError, match="say why"):
        take_over(settings.database_url, mine.slug, my_lead, my_agent, reason="  ")
    assert rows(settings, "SELECT count(*) FROM leadflow.lead_handlers WHERE lead_id IN (%s, %s)",
                my_lead, their_lead) == [(0,)]


def test_the_reports_role_sees_only_its_own_brokers_switches(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    mine, my_lead, my_agent = broker_with_lead(settings, fresh_topics, make_broker)
    theirs, their_lead, their_agent = broker_with_lead(settings, fresh_topics, make_broker)
    take_over(settings.database_url, mine.slug, my_lead, my_agent)
    take_over(settings.database_url, theirs.slug, their_lead, their_agent)
    pool = ScopedPool(settings.database_url, 1)
    try:
        with pool.cursor(Principal(0, "a", "ADMIN", mine.broker_id), mine.broker_id) as cur:
            cur.execute("SELECT lead_id FROM leadflow.lead_handlers WHERE lead_id IN (%s, %s)", (my_lead, their_lead))
            assert cur.fetchall() == [(my_lead,)]
    finally:
        pool.close()


def test_agent_settings_are_validated_naming_the_field_and_default_to_a_silent_bot(
        settings: Settings, make_broker: BrokerFactory) -> None:
    quiet, chatty = make_broker(), make_broker(country="AR", timezone="America/Argentina/Buenos_Aires")
    with pytest.raises(AgentError, match="tone: Input should be 'cercano' or 'formal'"):
        save_agent_settings(settings.database_url, chatty.slug, {"enabled": True, "tone": "pirata"})
    saved = save_agent_settings(settings.database_url, chatty.slug,
                                {"enabled": True, "persona_name": "Vale", "facts": {"office_hours": "9 a 18 h"}})
    assert (saved.enabled, saved.language, saved.facts.office_hours) == (True, "es-AR", "9 a 18 h")
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        configs = agent_configs(cur)
    assert configs[chatty.broker_id] == saved
    assert configs[quiet.broker_id].enabled is False


def test_agent_status_lists_bot_and_person_replies_whose_fate_is_unknown(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory,
        capsys: pytest.CaptureFixture[str]) -> None:
    broker, lead_id, email = broker_with_lead(settings, fresh_topics, make_broker)
    # What a SIGKILL while the provider was being called leaves behind (one of each, five minutes ago), and a
    # person's reply still being sent right now (not reported: it may yet finish).
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.agent_replies (broker_id, channel, contact_key, reply_to, lead_id, status,
                                                           policy, action, body, destination, inbound_at, decided_at)
                       VALUES (%s, 'whatsapp', '56911112222', 'wamid.killed', %s, 'sending', 'offline', 'ask',
                               '¿En qué comuna?', '{}', now(), now() - interval '5 minutes')""",
                    (broker.broker_id, lead_id))
        cur.execute("SELECT user_id FROM leadflow.users WHERE email = %s", (email,))
        [(user_id,)] = cur.fetchall()
        for key, age in (("form-key-killed", "5 minutes"), ("form-key-in-flight", "0 minutes")):
            cur.execute("""INSERT INTO leadflow.person_replies (broker_id, lead_id, user_id, idempotency_key, channel,
                                                               destination, body, status, created_at, updated_at)
                           VALUES (%s, %s, %s, %s, 'whatsapp', '{}', 'Hola, soy su ejecutiva', 'sending',
                                   now() - %s::interval, now() - %s::interval)""",
                        (broker.broker_id, lead_id, user_id, key, age, age))
    assert main(["agent", "status"]) == 0
    out = capsys.readouterr().out
    assert f"unknown fate: {broker.slug} reply " in out and "to whatsapp:56911112222" in out
    mine = [line for line in out.splitlines() if line.startswith(f"unknown fate: {broker.slug} person reply")]
    assert len(mine) == 1 and f"by {email} to lead {lead_id} on whatsapp" in mine[0]
    assert "person replies: " in out and "sending" in out.split("person replies: ")[1]
