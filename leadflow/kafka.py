"""Kafka clients (confluent-kafka / librdkafka) configured the one way Leadflow uses them.

Why confluent-kafka and not kafka-python: `make bench` showed the producer was what held the
ingest API below half the rate of a bare endpoint (kafka-python produced ~6.7k acknowledged
msg/s on a whole core here; librdkafka ~36k). One client serves producer, consumer and admin.

Producers are idempotent with ``acks=all`` so an acknowledged record is durable on the cluster
before a webhook is answered. Consumers never join a group: partitions are assigned with their
start offsets, which come from PostgreSQL (see ``leadflow.landing``).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from leadflow.config import ConfigurationError

# librdkafka writes its own log lines to stderr unless given a logger; route them to ours.
_client_log = logging.getLogger("leadflow.kafka.client")

# The consumer API requires a group id even when partitions are assigned by hand; nothing is
# ever committed under it (positions live in PostgreSQL).
CONSUMER_GROUP = "leadflow-landing"


class Record(NamedTuple):
    """A consumed record, detached from the client's message object."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


def _unreachable(bootstrap: str, exc: BaseException) -> ConfigurationError:
    return ConfigurationError(
        f"Kafka at {bootstrap} does not answer ({exc.__class__.__name__}: {exc}). Check "
        "LEADFLOW_KAFKA_BOOTSTRAP_SERVERS, or unset it and run `leadflow services up` to use the "
        "embedded broker."
    )


def _check_reachable(bootstrap: str, timeout_s: float = 3.0) -> None:
    """Fail in seconds with the fix named; librdkafka would otherwise retry silently in the background."""
    errors: list[BaseException] = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
                return
        except (OSError, ValueError) as exc:
            errors.append(exc)
    raise _unreachable(bootstrap, errors[0] if errors else ValueError("no servers listed"))


def _base(bootstrap: str, client_id: str) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, "client.id": client_id, "logger": _client_log}


def make_producer(bootstrap: str, *, linger_ms: int = 2) -> Producer:
    _check_reachable(bootstrap)
    return Producer({
        **_base(bootstrap, "leadflow-ingest"),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": linger_ms,
        # After this, an unacknowledged record fails; the webhook was answered 503 long before.
        "message.timeout.ms": 30_000,
    })


def make_consumer(bootstrap: str, *, fetch_wait_ms: int = 500) -> Consumer:
    """A consumer for ``assign_from`` (offsets are kept in PostgreSQL, never in the group).

    ``fetch_wait_ms`` is how long the broker may hold a fetch that found nothing. Apache Kafka answers
    as soon as a record arrives, so it only sets the cost of idling; the embedded Tansu holds the fetch
    to its end (a record produced meanwhile waits ~200 ms at the default, measured), so a consumer that
    answers people (the lead agent) asks for a short one.
    """
    _check_reachable(bootstrap)
    return Consumer({
        **_base(bootstrap, "leadflow-landing"),
        "group.id": CONSUMER_GROUP,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "fetch.wait.max.ms": fetch_wait_ms,
    })


def make_admin(bootstrap: str) -> AdminClient:
    _check_reachable(bootstrap)
    return AdminClient(_base(bootstrap, "leadflow-admin"))


def _cannot_store(bootstrap: str, topic: str, said: str) -> ConfigurationError:
    return ConfigurationError(
        f"Kafka at {bootstrap} answers but did not create topic {topic!r} ({said}): it cannot store. With the "
        "embedded broker on s3 storage, see seaweedfs.log in LEADFLOW_HOME and the free disk space there "
        "(`leadflow services status`; `leadflow services up` restarts what stopped).")


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    admin = make_admin(bootstrap)
    try:
        existing = set(admin.list_topics(timeout=10).topics)
    except KafkaException as exc:
        raise _unreachable(bootstrap, exc) from exc
    wanted = [t for t in topics if t not in existing]
    if not wanted:
        return []
    created = []
    for topic, future in admin.create_topics([NewTopic(t, partitions, 1) for t in wanted]).items():
        try:
            future.result(timeout=15)
            created.append(topic)
        except TimeoutError:
            # Seen with the embedded broker on s3 storage when SeaweedFS stopped writing (its disk full).
            raise _cannot_store(bootstrap, topic, "no answer within 15 s") from None
        except KafkaException as exc:
            # Another process may have created it between our listing and this call.
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                # Tansu answers so when its storage (SeaweedFS) is gone.
                error: Any = exc.args[0] if exc.args else exc
                raise _cannot_store(bootstrap, topic, error.str() if hasattr(error, "str") else str(exc)) from exc
    return created


def cluster_id(client: Consumer | AdminClient) -> str:
    """The id of the cluster (offsets in PostgreSQL are keyed by it)."""
    return str(client.list_topics(timeout=10).cluster_id or "unknown")


def partitions_of(client: Consumer | AdminClient, topic: str) -> list[int]:
    metadata = client.list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None:
        return []
    return sorted(metadata.partitions)


def assign_from(consumer: Consumer, positions: dict[tuple[str, int], int]) -> None:
    """Read each (topic, partition) from the given offset: no group, no committed offsets."""
    consumer.assign([TopicPartition(topic, partition, offset) for (topic, partition), offset in positions.items()])


def consume(consumer: Consumer, max_records: int, timeout_s: float, pause_s: float = 0.05) -> list[Record]:
    """Up to ``max_records`` records; an empty list means nothing arrived within ``timeout_s``.

    librdkafka's batch consume waits out its whole timeout unless the batch fills, so we ask in
    short slices and return once records stop arriving for ``pause_s``.
    """
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < max_records:
        remaining = deadline - time.monotonic()
        if not records and remaining <= 0:
            break
        batch = consumer.consume(num_messages=max_records - len(records),
                                 timeout=pause_s if records else min(pause_s, max(remaining, 0.001)))
        if not batch and records:
            break
        message: Message
        for message in batch:
            error = message.error()
            if error is not None:
                raise KafkaException(error)
            records.append(Record(message.topic() or "", message.partition() or 0, message.offset() or 0,
                                  message.key(), message.value(), message.timestamp()[1]))
    return records


def produce_all(producer: Producer, topic: str, items: Iterable[tuple[bytes | None, bytes]],
                timeout_s: float = 60) -> None:
    """Produce many records and wait until all are acknowledged (tests, benchmarks, tools)."""
    failures: list[str] = []

    def delivered(err: Any, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    for key, value in items:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)  # local queue full: let deliveries drain
        producer.poll(0)
    remaining = producer.flush(timeout_s)
    if remaining or failures:
        raise KafkaException(f"{remaining} records unacknowledged, failures: {failures[:3]}")


def ping(bootstrap: str) -> None:
    """Raise ConfigurationError with the fix when the cluster does not answer."""
    admin = make_admin(bootstrap)
    try:
        admin.list_topics(timeout=5)
    except KafkaException as exc:
        raise _unreachable(bootstrap, exc) from exc
