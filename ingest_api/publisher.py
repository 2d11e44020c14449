"""Produce events to Kafka and wait for the acknowledgement without blocking the event loop.

kafka-python is synchronous; its futures are completed by the producer's I/O thread. We bridge
each to an asyncio future so hundreds of concurrent requests share one producer and its batches.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from leadflow.config import Topics
from leadflow.events import DeadLetter, Event

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """Kafka did not acknowledge a record; the caller answers 503 so the provider retries."""


def encode_event(event: Event) -> bytes:
    return event.model_dump_json().encode()


class Publisher:
    def __init__(self, producer: KafkaProducer, topics: Topics, ack_timeout_s: float = 10.0) -> None:
        self._producer = producer
        self._topics = topics
        self._ack_timeout_s = ack_timeout_s

    async def _send(self, topic: str, key: bytes, value: bytes) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()

        def _resolve(metadata: Any) -> None:
            if not done.done():
                done.set_result(metadata)

        def _reject(exc: BaseException) -> None:
            if not done.done():
                done.set_exception(exc)

        def _ok(metadata: Any) -> None:
            loop.call_soon_threadsafe(_resolve, metadata)

        def _fail(exc: BaseException) -> None:
            loop.call_soon_threadsafe(_reject, exc)

        try:
            future = self._producer.send(topic, key=key, value=value)
        except KafkaError as exc:
            raise PublishError(f"Kafka refused the record: {exc}") from exc
        future.add_callback(_ok)
        future.add_errback(_fail)
        try:
            await asyncio.wait_for(done, timeout=self._ack_timeout_s)
        except (KafkaError, TimeoutError) as exc:
            raise PublishError(f"Kafka did not acknowledge the record: {exc!r}") from exc

    async def publish(self, events: Sequence[Event]) -> None:
        """Produce all events and return once every one of them is acknowledged."""
        await asyncio.gather(*(self._send(self._topics.messages, e.kafka_key(), encode_event(e)) for e in events))

    async def dead_letter(self, *, broker_id: int, broker_slug: str, channel: str, reason: str,
                          body: bytes, content_type: str | None) -> None:
        letter = DeadLetter(
            broker_id=broker_id,
            broker_slug=broker_slug,
            channel=channel,
            reason=reason[:2000],
            content_type=content_type,
            body_b64=base64.b64encode(body).decode(),
        )
        await self._send(self._topics.dead_letters, f"{broker_id}:{channel}".encode(),
                         json.dumps(letter.model_dump(mode="json")).encode())

    def close(self) -> None:
        # Anything still unacknowledged here was answered 503, so the provider retries it: a failed
        # flush loses nothing, and a late delivery of it is absorbed by the landing's unique keys.
        try:
            self._producer.close(timeout=self._ack_timeout_s)
        except KafkaError as exc:
            log.warning("producer flush at shutdown failed: %s", exc)
            # kafka-python's close() raises before it stops its I/O thread when the flush times out;
            # finish the job the way close() itself does after a timed-out join.
            sender = getattr(self._producer, "_sender", None)
            if sender is not None and sender.is_alive():
                sender.force_close()
