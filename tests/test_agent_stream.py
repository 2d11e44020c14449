"""The lead agent process against the real ingest API, Kafka and PostgreSQL, with a fake Telegram/WhatsApp.

People write through the signed webhooks; the agent reads the topic, answers through the senders,
and its replies come back through Kafka into the landing like any other message.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from ingest_api.app import create_app
from leadflow.agent import history, knowledge, replies
from leadflow.agent.broker_llms import BrokerLLMs
from leadflow.agent.config import AgentConfig
from leadflow.agent.decision import Conversation
from leadflow.agent.replies import Burst
from leadflow.agent.store import take_over
from leadflow.agent.stream import quiet_needed
from leadflow.config import Settings, child_process_environment
from leadflow.db.connection import transaction
from leadflow.demo.run import BackgroundServer
from leadflow.demo.webhooks import signed
from leadflow.landing import land
from leadflow.users import add_user
from tests.agent_world import AgentWorld, Lead, world_settings
from tests.conftest import BrokerFactory
from tests.fake_channels import FakeChannels, Reply
from tests.fake_llm import FakeLLM, ok
from tests.fake_llm import Reply as LLMReply
from tests.kafka_helpers import read_topic
from tests.test_agent_policy import PROMISES, READY, SCENARIOS, Scenario, play
from tests.test_leads_pipeline import rows


@pytest.fixture
def world(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[AgentWorld]:
    ws = world_settings(settings)
    fake = FakeChannels().start()
    with BackgroundServer(create_app(ws, broker_reload_interval_s=0)) as ingest, httpx.Client(timeout=10) as http:
        w = AgentWorld(ws, fake, ingest, http, monkeypatch)
        try:
            yield w
        finally:
            w.stop_agents()
            fake.stop()


def _replies(w: AgentWorld, broker_id: int) -> list[tuple[str, str, str | None, list[str]]]:
    with transaction(w.settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("""SELECT status, action, asks, reasons FROM leadflow.agent_replies WHERE broker_id = %s
                       ORDER BY reply_id""", (broker_id,))
        return [(s, a, k, list(r)) for s, a, k, r in cur.fetchall()]


def test_a_burst_gets_one_reply_which_lands_as_the_bots_message(world: AgentWorld, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    world.enable(broker, persona_name="Vale")
    world.start_agent(burst_s=0.6)
    camila = world.lead(broker)
    for text in ("hola", "busco depto", "en ñuñoa"):
        camila.say(text)
    reply = camila.next_reply()
    assert camila.quiet(1.0), "a burst of three messages got more than one answer"
    rows = _replies(world, broker.broker_id)
    assert [(s, a) for s, a, _, _ in rows] == [("sent", "ask")]
    # Place and type were said in the burst (not whether to buy or rent): those are not asked.
    assert rows[0][2] not in ("location", "property_type"), (rows, reply)

    result = land(world.settings.database_url, world.settings.kafka_bootstrap_servers, world.settings.topics)
    assert result.messages_landed == 4
    with transaction(world.settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("""SELECT body, payload -> 'leadflow' ->> 'author', payload -> 'leadflow' ->> 'asks',
                              contact_channel_id
                       FROM leadflow.raw_messages WHERE broker_id = %s AND direction = 'outbound'""",
                    (broker.broker_id,))
        landed = cur.fetchall()
    assert landed == [(reply, "bot", rows[0][2], camila.user)]


def test_replies_sent_but_never_produced_are_produced_at_the_next_start_and_land_once(
        world: AgentWorld, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    world.enable(broker)
    world.start_agent()
    lead = world.lead(broker)
    lead.say("hola, busco depto")
    lead.next_reply()
    world.stop_agents()
    topics = world.settings.topics
    land(world.settings.database_url, world.settings.kafka_bootstrap_servers, topics)
    # A crash between sending and producing, many times over (the landing was down meanwhile): sent replies
    # that never reached the topic. Copies of the real one, each answering a message of its own.
    with transaction(world.settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.agent_replies (broker_id, channel, contact_key, reply_to, lead_id, status,
                                                           policy, action, asks, reasons, body, destination, heard,
                                                           inbound_at, sent_at, provider_message_id)
                       SELECT broker_id, channel, contact_key, reply_to || '-lost' || k, lead_id, 'sent', policy,
                              action, asks, reasons, body || ' (' || k || ')', destination, heard, inbound_at,
                              sent_at, provider_message_id || '-' || k
                       FROM leadflow.agent_replies, generate_series(1, 300) k
                       WHERE broker_id = %s RETURNING reply_id""", (broker.broker_id,))
        lost = {f"reply:{r[0]}" for r in cur.fetchall()}
    world.start_agent()  # ready only once they are produced again
    world.stop_agents()
    land(world.settings.database_url, world.settings.kafka_bootstrap_servers, topics)
    world.start_agent()  # landed now: nothing to produce again
    world.stop_agents()
    land(world.settings.database_url, world.settings.kafka_bootstrap_servers, topics)
    landed = rows(world.settings, """SELECT provider_message_id FROM leadflow.raw_messages
                                     WHERE broker_id = %s AND direction = 'outbound'""", broker.broker_id)
    ids = [r[0] for r in landed]
    assert len(ids) == len(set(ids)) == 301
    assert lost <= set(ids)


def test_the_demos_conversations_are_replayed_from_the_record_and_nothing_is_sent_again(
        world: AgentWorld, make_broker: BrokerFactory) -> None:
    from leadflow.demo.conversations import run_conversations

    broker = make_broker()  # Chile: the demo's Camila and Pedro write to it
    world.enable(broker)  # the channel credentials; the demo sets its own agent settings
    first = run_conversations(world.settings, [broker], world.ingest.url)
    assert [person.name for person, _ in first] == ["Camila Rojas", "Pedro Soto"]
    assert all(len(chat) >= 2 and chat[1][0] == "agent" for _, chat in first), first
    sent = _replies(world, broker.broker_id)

    second = run_conversations(world.settings, [broker], world.ingest.url)  # `make demo` again
    assert _replies(world, broker.broker_id) == sent
    for (_, live), (_, replayed) in zip(first, second, strict=True):
        assert replayed[0][1].startswith("(answered in an earlier run") and replayed[1:] == live


def test_a_broker_without_the_agent_gets_no_replies(world: AgentWorld, make_broker: BrokerFactory) -> None:
    quiet, talking = make_broker(), make_broker()
    world.enable(talking)
    world.start_agent()
    nobody, somebody = world.lead(quiet), world.lead(talking)
    nobody.say("hola, busco casa")
    somebody.say("hola, busco casa")
    somebody.next_reply()
    assert nobody.quiet(0.5) and _replies(world, quiet.broker_id) == []


def test_whatsapp_replies_go_through_the_cloud_api(world: AgentWorld, make_broker: BrokerFactory) -> None:
    broker = make_broker(country="MX", timezone="America/Mexico_City")
    world.enable(broker)
    world.start_agent()
    lead = world.lead(broker, "whatsapp", "Mariana")
    lead.say("Hola! busco departamento en renta en la Roma, urge")
    reply = lead.next_reply()
    assert reply and _replies(world, broker.broker_id)[0][0] == "sent"


def test_a_person_taking_over_silences_the_bot_and_a_handoff_tells_the_admins(
        world: AgentWorld, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    add_user(world.settings.database_url, f"admin@{broker.slug}.cl", "x" * 12, role="ADMIN", broker_slug=broker.slug)
    hook = FakeChannels().start()
    try:
        world.enable(broker, handoff_channel=hook.url + "/handoff")
        world.start_agent()
        lead = world.lead(broker)
        lead.say("quiero hablar con una persona por favor")
        handoff = lead.next_reply()
        assert handoff
        rows = _replies(world, broker.broker_id)
        assert rows[0][1] == "handoff"
        notices = [b for _, path, b in hook.requests if path == "/handoff"]
        for _ in range(100):
            if notices:
                break
            time.sleep(0.05)
            notices = [b for _, path, b in hook.requests if path == "/handoff"]
        assert notices and notices[0]["recipients"] == [f"admin@{broker.slug}.cl"]
        assert "persona" in notices[0]["text"]
        # Handed over: the bot keeps out of the way while nobody has answered yet.
        lead.say("hola?")
        assert lead.quiet(1.0)
        assert _replies(world, broker.broker_id)[-1][:2] == ("silent", "silence")
    finally:
        hook.stop()


def test_take_over_by_a_person_stops_the_bot_at_once(world: AgentWorld, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    world.enable(broker)
    world.start_agent()
    lead = world.lead(broker)
    lead.say("hola, busco depto en providencia")
    lead.next_reply()
    land(world.settings.database_url, world.settings.kafka_bootstrap_servers, world.settings.topics)
    lead_id = _make_lead(world, broker.broker_id, lead.user)
    add_user(world.settings.database_url, f"ana@{broker.slug}.cl", "x" * 12, role="AGENT", broker_slug=broker.slug)
    take_over(world.settings.database_url, broker.slug, lead_id, f"ana@{broker.slug}.cl", "negocia el precio")
    lead.say("y cuanto cuesta?")
    assert lead.quiet(1.0)
    assert _replies(world, broker.broker_id)[-1][3] == ["taken_over"]


def _make_lead(world: AgentWorld, broker_id: int, contact: str) -> int:
    """Identity resolution's result for one contact (as the leads asset would write it)."""
    with transaction(world.settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.leads (lead_id, broker_id) VALUES (nextval('leadflow.lead_id_seq'), %s)
                       RETURNING lead_id""", (broker_id,))
        row = cur.fetchone()
        assert row is not None
        cur.execute("""INSERT INTO leadflow.lead_identities (broker_id, identity_kind, identity_value, lead_id, reason)
                       VALUES (%s, 'telegram', %s, %s, 'test')""", (broker_id, contact, row[0]))
        return int(row[0])


def test_provider_failures_are_retried_then_sent_once(world: AgentWorld, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    world.enable(broker)
    # The sender's own quick retry absorbs one 500; two more make the agent retry the reply later.
    world.fake.script("telegram", Reply(500), Reply(500), Reply(502), Reply(503))
    world.start_agent()
    lead = world.lead(broker)
    lead.say("hola, busco casa en la reina")
    lead.next_reply(timeout_s=20)
    assert lead.quiet(1.0)
    assert _replies(world, broker.broker_id)[0][0] == "sent"


def test_a_refused_reply_fails_with_the_reason_and_the_next_message_is_answered(
        world: AgentWorld, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    world.enable(broker)
    world.fake.script("telegram", Reply(400))
    world.start_agent()
    lead = world.lead(broker)
    lead.say("hola")
    for _ in range(200):
        rows = _replies(world, broker.broker_id)
        if rows and rows[0][0] != "claimed" and rows[0][0] != "sending":
            break
        time.sleep(0.05)
    assert rows[0][0] == "failed"
    lead.say("busco depto en ñuñoa")
    assert lead.next_reply()


def test_two_processes_share_the_partitions_and_answer_each_lead_once(
        world: AgentWorld, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    world.enable(broker)
    first = world.start_agent(member=0, members=2)
    second = world.start_agent(member=1, members=2)
    assert set(first.partitions).isdisjoint(second.partitions)
    assert sorted(first.partitions + second.partitions) == list(range(world.settings.kafka_partitions))
    leads = [world.lead(broker, name=f"Lead {i}") for i in range(12)]
    for lead in leads:
        lead.say("hola, busco depto en santiago centro")
    for lead in leads:
        lead.next_reply()
    assert all(lead.quiet(0) for lead in leads[:-1]) and leads[-1].quiet(1.0)
    # Each process answered exactly the leads whose messages are on its partitions.
    partition = {r.key.decode().rsplit(":", 1)[1]: r.partition
                 for r in read_topic(world.settings.kafka_bootstrap_servers, world.settings.topics.messages)
                 if r.key and b'"inbound"' in (r.value or b"")}
    assert first.stats.bursts == sum(1 for lead in leads if partition[lead.user] in first.partitions)
    assert second.stats.bursts == sum(1 for lead in leads if partition[lead.user] in second.partitions)
    assert first.stats.bursts + second.stats.bursts == 12


def test_a_voice_message_gets_a_text_only_answer(world: AgentWorld, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    world.enable(broker)
    world.start_agent()
    lead = world.lead(broker)
    lead.say(None, kind="voice")
    assert lead.next_reply()
    assert any(r.startswith("media:") for r in _replies(world, broker.broker_id)[0][3])


def test_messages_dated_after_the_quiet_time_get_one_holding_reply(world: AgentWorld,
                                                                    make_broker: BrokerFactory) -> None:
    broker = make_broker()
    world.enable(broker, handoff_quiet_minutes=1)
    world.start_agent()
    lead = world.lead(broker)
    lead.say("necesito hablar con un humano")
    lead.next_reply()
    later = datetime.now(UTC) + timedelta(minutes=2)
    lead.say("sigo esperando", at=later)
    assert lead.next_reply()
    lead.say("hola??", at=later + timedelta(seconds=5))
    assert lead.quiet(1.0)


def test_a_lead_who_floods_the_chat_is_told_once_that_a_person_reads_it_then_the_bot_waits(
        world: AgentWorld, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    world.enable(broker, max_replies_per_hour=3)
    world.start_agent()
    lead = world.lead(broker)
    for text in ("hola, busco depto en ñuñoa para comprar", "3 dormitorios", "hasta 4.000 UF"):
        lead.say(text)
        lead.next_reply()
    lead.say("en dos meses")
    assert "una persona del equipo" in lead.next_reply()  # the hour's budget is spent: said once
    lead.say("¿me pueden llamar hoy?")
    assert lead.quiet(1.5)
    fates = _replies(world, broker.broker_id)
    assert [reasons for _, _, _, reasons in fates[-2:]] == [["rate_limited"], ["rate_limited"]]
    assert [status for status, *_ in fates[-2:]] == ["sent", "silent"]


def test_an_llm_broker_answers_through_the_model_and_falls_back_offline_when_it_fails(
        world: AgentWorld, make_broker: BrokerFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    llm = FakeLLM().start()
    try:
        monkeypatch.setenv("LEADFLOW_OPENAI_API_KEY", "test-key-not-a-secret")
        monkeypatch.setenv("LEADFLOW_OPENAI_BASE_URL", llm.url + "/v1")
        broker = make_broker()
        world.enable(broker, policy="llm", persona_name="Vale")
        with transaction(world.settings.database_url) as conn, conn.cursor() as cur:
            cur.execute("""UPDATE leadflow.broker_settings SET llm = '{"provider": "openai", "model": "gpt-4o-mini"}'
                           WHERE broker_id = %s""", (broker.broker_id,))
        llm.script("openai", ok(reply="¡Hola! Soy Vale. ¿Buscas comprar o arrendar en Ñuñoa?", action="ask",
                                asks="operation"),
                   LLMReply(status=500), LLMReply(status=500))
        world.start_agent(llm=BrokerLLMs(deadline_s=2.0))
        lead = world.lead(broker)
        lead.say("hola, busco depto en ñuñoa")
        assert lead.next_reply() == "¡Hola! Soy Vale. ¿Buscas comprar o arrendar en Ñuñoa?"
        lead.say("quiero comprar, 3 dormitorios")
        assert lead.next_reply()  # the offline policy's, since the model failed
        rows = _replies(world, broker.broker_id)
        assert any(r.startswith("llm:openai") for r in rows[0][3])
        assert "llm_fallback:error" in rows[1][3]
        for _ in range(100):  # usage is written by the agent's next housekeeping round
            with transaction(world.settings.database_url) as conn, conn.cursor() as cur:
                cur.execute("SELECT calls, fallbacks FROM leadflow.llm_usage WHERE broker_id = %s",
                            (broker.broker_id,))
                usage = cur.fetchall()
            if usage and usage[0][1]:
                break
            time.sleep(0.05)
        assert usage == [(1, 1)]
    finally:
        llm.stop()



KILLED_AGENT_WORKERS = 2


def _agent_process(world: AgentWorld) -> subprocess.Popen[bytes]:
    """``leadflow agent run`` as production runs it, pointed at this world's topics and fake provider."""
    env = child_process_environment(world.settings.model_copy(update={"telegram_api_url": world.fake.url}))
    env.update({"LEADFLOW_AGENT_BURST_MS": "200", "LEADFLOW_AGENT_MAX_WAIT_MS": "600",
                "LEADFLOW_AGENT_WORKERS": str(KILLED_AGENT_WORKERS)})
    return subprocess.Popen([str(Path(sys.executable).parent / "leadflow"), "agent", "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_an_agent_killed_mid_stream_resumes_without_a_lost_or_doubled_reply(
        world: AgentWorld, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    world.enable(broker)
    # Slow replies: a kill finds bursts held, claimed, being sent and sent but not yet behind the offsets.
    world.fake.script("telegram", *[Reply(delay_s=0.15) for _ in range(60)])
    leads = [world.lead(broker, name=f"Lead {i}") for i in range(30)]
    agent = _agent_process(world)
    try:
        for i, lead in enumerate(leads):
            lead.say("hola, busco depto en ñuñoa para comprar")
            if i in (9, 19):
                time.sleep(0.4)
                agent.kill()  # SIGKILL: no clean-up of any kind
                agent.wait()
                agent = _agent_process(world)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not all(lead.replies() for lead in leads):
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        agent.terminate()
        agent.wait(20)
    with transaction(world.settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT contact_key, status FROM leadflow.agent_replies WHERE broker_id = %s",
                    (broker.broker_id,))
        fates = dict(cur.fetchall())
    # A kill while the provider was being called leaves that reply's fate unknown ("sending"): it is
    # reported, never resent. Each worker has at most one call in flight, so two kills leave at most
    # 2 x workers unknown (a bound of 2 once assumed one worker and failed on a slow CI run with 32).
    # Every other lead has exactly one reply.
    unknown = {contact for contact, status in fates.items() if status == "sending"}
    assert len(unknown) <= 2 * KILLED_AGENT_WORKERS, fates
    for lead in leads:
        got = len(lead.replies())
        assert got == 1 or (lead.user in unknown and got <= 1), (lead.user, got, fates.get(lead.user))
    assert sum(len(lead.replies()) for lead in leads) >= len(leads) - len(unknown)


def _last_decision(world: AgentWorld, broker_id: int, contact: str, nth: int) -> tuple[str, str | None]:
    """The decision behind the ``nth`` reply (the provider may have it a moment before the row says sent)."""
    for _ in range(200):
        with transaction(world.settings.database_url) as conn, conn.cursor() as cur:
            cur.execute("""SELECT action, asks FROM leadflow.agent_replies WHERE broker_id = %s AND contact_key = %s
                           AND status = 'sent' ORDER BY reply_id""", (broker_id, contact))
            rows = cur.fetchall()
        if len(rows) >= nth:
            return rows[nth - 1][0], rows[nth - 1][1]
        time.sleep(0.02)
    raise AssertionError(f"reply {nth} to {contact} was never recorded as sent")


def _converse(world: AgentWorld, lead: Lead, scenario: Scenario, max_bot_turns: int = 10) -> list[tuple[str, str]]:
    """The scripted person answers what the bot asks, through the webhooks, until the bot closes."""
    said: dict[str, int] = {}
    steps: list[tuple[str, str]] = []
    lead.say(scenario.opening)
    for _ in range(max_bot_turns):
        reply = lead.next_reply(timeout_s=20)
        action, asks = _last_decision(world, lead.broker.broker_id, lead.user, lead.seen)
        steps.append((action, asks or ""))
        if action in ("close", "handoff"):
            break
        key = asks or action
        assert key in scenario.answers, f"{scenario.name}: nothing scripted for {key!r} ({reply!r}; {steps})"
        answers = scenario.answers[key]
        answer = answers if isinstance(answers, str) else answers[said.get(key, 0)]
        said[key] = said.get(key, 0) + 1
        lead.say(answer)
    return steps


def test_scripted_people_converse_with_the_agent_through_the_webhooks(
        world: AgentWorld, make_broker: BrokerFactory) -> None:
    zones = {"CL": "America/Santiago", "MX": "America/Mexico_City", "AR": "America/Argentina/Buenos_Aires",
             "ES": "Europe/Madrid", "US": "America/Chicago"}
    brokers = {country: make_broker(country=country, timezone=zone) for country, zone in zones.items()}
    for scenario_name in READY:
        scenario = SCENARIOS[scenario_name]
        if scenario.settings:
            world.enable(brokers[scenario.country], **scenario.settings)
    for broker in brokers.values():
        if broker.slug not in world.telegram_tokens:
            world.enable(broker)
    world.start_agent(burst_s=0.2)
    people = {name: world.lead(brokers[SCENARIOS[name].country], SCENARIOS[name].channel,
                               str(SCENARIOS[name].answers.get("name", "Lead"))) for name in READY}
    results: dict[str, list[tuple[str, str]]] = {}
    errors: list[BaseException] = []

    def converse_as(name: str) -> None:
        try:
            results[name] = _converse(world, people[name], SCENARIOS[name])
        except BaseException as exc:  # reported below, with the scenario's name
            errors.append(exc)

    threads = [threading.Thread(target=converse_as, args=(name,)) for name in READY]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    for name, steps in results.items():
        asked = [asks for action, asks in steps if action == "ask"]
        # Asked once, unless the answer no longer holds (a buyer who turns to renting has a new budget).
        for slot in set(asked):
            scripted = SCENARIOS[name].answers.get(slot)
            allowed = len(scripted) if isinstance(scripted, tuple) else 1
            assert asked.count(slot) <= allowed, f"{name} was asked {slot} again: {steps}"
        assert not set(asked) & set(SCENARIOS[name].stated), f"{name} was asked what it said at first: {steps}"
        assert "propose_visit" in [a for a, _ in steps], f"{name} never got to a visit: {steps}"
        assert steps[-1][0] == "close", f"{name}: {steps}"
        assert not any(PROMISES.search(text) for text in people[name].replies()), name
    # What the agent understood through the whole path equals what the pure policy reads from the same words,
    # and so does the batch qualification of the landed conversation (bot turns and all).
    from tests.test_leads_pipeline import run as land_and_qualify
    land_and_qualify(world.settings, world.settings.topics)
    fields = ("operation", "locations", "property_type", "bedrooms_min", "budget_max", "budget_currency",
              "financing", "dicom_status", "name", "email", "opted_out")
    for name in READY:
        lead = people[name]
        with transaction(world.settings.database_url) as conn, conn.cursor() as cur:
            burst = Burst(lead.broker.broker_id, lead.broker.slug, lead.channel, lead.user, lead.user, None, None, {})
            turns = history.merge(replies.landed(cur, burst, None))
        assert [t.role for t in turns].count("bot") == len(results[name])
        streamed = knowledge.known(Conversation(turns, AgentConfig(enabled=True), SCENARIOS[name].country,
                                                SCENARIOS[name].channel))
        expected = knowledge.known(Conversation(play(SCENARIOS[name]).messages, AgentConfig(enabled=True),
                                                SCENARIOS[name].country, SCENARIOS[name].channel))
        assert {f: getattr(streamed, f) for f in fields} == {f: getattr(expected, f) for f in fields}, name
        [batch] = rows(world.settings, f"""
            SELECT {", ".join(fields)}
            FROM leadflow.lead_qualifications q JOIN leadflow.lead_identities i USING (lead_id)
            WHERE i.broker_id = %s AND i.identity_kind = %s AND i.identity_value = %s""",
                       lead.broker.broker_id, lead.channel, lead.user)
        said = {f: getattr(expected, f) for f in fields}
        said["budget_max"] = None if said["budget_max"] is None else float(said["budget_max"])
        got = dict(zip(fields, batch, strict=True))
        got["budget_max"] = None if got["budget_max"] is None else float(got["budget_max"])
        assert got == said, name


def test_an_opt_out_is_confirmed_once_and_then_silence(world: AgentWorld, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    world.enable(broker)
    world.start_agent()
    lead = world.lead(broker)
    lead.say("hola busco casa")
    lead.next_reply()
    lead.say("BAJA")
    lead.next_reply()
    lead.say("no me escriban más")
    assert lead.quiet(1.0)
    assert [r[1] for r in _replies(world, broker.broker_id)] == ["ask", "confirm_opt_out", "silence"]


def test_a_message_sent_long_ago_is_landed_but_not_answered(world: AgentWorld, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    world.enable(broker)
    agent = world.start_agent()
    lead = world.lead(broker)
    lead.say("hola, ¿siguen disponibles?", at=datetime.now(UTC) - timedelta(hours=3))
    assert lead.quiet(1.0) and _replies(world, broker.broker_id) == []
    assert agent.stats.stale == 1
    lead.say("¿hola?")
    assert lead.next_reply()


@pytest.mark.parametrize(("text", "waits"), [
    ("hola", 1.0), ("busco depto", 1.0), ("en ñuñoa", 1.0), ("", 1.0), ("¿tienen algo en ñuñoa?", 0.5),
    ("Busco un depto de dos dormitorios", 0.5), ("ok.", 0.5), ("Hi, I want to rent in Austin", 0.5)])
def test_a_fragment_waits_the_whole_burst_window_and_a_finished_thought_half(text: str, waits: float) -> None:
    assert quiet_needed(text, 1.0) == waits


@pytest.mark.parametrize(("text", "asked", "waits"), [
    ("3 dormitorios", "bedrooms", 0.5), ("3 dormitorios", None, 1.0), ("Lo Espejo", "location", 0.5),
    ("sí", "dicom", 0.5), ("no", "dicom", 0.5), ("Camila", "name", 0.5), ("3000 UF", "budget", 0.5),
    ("hola", "bedrooms", 1.0), ("busco depto", None, 1.0), ("", "budget", 1.0)])
def test_an_answer_to_the_bots_question_is_a_finished_thought(text: str, asked: str | None, waits: float) -> None:
    assert quiet_needed(text, 1.0, asked) == waits


def test_the_funnel_response_times_count_the_bots_answers(world: AgentWorld, make_broker: BrokerFactory) -> None:
    from tests.test_analytics import dbt
    from tests.test_leads_pipeline import run

    broker = make_broker()
    world.enable(broker)
    world.start_agent()
    lead = world.lead(broker)
    lead.say("hola, busco depto para arrendar en providencia")
    lead.next_reply()
    run(world.settings, world.settings.topics)  # landing (the bot's reply included), leads, qualification
    dbt(world.settings, as_of=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    [(answered, median_minutes)] = rows(world.settings, """
        SELECT leads_answered, median_first_reply_minutes FROM marts.fct_response_times
        WHERE broker_id = %s AND channel = 'telegram'""", broker.broker_id)
    assert answered == 1 and 0 <= median_minutes < 0.5  # seconds, not the hours a person would take


def test_an_opt_out_on_whatsapp_silences_the_bot_on_telegram_once_they_are_one_lead(
        world: AgentWorld, make_broker: BrokerFactory) -> None:
    from tests.test_leads_pipeline import run as land_and_qualify

    broker = make_broker()
    world.enable(broker)
    world.start_agent()
    on_whatsapp = world.lead(broker, "whatsapp", "Rocío")
    on_whatsapp.say("hola, busco casa en la florida")
    on_whatsapp.next_reply()
    on_whatsapp.say("BAJA")
    on_whatsapp.next_reply()  # the opt-out is confirmed once
    # The same person on Telegram, sharing their phone card: identity resolution makes them one lead.
    on_telegram = world.lead(broker, "telegram", "Rocío")
    update = {"update_id": int(on_telegram.user), "message": {
        "message_id": 1, "date": int(datetime.now(UTC).timestamp()),
        "from": {"id": int(on_telegram.user), "is_bot": False, "first_name": "Rocío"},
        "chat": {"id": int(on_telegram.user), "type": "private"},
        "contact": {"phone_number": "+" + on_whatsapp.user, "first_name": "Rocío", "user_id": int(on_telegram.user)}}}
    path, headers, body = signed("telegram", broker, update)
    assert world.http.post(world.ingest.url + path, content=body, headers=headers).status_code == 200
    # Before resolution the card is a stranger's media message: answered as such ("I read text only").
    on_telegram.next_reply()
    land_and_qualify(world.settings, world.settings.topics)
    [(leads,)] = rows(world.settings, """SELECT count(*) FROM leadflow.leads
                                         WHERE broker_id = %s AND merged_into IS NULL""", broker.broker_id)
    # Failed once on a doubly loaded CI machine and never reproduced: the rows say what was landed and linked.
    assert leads == 1, (
        rows(world.settings, """SELECT m.message_id, m.channel, m.direction, m.contact_channel_id, m.contact_phone,
                                       ml.lead_id FROM leadflow.raw_messages m
                                LEFT JOIN leadflow.message_leads ml USING (message_id)
                                WHERE m.broker_id = %s ORDER BY m.message_id""", broker.broker_id),
        rows(world.settings, """SELECT identity_kind, identity_value, lead_id, reason FROM leadflow.lead_identities
                                WHERE broker_id = %s""", broker.broker_id))
    on_telegram.say("hola? me pueden ayudar con una casa?")
    assert on_telegram.quiet(1.5)
    assert _replies(world, broker.broker_id)[-1][3] == ["opted_out"]


def test_agents_started_alike_share_the_partitions_and_take_over_a_stopped_ones(
        world: AgentWorld, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    world.enable(broker)
    first = world.start_agent()
    second = world.start_agent()
    every = list(range(world.settings.kafka_partitions))
    deadline = time.monotonic() + 30
    while not (first.partitions and second.partitions and set(first.partitions).isdisjoint(second.partitions)
               and sorted(first.partitions + second.partitions) == every):
        assert time.monotonic() < deadline, (first.partitions, second.partitions)
        time.sleep(0.1)
    leads = [world.lead(broker, name=f"Lead {i}") for i in range(12)]
    for lead in leads:
        lead.say("hola, busco depto en santiago centro")
    for lead in leads:
        lead.next_reply()
    assert first.stats.bursts > 0 and second.stats.bursts > 0
    # The first stops (a crash does the same: its connection, and the locks it held, are gone).
    [(_, stop, thread)] = [entry for entry in world.agents if entry[0] is first]
    stop.set()
    thread.join(30)
    deadline = time.monotonic() + 30
    while second.partitions != every:
        assert time.monotonic() < deadline, second.partitions
        time.sleep(0.1)
    for lead in leads:
        lead.say("¿y tienen algo en providencia?")
    for lead in leads:
        lead.next_reply()
    assert all(lead.quiet(0) for lead in leads[:-1]) and leads[-1].quiet(1.0)  # one reply each, none doubled
    assert all(len(lead.replies()) == 2 for lead in leads)
