"""Kafka positions kept in PostgreSQL (``leadflow.kafka_offsets``), per reader, cluster and partition,
and the share of the partitions each process of a reader owns.

A reader locks its rows ``FOR UPDATE``, does its work and stores the next offsets in the same
transaction: what it wrote and how far it read commit together, so a record is handled exactly
once even if the process dies halfway.

Several processes of one reader (landings, dispatchers) split the partitions with ``Shares``:
session-level advisory locks, one per partition, plus one per live process. A process holds its
partitions' locks for as long as its connection lives, so one that dies (SIGKILL, lost network)
frees its partitions at once, and the others take them at their next batch. Ownership only
spreads the work: exactly-once still comes from the row locks and the offsets committed with the
rows, so a partition that changes hands mid-batch is read again from what was committed.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable

import psycopg2.extensions

Partition = tuple[str, int]


def _key(text: str) -> int:
    # Positive int4: advisory lock keys show up in pg_locks as oids, which are unsigned.
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


class Shares:
    """The partitions this process owns among the live processes of ``reader`` on ``cluster``.

    Fair share per topic: ceil(partitions / live processes). A process above it gives the rest
    back; one below it takes free partitions. ``conn`` must stay open while the shares are held
    (they are released when it closes), and is used between transactions only.
    """

    def __init__(self, conn: psycopg2.extensions.connection, reader: str, cluster: str,
                 tps: Iterable[Partition]) -> None:
        self._conn = conn
        self.tps = sorted(tps)
        self._space = _key(f"{reader}|{cluster}|partitions")
        # Processes of the same reader on other topics (another deployment's prefix) are not counted.
        self._members = _key(f"{reader}|{cluster}|{','.join(sorted({t for t, _ in self.tps}))}|members")
        self.owned: set[Partition] = set()
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s, pg_backend_pid())", (self._members,))

    def _partition_key(self, tp: Partition) -> int:
        return _key(f"{tp[0]}[{tp[1]}]")

    def members(self) -> int:
        """Live processes of this reader (this one included): their connections hold a member lock."""
        with self._conn, self._conn.cursor() as cur:
            cur.execute("""SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2
                           AND classid = %s::oid
                           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
                        (self._members,))
            row = cur.fetchone()
        return max(int(row[0]) if row else 1, 1)

    def _take(self, cur: psycopg2.extensions.cursor, tp: Partition) -> bool:
        cur.execute("SELECT pg_try_advisory_lock(%s, %s)", (self._space, self._partition_key(tp)))
        row = cur.fetchone()
        if row and row[0]:
            self.owned.add(tp)
            return True
        return False

    def rebalance(self, before_release: Callable[[set[Partition]], None] | None = None) -> bool:
        """Move towards the fair share; True when the owned set changed.

        ``before_release`` is called with the partitions about to be given up, while they are still this
        process's: a reader that holds work of its own on them (the agent's bursts) settles it there.
        """
        members = self.members()
        changed = False
        over = {tp for topic in {t for t, _ in self.tps}
                for tp in sorted(tp for tp in self.owned if tp[0] == topic)[self._target(topic, members):]}
        if over and before_release is not None:
            before_release(over)
        with self._conn, self._conn.cursor() as cur:
            for topic in sorted({t for t, _ in self.tps}):
                mine = sorted(tp for tp in self.owned if tp[0] == topic)
                theirs = [tp for tp in self.tps if tp[0] == topic]
                target = self._target(topic, members)
                for tp in mine[target:]:
                    cur.execute("SELECT pg_advisory_unlock(%s, %s)", (self._space, self._partition_key(tp)))
                    self.owned.discard(tp)
                    changed = True
                wanted = target - len(mine)
                for tp in theirs:
                    if wanted <= 0:
                        break
                    if tp not in self.owned and self._take(cur, tp):
                        wanted -= 1
                        changed = True
        return changed

    def _target(self, topic: str, members: int) -> int:
        return math.ceil(len([tp for tp in self.tps if tp[0] == topic]) / members)

    def take_free(self) -> bool:
        """Take every partition nobody owns (a process died or left); True when any was taken."""
        with self._conn, self._conn.cursor() as cur:
            return any([self._take(cur, tp) for tp in self.tps if tp not in self.owned])


def lock_offsets(cur: psycopg2.extensions.cursor, reader: str, cluster: str,
                 tps: list[Partition]) -> dict[Partition, int]:
    """This reader's next offset of each of ``tps`` (0 for a partition it never read), locked until commit.

    Only these rows: processes owning other partitions of the same topics are not held up."""
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
        SELECT o.topic, o.partition, o.next_offset FROM leadflow.kafka_offsets o
        JOIN unnest(%s::text[], %s::int[]) AS u(t, p) ON o.topic = u.t AND o.partition = u.p
        WHERE o.consumer = %s AND o.cluster_id = %s
        ORDER BY o.topic, o.partition
        FOR UPDATE OF o
        """,
        ([t for t, _ in tps], [p for _, p in tps], reader, cluster),
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
