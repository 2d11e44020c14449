"""Reading and writing topics directly, to check what the code under test produced."""

from __future__ import annotations

import json
from typing import Any

from kafka.consumer.fetcher import ConsumerRecord

from leadflow.kafka import make_consumer, partitions_of


def read_topic(bootstrap: str, topic: str, timeout_ms: int = 800) -> list[ConsumerRecord]:
    """Every record on the topic, read from offset 0 until a poll comes back empty."""
    consumer = make_consumer(bootstrap)
    try:
        tps = partitions_of(consumer, topic)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        records: list[ConsumerRecord] = []
        while True:
            polled = consumer.poll(timeout_ms=timeout_ms, max_records=10_000)
            if not polled:
                return records
            for part in polled.values():
                records.extend(part)
    finally:
        consumer.close()


def events_for(bootstrap: str, topic: str, broker_id: int) -> list[dict[str, Any]]:
    values = [json.loads(r.value) for r in read_topic(bootstrap, topic)]
    return [v for v in values if v.get("broker_id") == broker_id]
