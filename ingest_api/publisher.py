"""Produce events to Kafka and wait for the acknowledgement without blocking the event loop.

librdkafka reports deliveries through callbacks run inside ``Producer.poll``; a small thread
polls continuously and hands each poll's results to the event loop in one wake-up, so hundreds
of concurrent requests share one producer, its batches and few cross-thread calls.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaException, Producer

from leadflow.config import Topics
from leadflow.events import DeadLetter, Event

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """Kafka did not acknowledge a record; the caller answers 503 so the provider retries."""


def encode_event(event: Event) -> bytes:
    return event.model_dump_json().encode()


def _settle(results: list[tuple[asyncio.Future[None], Any]]) -> None:
    """On the event loop: resolve the futures of one poll's deliveries."""
    for future, err in results:
        if future.done():
            continue  # the request already gave up waiting
        if err is None:
            future.set_result(None)
        else:
            future.set_exception(PublishError(f"Kafka did not acknowledge the record: {err}"))


class Publisher:
    def __init__(self, producer: Producer, topics: Topics, ack_timeout_s: float = 10.0) -> None:
        self._producer = producer
        self._topics = topics
        self._ack_timeout_s = ack_timeout_s
        self._running = True
        self._delivered: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None], Any]] = []
        self._lock = threading.Lock()
        self._poller = threading.Thread(target=self._poll_deliveries, name="kafka-deliveries", daemon=True)
        self._poller.start()

    def _poll_deliveries(self) -> None:
        while self._running:
            self._producer.poll(0.05)
            self._hand_over()

    def _hand_over(self) -> None:
        with self._lock:
            delivered, self._delivered = self._delivered, []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], Any]]] = {}
        for loop, future, err in delivered:
            by_loop.setdefault(loop, []).append((future, err))
        for loop, results in by_loop.items():
            if not loop.is_closed():
                loop.call_soon_threadsafe(_settle, results)

    async def _send(self, topic: str, key: bytes, value: bytes) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def delivered(err: Any, _msg: Any) -> None:  # runs on the thread that polls
            with self._lock:
                self._delivered.append((loop, done, err))

        try:
            async with asyncio.timeout(self._ack_timeout_s):
                while True:
                    try:
                        self._producer.produce(topic, value=value, key=key, on_delivery=delivered)
                        break
                    except BufferError:
                        await asyncio.sleep(0.005)  # local queue full: wait for deliveries to drain it
                await done
        except TimeoutError as exc:
            raise PublishError(f"Kafka did not acknowledge the record within {self._ack_timeout_s}s") from exc
        except KafkaException as exc:
            raise PublishError(f"Kafka refused the record: {exc}") from exc

    async def publish(self, events: Sequence[Event]) -> None:
        """Produce all events and return once every one of them is acknowledged."""
        if len(events) == 1:
            await self._send(self._topics.messages, events[0].kafka_key(), encode_event(events[0]))
            return
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
        # Anything still unacknowledged here was answered 503, so the provider retries it: a flush
        # that times out loses nothing, and a late delivery is absorbed by the landing's unique keys.
        remaining = self._producer.flush(self._ack_timeout_s)
        self._hand_over()
        if remaining:
            log.warning("%s records still unacknowledged at shutdown (their webhooks were answered 503)", remaining)
        self._running = False
        self._poller.join(timeout=2)
