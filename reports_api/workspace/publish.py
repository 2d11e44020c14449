"""The reports API's Kafka producer: a person's replies produced onto the messages topic, so the landing stores
them like every other message. Created on the first reply (an API that never sends never connects to Kafka)
and flushed when the app stops."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaException, Producer

from leadflow.events import ChannelMessage
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
        done = threading.Event()
        failure: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failure.append(str(err))
            done.set()

        try:
            producer = self._get()
            producer.produce(self.topic, key=message.kafka_key(), value=message.model_dump_json().encode(),
                             on_delivery=delivered)
            deadline = time.monotonic() + ACK_WAIT_S
            while not done.is_set() and time.monotonic() < deadline:
                producer.poll(0.02)
        except (BufferError, KafkaException, OSError, RuntimeError) as exc:
            failure.append(str(exc))
        if failure or not done.is_set():
            log.warning("person reply %s not acknowledged by Kafka (%s); produced again with the broker's next reply",
                        message.provider_message_id, failure[:1] or "timeout")
            return False
        return True

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.flush(5)
                self._producer = None
