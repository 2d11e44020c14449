"""The agent and the dispatcher keep their own offsets in PostgreSQL: past the end of a wiped log, they
stop with the fix instead of waiting for the new log to pass the old offsets (and skipping what came
before). The landing's own case, on a really wiped durable broker, is in tests/test_durable_kafka.py."""

from __future__ import annotations

import threading

import pytest

from leadflow.agent.stream import READER as AGENT
from leadflow.agent.stream import LeadAgent
from leadflow.cli import main
from leadflow.config import Settings, Topics
from leadflow.db.connection import transaction
from leadflow.kafka import cluster_id, make_consumer, partitions_of
from leadflow.landing import OffsetsBeyondLog
from leadflow.offsets import lock_offsets, store_offsets
from leadflow.outbound.dispatcher import READER as DISPATCHER
from leadflow.outbound.dispatcher import read_commands

PAST_THE_END = 1000


def _past_the_end(settings: Settings, reader: str, topic: str) -> tuple[str, dict[tuple[str, int], int]]:
    """Offsets for ``reader`` beyond an empty topic: what a broker wiped under the same cluster id leaves."""
    consumer = make_consumer(settings.kafka_bootstrap_servers)
    try:
        cluster = cluster_id(consumer)
        offsets = {(topic, p): PAST_THE_END for p in partitions_of(consumer, topic)}
    finally:
        consumer.close()
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        lock_offsets(cur, reader, cluster, list(offsets))  # creates the rows, as a first read does
        store_offsets(cur, reader, cluster, offsets)
    return cluster, offsets


def _stored(settings: Settings, reader: str, cluster: str, topic: str) -> dict[tuple[str, int], int]:
    """The reader's offsets on ``topic`` (the session's database holds other tests' topics too)."""
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT topic, partition, next_offset FROM leadflow.kafka_offsets WHERE consumer = %s "
                    "AND cluster_id = %s AND topic = %s", (reader, cluster, topic))
        return {(t, p): int(o) for t, p, o in cur.fetchall()}


def test_the_agent_stops_with_the_fix_when_its_offsets_are_past_the_log(settings: Settings,
                                                                        fresh_topics: Topics) -> None:
    cluster, offsets = _past_the_end(settings, AGENT, fresh_topics.messages)
    agent = LeadAgent(settings.model_copy(update={"kafka_topic_prefix": fresh_topics.prefix}), {})
    with pytest.raises(OffsetsBeyondLog, match=rf"read by the agent .*wiped or replaced.*consumer = '{AGENT}'"):
        agent.run(threading.Event())
    assert not agent.ready.is_set()
    assert _stored(settings, AGENT, cluster, fresh_topics.messages) == offsets  # nothing read, nothing moved


def test_leadflow_agent_run_says_it_in_one_line_and_exits_2(settings: Settings, fresh_topics: Topics,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    _past_the_end(settings, AGENT, fresh_topics.messages)
    monkeypatch.setenv("LEADFLOW_KAFKA_TOPIC_PREFIX", fresh_topics.prefix)
    assert main(["agent", "run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "wiped or replaced" in err and "DELETE FROM leadflow.kafka_offsets" in err


def test_the_dispatcher_stops_with_the_fix_when_its_offsets_are_past_the_log(settings: Settings,
                                                                             fresh_topics: Topics) -> None:
    cluster, offsets = _past_the_end(settings, DISPATCHER, fresh_topics.outbound)
    with pytest.raises(OffsetsBeyondLog, match=rf"read by the dispatcher .*consumer = '{DISPATCHER}'"):
        read_commands(settings.database_url, settings.kafka_bootstrap_servers, fresh_topics)
    assert _stored(settings, DISPATCHER, cluster, fresh_topics.outbound) == offsets
