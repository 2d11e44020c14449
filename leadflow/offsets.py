"""Kafka positions kept in PostgreSQL (``leadflow.kafka_offsets``), per reader, cluster and partition.

A reader locks its rows ``FOR UPDATE``, does its work and stores the next offsets in the same
transaction: what it wrote and how far it read commit together, so a record is handled exactly
once even if the process dies halfway.
"""

from __future__ import annotations

import psycopg2.extensions

Partition = tuple[str, int]


def lock_offsets(cur: psycopg2.extensions.cursor, reader: str, cluster: str,
                 tps: list[Partition]) -> dict[Partition, int]:
    """This reader's next offset per partition (0 for a partition it never read), locked until commit."""
    cur.execute(
        """
        INSERT INTO leadflow.kafka_offsets (consumer, cluster_id, topic, partition, next_offset)
        SELECT %s, %s, t, p, 0 FROM unnest(%s::text[], %s::int[]) AS u(t, p)
        ON CONFLICT DO NOTHING
        """,
        (reader, cluster, [t for t, _ in tps], [p for _, p in tps]),
    )
    cur.execute(
        """
        SELECT topic, partition, next_offset FROM leadflow.kafka_offsets
        WHERE consumer = %s AND cluster_id = %s AND topic = ANY(%s)
        ORDER BY topic, partition
        FOR UPDATE
        """,
        (reader, cluster, sorted({t for t, _ in tps})),
    )
    return {(t, p): int(o) for t, p, o in cur.fetchall()}


def store_offsets(cur: psycopg2.extensions.cursor, reader: str, cluster: str, offsets: dict[Partition, int]) -> None:
    if not offsets:
        return
    items = list(offsets.items())
    cur.execute(
        """
        UPDATE leadflow.kafka_offsets o SET next_offset = v.next_offset, updated_at = now()
        FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS v(topic, partition, next_offset)
        WHERE o.consumer = %s AND o.cluster_id = %s AND o.topic = v.topic AND o.partition = v.partition
        """,
        ([t for (t, _), _ in items], [p for (_, p), _ in items], [o for _, o in items], reader, cluster),
    )
