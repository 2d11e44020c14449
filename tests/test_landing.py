"""Kafka → PostgreSQL exactly once, against the real broker and database.

The central test kills a landing process with SIGKILL in the middle of its work, lands again,
and checks that the landed set equals the produced set with no duplicates.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from leadflow.brokers import Broker
from leadflow.config import Settings, Topics
from leadflow.db.connection import connect
from leadflow.events import ChannelMessage, Contact
from leadflow.kafka import make_producer, produce_all
from leadflow.landing import land
from tests.conftest import BrokerFactory


def produce_messages(settings: Settings, topics: Topics, broker: Broker, count: int,
                     duplicate_every: int = 0) -> set[str]:
    """Produce ``count`` distinct messages (plus redeliveries); returns their provider ids."""
    items: list[tuple[bytes, bytes]] = []
    ids: set[str] = set()
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(count):
        event = ChannelMessage.build(
            broker_id=broker.broker_id, broker_slug=broker.slug, channel="whatsapp",
            provider_message_id=f"wamid.{i:06d}", conversation_id=f"569{i % 97:08d}",
            contact=Contact(channel_user_id=f"569{i % 97:08d}"), text=f"mensaje {i} \t con tab\ny salto \\ barra",
            sent_at=start + timedelta(seconds=i), raw={"i": i, "nul": "a\x00b"},
        )
        copies = 2 if duplicate_every and i % duplicate_every == 0 else 1
        items += [(event.kafka_key(), event.model_dump_json().encode())] * copies
        ids.add(event.provider_message_id)
    produce_all(make_producer(settings.kafka_bootstrap_servers, linger_ms=20), topics.messages, items)
    return ids


def landed(settings: Settings, broker: Broker) -> list[str]:
    conn = connect(settings.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT provider_message_id FROM leadflow.raw_messages WHERE broker_id = %s",
                        (broker.broker_id,))
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def stored_offsets(settings: Settings, topics: Topics) -> int:
    conn = connect(settings.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT coalesce(sum(next_offset), 0) FROM leadflow.kafka_offsets WHERE topic = %s",
                        (topics.messages,))
            row = cur.fetchone()
            return int(row[0]) if row else 0
    finally:
        conn.close()


def test_killed_landing_reruns_to_exactly_the_produced_set(settings: Settings, fresh_topics: Topics,
                                                           make_broker: BrokerFactory) -> None:
    broker = make_broker()
    produced = produce_messages(settings, fresh_topics, broker, 4000, duplicate_every=10)
    env = {**os.environ, "LEADFLOW_KAFKA_TOPIC_PREFIX": fresh_topics.prefix}
    lander = subprocess.Popen([sys.executable, "-m", "leadflow.cli", "land", "--batch-size", "25"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not landed(settings, broker) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(lander.pid, signal.SIGKILL)
    lander.wait()
    partial = len(landed(settings, broker))
    assert 0 < partial < len(produced), "the kill must land mid-stream for this test to mean anything"

    result = land(settings.database_url, settings.kafka_bootstrap_servers, fresh_topics)

    rows = landed(settings, broker)
    assert set(rows) == produced
    assert len(rows) == len(rows and set(rows))  # no duplicates
    assert result.messages_landed == len(produced) - partial
    # Offsets cover every record produced, including the redeliveries that were absorbed.
    assert stored_offsets(settings, fresh_topics) == len(produced) + len(produced) // 10


def test_landing_twice_lands_nothing_the_second_time(settings: Settings, fresh_topics: Topics,
                                                     make_broker: BrokerFactory) -> None:
    broker = make_broker()
    produce_messages(settings, fresh_topics, broker, 50)
    first = land(settings.database_url, settings.kafka_bootstrap_servers, fresh_topics)
    second = land(settings.database_url, settings.kafka_bootstrap_servers, fresh_topics)
    assert (first.messages_landed, second.records_read, second.messages_landed) == (50, 0, 0)


def test_redelivered_events_are_absorbed_and_counted(settings: Settings, fresh_topics: Topics,
                                                     make_broker: BrokerFactory) -> None:
    broker = make_broker()
    produce_messages(settings, fresh_topics, broker, 30, duplicate_every=3)
    result = land(settings.database_url, settings.kafka_bootstrap_servers, fresh_topics)
    assert (result.records_read, result.messages_landed, result.duplicates_absorbed) == (40, 30, 10)


def test_text_with_tabs_newlines_backslashes_and_nul_survives_the_copy(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    produce_messages(settings, fresh_topics, broker, 1)
    land(settings.database_url, settings.kafka_bootstrap_servers, fresh_topics)
    conn = connect(settings.database_url)
    with conn.cursor() as cur:
        cur.execute("SELECT body, payload FROM leadflow.raw_messages WHERE broker_id = %s", (broker.broker_id,))
        body, payload = cur.fetchone() or (None, None)
    conn.close()
    assert body == "mensaje 0 \t con tab\ny salto \\ barra"
    assert payload == {"i": 0, "nul": "ab"}


def test_undecodable_record_becomes_a_dead_letter_of_the_broker_in_its_key(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    key = f"{broker.broker_id}:telegram:1".encode()
    produce_all(make_producer(settings.kafka_bootstrap_servers), fresh_topics.messages,
                [(key, b"{not json"), (key, b'{"schema_version": 99, "event_type": "message"}')])
    result = land(settings.database_url, settings.kafka_bootstrap_servers, fresh_topics)
    assert result.undecodable_records == 2
    conn = connect(settings.database_url)
    with conn.cursor() as cur:
        cur.execute("SELECT reason, body FROM leadflow.dead_letters WHERE broker_id = %s ORDER BY kafka_offset",
                    (broker.broker_id,))
        rows = cur.fetchall()
    conn.close()
    assert [bytes(body) for _, body in rows] == [b"{not json", b'{"schema_version": 99, "event_type": "message"}']
    assert "schema_version 99" in rows[1][0]


def test_racing_landings_never_duplicate_or_skip(settings: Settings, fresh_topics: Topics,
                                                 make_broker: BrokerFactory) -> None:
    """Three landings started at once split the partitions as they join (each rebalances at every
    batch; a partition that changes hands is read again from its committed offset), so whatever the
    interleaving, they leave exactly the produced set between them."""
    broker = make_broker()
    produced = produce_messages(settings, fresh_topics, broker, 600)
    env = {**os.environ, "LEADFLOW_KAFKA_TOPIC_PREFIX": fresh_topics.prefix}
    racers = [subprocess.Popen([sys.executable, "-m", "leadflow.cli", "land", "--batch-size", "10"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(3)]
    errors = [racer.communicate(timeout=120)[1].decode() for racer in racers]
    for racer, stderr in zip(racers, errors, strict=True):
        assert racer.returncode == 0, stderr
    rows = landed(settings, broker)
    assert len(rows) == len(set(rows)) and set(rows) == produced
    assert stored_offsets(settings, fresh_topics) == 600


def test_offsets_of_another_cluster_are_not_applied(settings: Settings, fresh_topics: Topics,
                                                    make_broker: BrokerFactory) -> None:
    """Offsets are keyed by cluster id: stale rows of a wiped (memory-only) cluster are ignored."""
    broker = make_broker()
    conn = connect(settings.database_url)
    with conn, conn.cursor() as cur:
        for partition in range(settings.kafka_partitions):
            cur.execute("INSERT INTO leadflow.kafka_offsets (consumer, cluster_id, topic, partition, next_offset) "
                        "VALUES ('landing', %s, %s, %s, 1000000)",
                        (f"wiped-{uuid.uuid4().hex[:6]}", fresh_topics.messages, partition))
    conn.close()
    produce_messages(settings, fresh_topics, broker, 20)
    assert land(settings.database_url, settings.kafka_bootstrap_servers, fresh_topics).messages_landed == 20


def test_record_with_wrong_types_is_dead_lettered_and_its_batch_still_lands(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    """The cheap check passes it, PostgreSQL rejects the batch, full validation isolates the bad record."""
    broker = make_broker()
    good = produce_messages(settings, fresh_topics, broker, 5)
    bad = ChannelMessage.build(broker_id=broker.broker_id, broker_slug=broker.slug, channel="telegram",
                               provider_message_id="bad-1", contact=Contact(channel_user_id="1"),
                               sent_at=datetime(2026, 11, 1, tzinfo=UTC)).model_dump(mode="json")
    bad["sent_at"] = "the day after tomorrow"
    produce_all(make_producer(settings.kafka_bootstrap_servers), fresh_topics.messages,
                [(f"{broker.broker_id}:telegram:1".encode(), json.dumps(bad).encode())])
    result = land(settings.database_url, settings.kafka_bootstrap_servers, fresh_topics)
    assert (result.messages_landed, result.undecodable_records) == (5, 1)
    assert set(landed(settings, broker)) == good
    conn = connect(settings.database_url)
    with conn.cursor() as cur:
        cur.execute("SELECT reason FROM leadflow.dead_letters WHERE broker_id = %s", (broker.broker_id,))
        [(reason,)] = cur.fetchall()
    conn.close()
    assert reason.startswith("undecodable record: invalid event")


def test_a_steady_stream_is_committed_in_batches_bounded_in_time(settings: Settings, fresh_topics: Topics,
                                                                   make_broker: BrokerFactory) -> None:
    """Under traffic the polls never come back empty; the landing still commits every ``max_batch_s``."""
    import threading

    broker = make_broker()
    producer = make_producer(settings.kafka_bootstrap_servers)
    stop = threading.Event()
    sent: list[str] = []

    def stream() -> None:  # about 100 messages a second until told to stop
        i = 0
        while not stop.is_set():
            event = ChannelMessage.build(broker_id=broker.broker_id, broker_slug=broker.slug, channel="telegram",
                                         provider_message_id=f"s{i}", contact=Contact(channel_user_id=f"{i % 7}"),
                                         text=f"m{i}", sent_at=datetime(2026, 11, 1, tzinfo=UTC))
            produce_all(producer, fresh_topics.messages, [(event.kafka_key(), event.model_dump_json().encode())])
            sent.append(event.provider_message_id)
            i += 1
            time.sleep(0.01)

    writer = threading.Thread(target=stream)
    writer.start()
    try:
        time.sleep(0.5)
        result = land(settings.database_url, settings.kafka_bootstrap_servers, fresh_topics, max_batch_s=0.5,
                      poll_timeout_ms=300, max_batches=4)
    finally:
        stop.set()
        writer.join()
    # Four commits while the stream never paused: each batch ended by time, not by a quiet topic.
    assert result.batches == 4 and 0 < result.messages_landed < len(sent)
    land(settings.database_url, settings.kafka_bootstrap_servers, fresh_topics)
    assert sorted(landed(settings, broker)) == sorted(sent)


def test_a_landing_whose_postgresql_goes_away_stops_in_one_line_and_a_rerun_lands_the_rest(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    produced = produce_messages(settings, fresh_topics, broker, 3000)
    app = f"land-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "LEADFLOW_KAFKA_TOPIC_PREFIX": fresh_topics.prefix, "PGAPPNAME": app}
    lander = subprocess.Popen([sys.executable, "-m", "leadflow.cli", "land", "--batch-size", "25"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not landed(settings, broker) and time.monotonic() < deadline:
        time.sleep(0.01)
    # What a client sees when the server restarts or fails over: its connections are cut.
    conn = connect(settings.database_url)
    conn.autocommit = True
    try:
        while lander.poll() is None and time.monotonic() < deadline:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                            (app,))
            time.sleep(0.01)
    finally:
        conn.close()
    _, err = lander.communicate(timeout=30)
    assert lander.returncode == 3, err
    lines = [line for line in err.splitlines() if line.strip()]
    # No traceback; the last line says what happened and what to do. (psycopg2's C layer sometimes prints the
    # server's termination notice itself, without a traceback, when the cut comes in the middle of a COPY.)
    assert "Traceback (most recent call last)" not in err, err
    assert lines[-1].startswith("leadflow: PostgreSQL stopped answering") and "run it again" in lines[-1], err
    partial = len(landed(settings, broker))
    assert partial < len(produced), "PostgreSQL went away after the landing had finished: nothing was tested"

    land(settings.database_url, settings.kafka_bootstrap_servers, fresh_topics)
    rows = landed(settings, broker)
    assert set(rows) == produced and len(rows) == len(produced)
    assert stored_offsets(settings, fresh_topics) == len(produced)
