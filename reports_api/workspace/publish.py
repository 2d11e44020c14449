"""The reports API's Kafka producer: a person's replies produced onto the messages topic, so the landing stores
them like every other message, and the events of an admin's replay of a dead letter. Created on the first use
(an API that never sends never connects to Kafka) and flushed when the app stops."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaException, Producer

from ingest_api.publisher import encode_event
from leadflow.events import ChannelMessage, Event
from leadflow.kafka import make_producer

log = logging.getLogger(__name__)

ACK_WAIT_S = 10.0


class MessagePublisher:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    def _get(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = make_producer(self.bootstrap)
            return self._producer

    def publish(self, message: ChannelMessage) -> bool:
        """True once Kafka acknowledged ``message``; False (logged) when it did not in time or is unreachable."""
        failure = self._produce([message])
        if failure:
            log.warning("person reply %s not acknowledged by Kafka (%s); produced again with the broker's next reply",
                        message.provider_message_id, failure)
            return False
        return True

    def publish_all(self, events: Sequence[Event]) -> str | None:
        """Produce every event (keyed and encoded as the ingest API does) and wait for all acknowledgements; None
        when Kafka holds them all, else why not."""
        return self._produce(events)

    def _produce(self, events: Sequence[Event]) -> str | None:
        if not events:
            return None
        acked: list[None] = []
        failure: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failure.append(str(err))
            else:
                acked.append(None)

        try:
            producer = self._get()
            for event in events:
                producer.produce(self.topic, key=event.kafka_key(), value=encode_event(event), on_delivery=delivered)
            deadline = time.monotonic() + ACK_WAIT_S
            while len(acked) + len(failure) < len(events) and time.monotonic() < deadline:
                producer.poll(0.02)
        except (BufferError, KafkaException, OSError, RuntimeError) as exc:
            failure.append(str(exc))
        if failure:
            return failure[0]
        return None if len(acked) == len(events) else "timeout"

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.flush(5)
                self._producer = None
