"""Several landing processes share the partitions, and exactly-once holds while they come and go.

Each ``leadflow land --follow`` process owns a fair share of the partitions (advisory locks held
by its connection, ``offsets.Shares``); one that is killed frees its share to the others.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from leadflow.config import Settings, Topics
from leadflow.db.connection import connect
from leadflow.kafka import cluster_id, make_admin
from leadflow.landing import READER
from leadflow.offsets import _key
from tests.conftest import BrokerFactory
from tests.test_landing import landed, produce_messages, stored_offsets


def _owners(settings: Settings) -> dict[int, int]:
    """Partitions held per PostgreSQL backend (one per landing process) on this test's cluster."""
    cluster = cluster_id(make_admin(settings.kafka_bootstrap_servers))
    conn = connect(settings.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("""SELECT pid, count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
                           AND objsubid = 2 AND classid = %s::oid GROUP BY pid""",
                        (_key(f"{READER}|{cluster}|partitions"),))
            return {int(pid): int(n) for pid, n in cur.fetchall()}
    finally:
        conn.close()


def _wait(condition: object, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@contextmanager
def _landings(topics: Topics, count: int) -> Iterator[list[subprocess.Popen[str]]]:
    env = {**os.environ, "LEADFLOW_KAFKA_TOPIC_PREFIX": topics.prefix}
    processes = [subprocess.Popen([sys.executable, "-m", "leadflow.cli", "land", "--follow", "--batch-size", "100"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(count)]
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _stop(process: subprocess.Popen[str]) -> set[str]:
    """SIGTERM, then the partitions it says it landed records of."""
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    said = out.strip().splitlines()[-1]
    partitions = said.split("partitions ", 1)[1]
    return set() if partitions == "none" else set(partitions.split(", "))


@pytest.mark.parametrize("count", [2, 3])
def test_landings_split_the_partitions_and_land_each_record_once(
        count: int, settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    partitions = 2 * settings.kafka_partitions  # messages and dead letters
    with _landings(fresh_topics, count) as processes:
        # Settled: every process holds its share and nothing is held twice.
        _wait(lambda: len(_owners(settings)) == count and sum(_owners(settings).values()) == partitions,
              f"{count} landings to share {partitions} partitions")
        produced = produce_messages(settings, fresh_topics, broker, 3000, duplicate_every=7)
        _wait(lambda: len(landed(settings, broker)) >= len(produced), "every message to land")
        shares = [_stop(process) for process in processes]
    rows = landed(settings, broker)
    assert set(rows) == produced and len(rows) == len(produced)
    assert stored_offsets(settings, fresh_topics) == len(produced) + len(range(0, len(produced), 7))
    # Every process landed some of the stream, and no partition was landed by two of them.
    assert all(shares), shares
    assert sum(len(s) for s in shares) == len(set().union(*shares)), shares


def test_a_killed_landing_gives_its_partitions_to_the_others(settings: Settings, fresh_topics: Topics,
                                                             make_broker: BrokerFactory) -> None:
    broker = make_broker()
    partitions = 2 * settings.kafka_partitions
    with _landings(fresh_topics, 3) as processes:
        _wait(lambda: len(_owners(settings)) == 3 and sum(_owners(settings).values()) == partitions,
              "three landings to share the partitions")
        produced = produce_messages(settings, fresh_topics, broker, 6000)
        _wait(lambda: len(landed(settings, broker)) > 0, "the landing to start")
        victim = processes.pop(0)
        victim.kill()
        victim.wait()
        assert len(landed(settings, broker)) < len(produced), "the kill came after the end: nothing was tested"
        # The two left take the dead one's partitions, and land what it had not committed.
        _wait(lambda: len(_owners(settings)) == 2 and sum(_owners(settings).values()) == partitions,
              "the survivors to take the dead landing's partitions")
        _wait(lambda: len(landed(settings, broker)) >= len(produced), "every message to land")
        for process in processes:
            _stop(process)
    rows = landed(settings, broker)
    assert set(rows) == produced and len(rows) == len(produced)
    assert stored_offsets(settings, fresh_topics) == len(produced)
