"""The durable embedded Kafka (Tansu on SeaweedFS): what was acknowledged survives SIGKILL of both.

Started by `leadflow services up` in a state directory of its own, against the session's test
database (so only Kafka and SeaweedFS are started). The tests share those services and run in order:
the last one wipes the log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from leadflow.brokers import add_broker
from leadflow.config import Topics
from leadflow.kafka import make_producer, produce_all
from leadflow.landing import OffsetsBeyondLog, land, probe
from leadflow.services.ports import pid_alive
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.services

MESSAGES = 300


@dataclass
class Durable:
    home: Path
    env: dict[str, str]
    topics: Topics

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "leadflow.cli", *args], env=self.env, capture_output=True,
                              text=True, timeout=120)

    def state(self) -> dict[str, object]:
        data: dict[str, object] = json.loads((self.home / "services.json").read_text())
        return data

    @property
    def bootstrap(self) -> str:
        return str(self.state()["kafka_bootstrap_servers"])


def _kill(pid: object) -> None:
    assert isinstance(pid, int) and pid_alive(pid)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid)


@pytest.fixture(scope="module")
def durable(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Durable]:
    home = tmp_path_factory.mktemp("durable") / "state"
    prefix = f"d{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADFLOW_", "DAGSTER_HOME"))}
    env.update(LEADFLOW_HOME=str(home), LEADFLOW_DATABASE_URL=database_url, LEADFLOW_KAFKA_TOPIC_PREFIX=prefix,
               LEADFLOW_KAFKA_PARTITIONS="3")
    services = Durable(home, env, Topics(prefix))
    up = services.cli("services", "up")
    assert up.returncode == 0, up.stderr
    try:
        yield services
    finally:
        down = services.cli("services", "down")
        assert down.returncode == 0, down.stderr


def test_acknowledged_messages_and_cluster_id_survive_sigkill_of_broker_and_storage(durable: Durable) -> None:
    first = durable.state()
    assert first["kafka_storage"] == "s3"
    producer = make_producer(durable.bootstrap)
    sent = [(f"1:telegram:c{i % 7}".encode(), f"message {i}".encode()) for i in range(MESSAGES)]
    produce_all(producer, durable.topics.messages, sent)
    producer.flush(5)

    _kill(first["kafka_pid"])
    _kill(first["seaweedfs_pid"])
    assert "DOWN" in durable.cli("services", "status").stdout
    again = durable.cli("services", "up")
    assert again.returncode == 0, again.stderr
    assert "seaweedfs: started" in again.stdout and "kafka: embedded, started" in again.stdout

    second = durable.state()
    assert second["kafka_cluster_id"] == first["kafka_cluster_id"]
    assert second["kafka_pid"] != first["kafka_pid"]
    records = read_topic(durable.bootstrap, durable.topics.messages)
    assert sorted((r.key, r.value) for r in records) == sorted(sent)


def test_status_says_which_storage_the_embedded_broker_uses(durable: Durable) -> None:
    kafka = next(line for line in durable.cli("services", "status").stdout.splitlines() if line.startswith("kafka:"))
    assert ": up; storage s3 (SeaweedFS at http://127.0.0.1:" in kafka and " answering" in kafka, kafka
    assert str(durable.state()["kafka_cluster_id"]) in kafka


def test_every_seaweedfs_port_is_bound_to_loopback_only(durable: Durable) -> None:
    pid = durable.state()["seaweedfs_pid"]
    listening = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    addresses = [line.split()[3] for line in listening.splitlines() if f"pid={pid}," in line]
    assert len(addresses) >= 8, listening  # master, volume, filer, S3, admin: HTTP and gRPC each
    assert all(address.startswith("127.0.0.1:") for address in addresses), addresses


def test_a_broker_whose_storage_stopped_says_so_when_asked_for_topics(durable: Durable) -> None:
    from leadflow.config import ConfigurationError
    from leadflow.kafka import ensure_topics

    state = durable.state()
    _kill(state["seaweedfs_pid"])  # as when its disk fills up: the broker answers, nothing can be stored
    with pytest.raises(ConfigurationError, match=r"cannot store.*seaweedfs\.log"):
        ensure_topics(durable.bootstrap, [f"{durable.topics.prefix}.stuck"], 1)
    _kill(state["kafka_pid"])
    again = durable.cli("services", "up")
    assert again.returncode == 0, again.stderr
    assert ensure_topics(durable.bootstrap, [f"{durable.topics.prefix}.unstuck"], 1) == \
        [f"{durable.topics.prefix}.unstuck"]


def test_offsets_past_the_end_of_a_wiped_log_stop_the_landing_with_the_fix(durable: Durable,
                                                                          database_url: str) -> None:
    broker = add_broker(database_url, f"durable-{uuid.uuid4().hex[:8]}", name="Durable", country="CL",
                        timezone="America/Santiago")
    # Not events: each lands as one of the broker's dead letters, which stores the offsets all the same. Each is
    # its own: identical ones would be kept once (0018's digest), and the count below would then depend on order.
    produce_all(make_producer(durable.bootstrap), durable.topics.messages,
                [(f"{broker.broker_id}:telegram:c{i}".encode(), f"not json {i}".encode()) for i in range(12)])
    landed = land(database_url, durable.bootstrap, durable.topics)
    assert landed.records_read >= 12 and landed.dead_letters_landed >= 12
    cluster = durable.state()["kafka_cluster_id"]

    # The broker's storage replaced by an empty one that kept the cluster id (a restored config, a wiped volume).
    assert durable.cli("services", "down").returncode == 0
    data = durable.home / "seaweedfs"
    cluster_file = (data / "kafka-cluster-id").read_text()
    shutil.rmtree(data)
    data.mkdir()
    (data / "kafka-cluster-id").write_text(cluster_file)
    up = durable.cli("services", "up")
    assert up.returncode == 0, up.stderr
    assert durable.state()["kafka_cluster_id"] == cluster

    expected = rf"cluster {cluster} has fewer records .*wiped or replaced.*DELETE FROM"
    with pytest.raises(OffsetsBeyondLog, match=expected):
        probe(database_url, durable.bootstrap, durable.topics)
    # A few new records, fewer than were landed: read from the stored offsets they would be skipped silently.
    produce_all(make_producer(durable.bootstrap), durable.topics.messages,
                [(f"{broker.broker_id}:telegram:new".encode(), b"new") for _ in range(2)])
    refused = durable.cli("land")
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.count("\n") == 1 and "wiped or replaced" in refused.stderr, refused.stderr
    assert "DELETE FROM leadflow.kafka_offsets" in refused.stderr
