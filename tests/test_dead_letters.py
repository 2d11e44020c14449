"""A malformed delivery is kept once per broker, channel and body, however often it is sent (issue 18:
a second `make demo` dead-lettered its malformed samples again, 22 → 44)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from fastapi.testclient import TestClient

from ingest_api.app import create_app
from leadflow.brokers import Broker, add_broker
from leadflow.config import Settings, with_database
from leadflow.db.connection import connect
from leadflow.db.migrate import downgrade, upgrade
from leadflow.demo.webhooks import signed
from leadflow.landing import land
from leadflow.services import postgres as embedded_postgres
from tests import payloads
from tests.conftest import BrokerFactory


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, broker_reload_interval_s=0)) as test_client:
        yield test_client


def send_bad(client: TestClient, broker: Broker, channel: str, body: dict[str, Any]) -> None:
    path, headers, raw = signed(channel, broker, body)
    assert client.post(path, content=raw, headers=headers).status_code == 422


def dead_letters(settings: Settings, broker: Broker) -> list[tuple[str, bytes]]:
    conn = connect(settings.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT channel, body FROM leadflow.dead_letters WHERE broker_id = %s ORDER BY dead_letter_id",
                        (broker.broker_id,))
            return [(channel, bytes(body)) for channel, body in cur.fetchall()]
    finally:
        conn.close()


def test_the_same_malformed_body_twice_is_one_dead_letter_and_a_different_one_is_another(
        client: TestClient, settings: Settings, make_broker: BrokerFactory) -> None:
    broker, other = make_broker(), make_broker()
    bad, worse = payloads.MALFORMED["form"], {"name": "Still no contact"}
    send_bad(client, broker, "form", bad)
    send_bad(client, broker, "form", bad)  # the provider (or a second `make demo`) sends it again
    send_bad(client, broker, "form", worse)
    send_bad(client, other, "form", bad)  # another broker's copy is that broker's own
    land(settings.database_url, settings.kafka_bootstrap_servers, settings.topics)
    kept = dead_letters(settings, broker)
    assert [channel for channel, _ in kept] == ["form", "form"]
    assert len({body for _, body in kept}) == 2
    assert len(dead_letters(settings, other)) == 1

    # A rerun after landing changes nothing either.
    send_bad(client, broker, "form", bad)
    land(settings.database_url, settings.kafka_bootstrap_servers, settings.topics)
    assert dead_letters(settings, broker) == kept


def test_the_same_body_on_two_channels_is_two_dead_letters(
        client: TestClient, settings: Settings, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    body = {"call_id": "b-1", "created_at": "2026-11-20T16:00:00Z"}  # malformed for both calls channels
    send_bad(client, broker, "bland", body)
    send_bad(client, broker, "vapi", body)
    land(settings.database_url, settings.kafka_bootstrap_servers, settings.topics)
    assert sorted(channel for channel, _ in dead_letters(settings, broker)) == ["bland", "vapi"]


def test_the_migration_keeps_the_first_of_the_copies_already_stored_and_goes_down_again(pg_admin_url: str) -> None:
    name = f"leadflow_dl_{uuid.uuid4().hex[:8]}"
    embedded_postgres.create_database(pg_admin_url, name)
    url = with_database(pg_admin_url, name)
    try:
        upgrade(url, "0017_person_replies")
        broker = add_broker(url, "dl-broker", name="DL", country="CL", timezone="America/Santiago")
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            for offset, body in enumerate([b"{}", b"{}", b"[]", b"{}"]):
                cur.execute("INSERT INTO leadflow.dead_letters (broker_id, channel, reason, body, received_at, "
                            "kafka_cluster_id, kafka_topic, kafka_partition, kafka_offset) "
                            "VALUES (%s, 'form', 'bad', %s, now(), 'c', 't', 0, %s)",
                            (broker.broker_id, body, offset))
        upgrade(url)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT kafka_offset FROM leadflow.dead_letters ORDER BY kafka_offset")
            assert cur.fetchall() == [(0,), (2,)]
        downgrade(url, "0017_person_replies")
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'leadflow' "
                        "AND table_name = 'dead_letters' AND column_name = 'body_digest'")
            assert cur.fetchone() == (0,)
        conn.close()
        upgrade(url)
    finally:
        embedded_postgres.drop_database(pg_admin_url, name)
