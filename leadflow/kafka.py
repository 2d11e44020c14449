"""Kafka clients (kafka-python) configured the one way Leadflow uses them.

Producers are idempotent with ``acks=all`` so an acknowledged record is durable on the cluster
before a webhook is answered. Consumers never join groups: partitions are assigned explicitly
and positions come from PostgreSQL (see ``leadflow.landing``).
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterable

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from leadflow.config import ConfigurationError

log = logging.getLogger(__name__)


def _unreachable(bootstrap: str, exc: Exception) -> ConfigurationError:
    return ConfigurationError(
        f"Kafka at {bootstrap} does not answer ({exc.__class__.__name__}). Check "
        "LEADFLOW_KAFKA_BOOTSTRAP_SERVERS, or unset it and run `leadflow services up` to use the "
        "embedded broker."
    )


def _check_reachable(bootstrap: str, timeout_s: float = 3.0) -> None:
    """Fail in seconds with the fix named, instead of kafka-python's 30 s bootstrap timeout."""
    errors = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
                return
        except (OSError, ValueError) as exc:
            errors.append(exc)
    raise _unreachable(bootstrap, errors[0] if errors else ValueError("no servers listed"))


def make_producer(bootstrap: str, *, linger_ms: int = 2) -> KafkaProducer:
    _check_reachable(bootstrap)
    try:
        return KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            retries=5,
            max_in_flight_requests_per_connection=5,
            request_timeout_ms=10_000,
            compression_type=None,
            client_id="leadflow-ingest",
        )
    except KafkaError as exc:
        raise _unreachable(bootstrap, exc) from exc


def make_consumer(bootstrap: str) -> KafkaConsumer:
    _check_reachable(bootstrap)
    try:
        return KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            client_id="leadflow-landing",
        )
    except KafkaError as exc:
        raise _unreachable(bootstrap, exc) from exc


def make_admin(bootstrap: str) -> KafkaAdminClient:
    _check_reachable(bootstrap)
    try:
        return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="leadflow-admin", request_timeout_ms=10_000)
    except KafkaError as exc:
        raise _unreachable(bootstrap, exc) from exc


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    admin = make_admin(bootstrap)
    try:
        existing = set(admin.list_topics())
        wanted = [t for t in topics if t not in existing]
        if wanted:
            # Another process may create them between our listing and this call.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(t, partitions, 1) for t in wanted])
        return wanted
    finally:
        admin.close()


def cluster_id(consumer: KafkaConsumer) -> str:
    """The id of the cluster the consumer talks to (offsets in PostgreSQL are keyed by it)."""
    consumer.topics()  # forces a metadata round trip
    cid = consumer._client.cluster.cluster_id  # kafka-python keeps it from the metadata response
    return str(cid or "unknown")


def partitions_of(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        consumer.topics()
        parts = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(parts)]


def ping(bootstrap: str) -> None:
    """Raise ConfigurationError with the fix when the cluster does not answer."""
    consumer = make_consumer(bootstrap)
    consumer.close()
