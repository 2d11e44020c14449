"""Reading topics directly, to check what the code under test produced."""

from __future__ import annotations

import json
from typing import Any

from leadflow.kafka import Record, assign_from, consume, make_consumer, partitions_of


def read_topic(bootstrap: str, topic: str, timeout_s: float = 0.8) -> list[Record]:
    """Every record on the topic, read from offset 0 until a poll comes back empty."""
    consumer = make_consumer(bootstrap)
    try:
        assign_from(consumer, {(topic, p): 0 for p in partitions_of(consumer, topic)})
        records: list[Record] = []
        while True:
            polled = consume(consumer, 10_000, timeout_s)
            if not polled:
                return records
            records.extend(polled)
    finally:
        consumer.close()


def events_for(bootstrap: str, topic: str, broker_id: int) -> list[dict[str, Any]]:
    values = [json.loads(r.value or b"") for r in read_topic(bootstrap, topic)]
    return [v for v in values if v.get("broker_id") == broker_id]
