"""The lead page's "where from" of each qualification fact: the lead's conversation as the qualification read
it, and ``leadflow.qualification.provenance`` over it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import asdict
from typing import Any

import polars as pl
import psycopg2.extensions

from leadflow.leads.conversations import assemble
from leadflow.leads.store.reads import MESSAGE_SCHEMA
from leadflow.qualification.provenance import Said, provenance

# The messages as ``leadflow.leads.store.reads.conversations`` reads them for the qualification (same
# columns, same order-defining sent_at), for one lead; ``assemble`` then orders them the same way.
_MESSAGES = """
    SELECT ml.broker_id, ml.lead_id, m.message_id, m.channel, m.direction, m.body,
           CASE WHEN m.direction = 'inbound' AND m.received_at >= m.sent_at
                     AND m.received_at < m.sent_at + interval '2 seconds'
                THEN m.received_at ELSE m.sent_at END AS sent_at,
           m.payload -> 'leadflow' ->> 'asks' AS asks
    FROM leadflow.message_leads ml JOIN leadflow.raw_messages m USING (message_id)
    WHERE ml.lead_id = %s"""


# Reading a 500-message conversation again costs ~100 ms (bench/workspace.py): the sources are kept per
# lead and qualification, which changes whenever the conversation does (a new conversation_hash or
# qualified_at), so an agent reopening a lead, or the page reloading, does not pay it again.
_CACHE_SIZE = 4096
_cache: OrderedDict[tuple[int, str, str, str | None], list[dict[str, Any]]] = OrderedDict()
_cache_lock = threading.Lock()


def fact_sources(cur: psycopg2.extensions.cursor, lead_id: int, qualification: dict[str, Any] | None,
                 country: str | None) -> list[dict[str, Any]]:
    """Each non-empty fact of the lead's stored qualification with the message it came from (its id,
    channel and time, the excerpt), or why none: see ``Source``. The caller's cursor has already shown the
    lead is visible to it."""
    if not qualification:
        return []
    key = (lead_id, str(qualification.get("conversation_hash")), str(qualification.get("qualified_at")), country)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return [dict(source) for source in _cache[key]]
    sources = _fact_sources(cur, lead_id, qualification, country)
    with _cache_lock:
        _cache[key] = sources
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return [dict(source) for source in sources]


def _fact_sources(cur: psycopg2.extensions.cursor, lead_id: int, qualification: dict[str, Any],
                  country: str | None) -> list[dict[str, Any]]:
    cur.execute(_MESSAGES, (lead_id,))
    schema: dict[str, Any] = MESSAGE_SCHEMA
    frame = pl.DataFrame(cur.fetchall(), schema=schema, orient="row")
    if frame.is_empty():
        return []
    [turns] = assemble(frame)["turns"].to_list()
    # assemble sorts by (broker, lead, sent_at, message_id) and keeps no id: the same sort gives the ids.
    ordered = frame.sort("broker_id", "lead_id", "sent_at", "message_id")
    said = [Said(message_id, turn["role"], turn["text"] or "", turn["asks"])
            for message_id, turn in zip(ordered["message_id"], turns, strict=True)]
    where = {message_id: (turn["channel"], turn["sent_at"]) for message_id, turn in
             zip(ordered["message_id"], turns, strict=True)}
    sources = []
    for source in provenance(said, qualification, country, english=country == "US"):
        channel, at = where.get(source.message_id, (None, None))
        sources.append({**asdict(source), "channel": channel, "at": at})
    return sources
