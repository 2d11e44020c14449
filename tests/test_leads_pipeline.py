"""Landed messages → leads → qualifications → scores, as Dagster assets on the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dagster import materialize

from leadflow.brokers import Broker
from leadflow.config import Settings, Topics
from leadflow.db.connection import connect
from leadflow.events import ChannelMessage, Contact
from leadflow.kafka import make_producer, produce_all
from pipelines.resources import KafkaResource, PostgresResource
from tests.conftest import BrokerFactory

T0 = datetime(2026, 11, 2, 12, tzinfo=UTC)


def send(settings: Settings, topics: Topics, broker: Broker, *messages: tuple[str, str, Contact, str, int]) -> None:
    items = []
    for channel, provider_id, contact, text, minute in messages:
        event = ChannelMessage.build(broker_id=broker.broker_id, broker_slug=broker.slug, channel=channel,  # type: ignore[arg-type]
                                     provider_message_id=provider_id, contact=contact, text=text,
                                     sent_at=T0 + timedelta(minutes=minute))
        items.append((event.kafka_key(), event.model_dump_json().encode()))
    produce_all(make_producer(settings.kafka_bootstrap_servers), topics.messages, items)


def run(settings: Settings, topics: Topics) -> dict[str, dict[str, Any]]:
    from assets.landing import landed_messages
    from assets.leads import (
        lead_qualifications,
        lead_scores,
        lead_stages,
        leads,
        leads_never_cross_brokers,
        no_stage_regression,
        scores_in_range,
    )

    result = materialize([landed_messages, leads, lead_qualifications, lead_scores, lead_stages,
                          leads_never_cross_brokers, scores_in_range, no_stage_regression], resources={
        "postgres": PostgresResource(url=settings.database_url),
        "kafka": KafkaResource(bootstrap_servers=settings.kafka_bootstrap_servers, topic_prefix=topics.prefix)})
    assert result.success
    assert all(check.passed for check in result.get_asset_check_evaluations())
    return {node: {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}
            for node in ("leads", "lead_qualifications", "lead_scores", "lead_stages")}


def rows(settings: Settings, sql: str, *params: object) -> list[tuple[Any, ...]]:
    conn = connect(settings.database_url)
    with conn.cursor() as cur:
        cur.execute(sql, params)
        found = cur.fetchall()
    conn.close()
    return found


WA = Contact(channel_user_id="56987654321", phone_e164="+56987654321", display_name="Camila Rojas")
CALL = Contact(channel_user_id="+56987654321", phone_e164="+56987654321")
TG = Contact(channel_user_id="4242", display_name="Tomás")


def test_channels_merge_into_leads_that_are_qualified_and_scored_incrementally(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    send(settings, fresh_topics, broker,
         ("whatsapp", "wamid.1", WA, "Hola, busco depto 2d2b en Ñuñoa", 0),
         ("vapi", "call-1:1", CALL, "hasta 5.200 UF, tengo crédito preaprobado, me cambio en 2 meses", 60),
         ("telegram", "9001", TG, "quiero arrendar en Providencia hasta 600 lucas", 5))
    run(settings, fresh_topics)
    assert rows(settings, "SELECT count(*) FROM leadflow.leads WHERE broker_id = %s AND merged_into IS NULL",
                broker.broker_id) == [(2,)]

    [camila] = rows(settings, """SELECT q.operation, q.budget_max, q.budget_currency, q.locations, q.financing,
                                        s.temperature, l.channels, l.display_name
                                 FROM leadflow.leads l JOIN leadflow.lead_qualifications q USING (lead_id)
                                 JOIN leadflow.lead_scores s USING (lead_id)
                                 WHERE l.broker_id = %s AND l.phone_e164 = '+56987654321'""", broker.broker_id)
    assert camila == ("buy", 5200, "UF", ["ñuñoa"], "mortgage_preapproved", "hot", ["vapi", "whatsapp"],
                      "Camila Rojas")

    # Nothing new: nothing is qualified or scored again.
    again = run(settings, fresh_topics)
    assert (again["leads"]["messages_assigned"], again["lead_qualifications"]["qualified"],
            again["lead_scores"]["scored"]) == (0, 0, 0)

    # One lead writes again: only that lead is re-qualified, and the latest statement wins.
    send(settings, fresh_topics, broker, ("telegram", "9002", TG, "mejor compro, hasta 4.000 UF", 90))
    third = run(settings, fresh_topics)
    assert third["lead_qualifications"]["qualified"] == 1 and third["lead_scores"]["scored"] == 1
    [tomas] = rows(settings, """SELECT q.operation, q.budget_max, q.budget_currency FROM leadflow.leads l
                                JOIN leadflow.lead_qualifications q USING (lead_id)
                                WHERE l.broker_id = %s AND l.display_name = 'Tomás'""", broker.broker_id)
    assert tomas == ("buy", 4000, "UF")


def test_the_same_person_at_two_brokers_is_two_leads_with_their_own_data(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    first, second = make_broker(), make_broker()
    send(settings, fresh_topics, first, ("whatsapp", "wamid.a", WA, "busco casa en La Reina", 0))
    send(settings, fresh_topics, second, ("whatsapp", "wamid.a", WA, "busco arriendo en Macul", 0))
    run(settings, fresh_topics)
    found = rows(settings, """SELECT l.broker_id, q.locations FROM leadflow.leads l
                              JOIN leadflow.lead_qualifications q USING (lead_id)
                              WHERE l.broker_id IN (%s, %s) ORDER BY l.broker_id""",
                 first.broker_id, second.broker_id)
    assert found == [(first.broker_id, ["la reina"]), (second.broker_id, ["macul"])]


def test_a_telegram_lead_who_shares_their_phone_merges_into_their_whatsapp_lead(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    send(settings, fresh_topics, broker, ("whatsapp", "wamid.m1", WA, "hola", 0),
         ("telegram", "7001", TG, "hola por telegram", 1))
    run(settings, fresh_topics)
    shared = Contact(channel_user_id="4242", phone_e164="+56987654321", display_name="Tomás")
    send(settings, fresh_topics, broker, ("telegram", "7002", shared, "te comparto mi contacto", 2))
    result = run(settings, fresh_topics)
    assert result["leads"]["merges"] == 1
    [(reason, moved_identities, moved_messages)] = rows(
        settings, "SELECT reason, moved_identities, cardinality(moved_message_ids) FROM leadflow.lead_merges "
                  "WHERE broker_id = %s", broker.broker_id)
    assert moved_identities and moved_messages == 1  # what the merge moved is kept, so it can be undone
    # The older lead is kept; which one is older depends on the partition each message landed from.
    assert "telegram 4242" in reason or "whatsapp 56987654321" in reason
    assert rows(settings, "SELECT count(DISTINCT lead_id) FROM leadflow.message_leads WHERE broker_id = %s",
                broker.broker_id) == [(1,)]


def test_stages_advance_with_events_and_opting_out_loses_the_lead(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    send(settings, fresh_topics, broker,
         ("whatsapp", "wamid.s1", WA, "Hola, busco depto 2d2b en Ñuñoa, hasta 5.200 UF, crédito preaprobado", 0))
    run(settings, fresh_topics)
    events = rows(settings, """SELECT from_stage, to_stage, reason FROM leadflow.stage_events
                               WHERE broker_id = %s ORDER BY occurred_at, sequence""", broker.broker_id)
    assert [e[1] for e in events] == ["entrada", "perfilamiento", "calificacion_financiera", "potencial"]
    assert events[0][0] is None and all(e[2].startswith("auto: ") for e in events)

    send(settings, fresh_topics, broker, ("whatsapp", "wamid.s2", WA, "ya no me escriban más", 30))
    run(settings, fresh_topics)
    assert rows(settings, "SELECT stage FROM leadflow.lead_stages WHERE broker_id = %s",
                broker.broker_id) == [("perdido",)]
    last = rows(settings, """SELECT from_stage, to_stage FROM leadflow.stage_events WHERE broker_id = %s
                             ORDER BY occurred_at DESC, sequence DESC LIMIT 1""", broker.broker_id)
    assert last == [("potencial", "perdido")]


def test_stage_events_carry_the_time_of_the_message_that_moved_the_lead_not_the_run(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    send(settings, fresh_topics, broker, ("whatsapp", "wamid.e1", WA, "hola", 0),
         ("whatsapp", "wamid.e2", WA, "busco depto en Ñuñoa hasta 5.200 UF, crédito preaprobado", 7))
    run(settings, fresh_topics)
    events = rows(settings, """SELECT to_stage, occurred_at, sequence FROM leadflow.stage_events
                               WHERE broker_id = %s ORDER BY occurred_at, sequence""", broker.broker_id)
    assert [e[0] for e in events][:2] == ["entrada", "perfilamiento"]
    assert {e[1] for e in events} == {T0 + timedelta(minutes=7)}  # the newest message, whatever today is
    assert [e[2] for e in events] == list(range(len(events)))
    assert rows(settings, "SELECT entered_at FROM leadflow.lead_stages WHERE broker_id = %s",
                broker.broker_id) == [(T0 + timedelta(minutes=7),)]


def test_idle_leads_are_flagged_stalled_for_their_stage(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    from leadflow.leads.store.stages import update_stages

    broker = make_broker()
    send(settings, fresh_topics, broker, ("telegram", "8101", TG, "hola", 0))
    run(settings, fresh_topics)
    update_stages(settings.database_url, as_of=T0 + timedelta(days=30))
    assert rows(settings, "SELECT stage, stalled FROM leadflow.lead_stages WHERE broker_id = %s",
                broker.broker_id) == [("entrada", True)]


def test_a_phone_the_lead_writes_merges_them_with_the_lead_behind_that_number(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    send(settings, fresh_topics, broker, ("whatsapp", "wamid.p1", WA, "hola, busco depto en Ñuñoa", 0),
         ("telegram", "6001", TG, "Hola, mi número es +56 9 8765 4321, llámenme", 5))
    run(settings, fresh_topics)  # resolves two leads; qualification reads the stated phone
    assert rows(settings, "SELECT count(*) FROM leadflow.leads WHERE broker_id = %s AND merged_into IS NULL",
                broker.broker_id) == [(2,)]
    run(settings, fresh_topics)  # the stated phone links the Telegram lead to the WhatsApp number
    assert rows(settings, "SELECT count(*) FROM leadflow.leads WHERE broker_id = %s AND merged_into IS NULL",
                broker.broker_id) == [(1,)]
    # The number already belonged to the WhatsApp lead, so the evidence is one recorded merge.
    assert rows(settings, "SELECT count(*) FROM leadflow.lead_merges WHERE broker_id = %s",
                broker.broker_id) == [(1,)]
    [(channels,)] = rows(settings, "SELECT channels FROM leadflow.leads WHERE broker_id = %s AND merged_into IS NULL",
                         broker.broker_id)
    assert channels == ["telegram", "whatsapp"]


def test_a_stated_email_becomes_an_identity_with_its_reason(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    send(settings, fresh_topics, broker, ("telegram", "6101", TG, "mi correo es tomas.soto@gmail.com", 0))
    run(settings, fresh_topics)
    run(settings, fresh_topics)
    assert rows(settings, """SELECT identity_kind, reason LIKE 'stated by lead %%' FROM leadflow.lead_identities
                             WHERE broker_id = %s AND identity_kind = 'email'""", broker.broker_id) == [("email", True)]


def test_an_undone_merge_restores_both_leads_and_they_stay_apart(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    from leadflow.cli import main
    from leadflow.leads.merges import MergeError, list_merges, unmerge

    broker = make_broker()
    send(settings, fresh_topics, broker, ("whatsapp", "wamid.u1", WA, "hola, busco depto en Ñuñoa hasta 4.000 UF", 0),
         ("telegram", "8001", TG, "Hola, soy Tomás, busco casa en Macul", 1))
    run(settings, fresh_topics)
    # Tomás writes Camila's number (they share a family phone): the next run merges the two leads.
    send(settings, fresh_topics, broker, ("telegram", "8002", TG, "mi número es +56 9 8765 4321", 2))
    run(settings, fresh_topics)
    run(settings, fresh_topics)
    [merge] = list_merges(settings.database_url, broker.broker_id)
    assert merge.undone_at is None and merge.messages >= 1

    assert main(["leads", "unmerge", str(merge.merge_id)]) == 0
    with pytest.raises(MergeError, match="already undone"):
        unmerge(settings.database_url, merge.merge_id)
    assert rows(settings, "SELECT count(*) FROM leadflow.leads WHERE broker_id = %s AND merged_into IS NULL",
                broker.broker_id) == [(2,)]
    # Later runs (the stated number is read again, every time) never merge them back.
    send(settings, fresh_topics, broker, ("telegram", "8003", TG, "¿me llaman al +56 9 8765 4321?", 3))
    result = run(settings, fresh_topics)
    run(settings, fresh_topics)
    assert result["leads"]["merges"] == 0
    found = rows(settings, """
        SELECT l.lead_id, l.channels, q.property_type, q.locations FROM leadflow.leads l
        JOIN leadflow.lead_qualifications q USING (lead_id)
        WHERE l.broker_id = %s AND l.merged_into IS NULL ORDER BY l.lead_id""", broker.broker_id)
    assert sorted((channels, kind, places) for _id, channels, kind, places in found) == [
        (["telegram"], "house", ["macul"]), (["whatsapp"], "apartment", ["ñuñoa"])]
    assert rows(settings, "SELECT count(*) FROM leadflow.lead_separations WHERE broker_id = %s",
                broker.broker_id) == [(1,)]


def test_leads_of_two_brokers_cannot_be_kept_apart_or_unmerged_by_mistake(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    from leadflow.leads.merges import MergeError, keep_apart, unmerge

    first, second = make_broker(), make_broker()
    send(settings, fresh_topics, first, ("whatsapp", "wamid.k1", WA, "hola", 0))
    send(settings, fresh_topics, second, ("whatsapp", "wamid.k2", WA, "hola", 0))
    run(settings, fresh_topics)
    [(a,)] = rows(settings, "SELECT lead_id FROM leadflow.leads WHERE broker_id = %s", first.broker_id)
    [(b,)] = rows(settings, "SELECT lead_id FROM leadflow.leads WHERE broker_id = %s", second.broker_id)
    with pytest.raises(MergeError, match="different brokers"):
        keep_apart(settings.database_url, a, b)
    with pytest.raises(MergeError, match="no merge"):
        unmerge(settings.database_url, 10**9)
