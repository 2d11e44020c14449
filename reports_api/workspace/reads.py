"""What the workspace shows, read on a cursor scoped to one broker (``deps.broker_cursor``).

Row-level security decides what the cursor sees (an AGENT: only its leads); every query still names the
broker so that PostgreSQL can use the broker's indexes (migration 0015).
"""

from __future__ import annotations

import copy
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg2.extensions

from leadflow.leads.stages import LOST, Pipeline
from reports_api import queries
from reports_api.workspace import provenance

Assigned = Literal["me", "unassigned", "anyone"]
Handler = Literal["bot", "person"]
Temperature = Literal["hot", "warm", "cold"]
CHANNELS = ("whatsapp", "telegram", "vapi", "bland", "form", "import", "manual")
TEMPERATURES: tuple[Temperature, ...] = ("hot", "warm", "cold")
CURSOR_PATTERN = r"^(n|\d{1,17})\.\d{1,19}$"
# The largest instant a timestamptz holds, in microseconds since 1970 (year 294276 is PostgreSQL's limit,
# but Python's datetime stops at 9999).
_MAX_MICROS = 253_402_300_799_999_999
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SORT_KEY = "coalesce(l.last_message_at, '-infinity'::timestamptz)"
_PHONE_LIKE = re.compile(r"^[\d\s+().-]{6,}$")


class BadCursor(ValueError):
    """The ``after`` cursor is not one this API handed out."""


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last lead's newest-message time (None: no message) and its id."""

    last_message_at: datetime | None
    lead_id: int

    def encode(self) -> str:
        if self.last_message_at is None:
            return f"n.{self.lead_id}"
        delta = self.last_message_at - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return f"{micros}.{self.lead_id}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        if not re.fullmatch(CURSOR_PATTERN, text):
            raise BadCursor("after: not a cursor from a previous page")
        instant, lead_id = text.split(".")
        if int(lead_id) < 1 or int(lead_id) > 2**63 - 1 or (instant != "n" and int(instant) > _MAX_MICROS):
            raise BadCursor("after: not a cursor from a previous page")
        at = None if instant == "n" else _EPOCH + timedelta(microseconds=int(instant))
        return cls(at, int(lead_id))


@dataclass(frozen=True)
class InboxFilter:
    stage: str | None = None
    temperature: Temperature | None = None
    channel: str | None = None
    assigned: Assigned = "anyone"
    handler: Handler | None = None
    stalled: bool | None = None
    search: str | None = None
    after: Cursor | None = None
    limit: int = 50


def _search_params(search: str) -> dict[str, Any]:
    pattern = "%" + _escape_like(search.strip()) + "%"
    digits = re.sub(r"\D", "", search)
    # "9 1111 1111" finds +56911111111: a query that looks like a phone is also matched by its digits.
    phone = "%" + digits + "%" if _PHONE_LIKE.match(search.strip()) and len(digits) >= 6 else None
    return {"pattern": pattern, "phone": phone}


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_HANDLER_JOIN = """LEFT JOIN LATERAL (SELECT h.handler FROM leadflow.lead_handlers h WHERE h.lead_id = l.lead_id
                                      ORDER BY h.switch_id DESC LIMIT 1) h ON true"""
# The leads a search finds, by a definer function (migration 0021): under row security PostgreSQL cannot use
# the trigram indexes for ILIKE (it is not leakproof), and the search would read every message of the broker.
_SEARCH = "l.lead_id IN (SELECT leadflow.workspace_search(%(pattern)s, %(phone)s))"


# The inbox's filters read the lead's stage, score and handler through scalar sub-selects, not joins: the
# page then walks ``leads_inbox`` in order and stops at the page's end; a join would let the planner
# hash the broker's every score or stage first (row security's OR hides the broker filter from it).
_STAGE = "(SELECT st.stage FROM leadflow.lead_stages st WHERE st.lead_id = l.lead_id)"
_STALLED = "coalesce((SELECT st.stalled FROM leadflow.lead_stages st WHERE st.lead_id = l.lead_id), false)"
_TEMPERATURE = "(SELECT s.temperature FROM leadflow.lead_scores s WHERE s.lead_id = l.lead_id)"
_HANDLER = ("(SELECT h.handler FROM leadflow.lead_handlers h WHERE h.lead_id = l.lead_id "
            "ORDER BY h.switch_id DESC LIMIT 1)")


def _conditions(f: InboxFilter, joined: bool = False) -> dict[str, str]:
    """Each active filter's SQL, by facet (the counts leave a facet's own condition out). ``joined``: the
    query joins st, s and h itself (the counts, which read every lead of the broker anyway)."""
    stage, stalled, temperature, handler = (("st.stage", "coalesce(st.stalled, false)", "s.temperature", "h.handler")
                                            if joined else (_STAGE, _STALLED, _TEMPERATURE, _HANDLER))
    found: dict[str, str] = {}
    if f.stage is not None:
        found["stage"] = f"{stage} = %(stage)s"
    if f.temperature is not None:
        found["temperature"] = f"{temperature} = %(temperature)s"
    if f.channel is not None:
        found["channel"] = "%(channel)s = ANY(l.channels)"
    if f.assigned == "me":
        found["assigned"] = "l.assigned_user_id = %(me)s"
    elif f.assigned == "unassigned":
        found["assigned"] = "l.assigned_user_id IS NULL"
    if f.handler == "person":
        found["handler"] = f"{handler} = 'person'"
    elif f.handler == "bot":
        found["handler"] = f"{handler} IS DISTINCT FROM 'person'"
    if f.stalled is not None:
        found["stalled"] = f"{stalled} = %(stalled)s"
    if f.search:
        found["search"] = _SEARCH
    return found


def _params(broker_id: int, me: int, f: InboxFilter) -> dict[str, Any]:
    params: dict[str, Any] = {"broker": broker_id, "me": me, "stage": f.stage, "temperature": f.temperature,
                              "channel": f.channel, "stalled": f.stalled, "limit": f.limit + 1}
    if f.search:
        params.update(_search_params(f.search))
    if f.after is not None:
        params["after_at"] = "-infinity" if f.after.last_message_at is None else f.after.last_message_at.isoformat()
        params["after_id"] = f.after.lead_id
    return params


def _after(f: InboxFilter) -> str:
    """The keyset condition of a page after ``f.after`` (empty for the first page)."""
    return f"\n AND ({SORT_KEY}, l.lead_id) < (%(after_at)s::timestamptz, %(after_id)s)" if f.after else ""


def _in_inbox_order(where: str, limit: str) -> str:
    """The broker's live leads matching ``where``, newest message first, at most ``limit`` (a parameter)."""
    return f"""SELECT l.lead_id, {SORT_KEY} AS sort_key FROM leadflow.leads l
            WHERE l.broker_id = %(broker)s AND l.merged_into IS NULL {where}
            ORDER BY {SORT_KEY} DESC, l.lead_id DESC
            LIMIT {limit}"""


def inbox(cur: psycopg2.extensions.cursor, broker_id: int, me: int, f: InboxFilter) -> dict[str, Any]:
    """One page of leads, newest message first, and the cursor of the next page (None: the last page).

    The page's leads are chosen first (walking ``leads_inbox`` in order, the filters as sub-selects), then
    the columns shown are joined to those few rows.
    """
    conditions = _conditions(f)
    after = _after(f)
    params = _params(broker_id, me, f)
    if f.search:
        found = _walk_search(cur, {k: v for k, v in conditions.items() if k != "search"}, after, params)
        if found is not None:
            conditions["search"] = "l.lead_id = ANY(%(found)s)"
            params["found"] = found
    where = "".join(f"\n AND {sql}" for sql in conditions.values()) + after
    cur.execute(f"""
        WITH page AS MATERIALIZED ({_in_inbox_order(where, "%(limit)s")})
        SELECT l.lead_id, l.display_name, l.phone_e164, l.email, l.channels, l.message_count, l.last_message_at,
               l.assigned_user_id, u.display_name AS assigned_name, s.score, s.temperature, st.stage,
               st.entered_at AS stage_entered_at, coalesce(st.stalled, false) AS stalled,
               coalesce(h.handler, 'bot') AS handler, last.body AS last_body, last.direction AS last_direction,
               last.channel AS last_channel
        FROM page JOIN leadflow.leads l USING (lead_id)
        LEFT JOIN leadflow.lead_scores s ON s.lead_id = l.lead_id
        LEFT JOIN leadflow.lead_stages st ON st.lead_id = l.lead_id
        LEFT JOIN leadflow.users u ON u.user_id = l.assigned_user_id
        {_HANDLER_JOIN}
        LEFT JOIN LATERAL (SELECT left(m.body, 160) AS body, m.direction, m.channel
                           FROM leadflow.message_leads ml JOIN leadflow.raw_messages m USING (message_id)
                           WHERE ml.lead_id = l.lead_id ORDER BY ml.message_id DESC LIMIT 1) last ON true
        ORDER BY page.sort_key DESC, page.lead_id DESC""", params)
    items = _rows(cur)
    more = len(items) > f.limit
    items = items[:f.limit]
    following = Cursor(items[-1]["last_message_at"], items[-1]["lead_id"]).encode() if more and items else None
    return {"items": items, "next": following, "limit": f.limit}


# A search first reads this many leads in the inbox's order, and stops at the page's end: a frequent term
# (a common surname, "depto") fills a page within them. Through the trigram index instead, it would gather
# every match of the broker first: "Rojas" (12,500 leads of 50,000) took 36 ms for one user, "depto" 0.6-0.9 s;
# by this walk 6-10 ms and 4 ms. A rare term pays the walk (~10 ms), then the index. 200 leads hold a page of
# any term in a quarter of the leads.
SEARCH_WALK = 200
_WALK_MATCH = """((coalesce(l.display_name, '') || ' ' || coalesce(l.email, '') || ' ' || coalesce(l.phone_e164, ''))
                  ILIKE ANY (ARRAY[%(pattern)s, coalesce(%(phone)s, %(pattern)s)])
                 OR EXISTS (SELECT 1 FROM leadflow.message_leads ml JOIN leadflow.raw_messages m USING (message_id)
                            WHERE ml.lead_id = l.lead_id AND m.direction = 'inbound' AND m.body ILIKE %(pattern)s))"""


def _walk_search(cur: psycopg2.extensions.cursor, conditions: dict[str, str], after: str,
                 params: dict[str, Any]) -> list[int] | None:
    """The page's matching leads found among the next ``SEARCH_WALK`` leads in inbox order, or None when
    fewer than a page (and the one after it) match there: a rarer term, which the index then finds. The
    same matching as ``workspace_search`` (migration 0021), here under the cursor's row security."""
    where = "".join(f"\n AND {sql}" for sql in conditions.values()) + after
    cur.execute(f"""
        SELECT w.lead_id FROM ({_in_inbox_order(where, "%(walk)s")}) w
        JOIN leadflow.leads l ON l.lead_id = w.lead_id
        WHERE {_WALK_MATCH}
        ORDER BY w.sort_key DESC, w.lead_id DESC
        LIMIT %(limit)s""", {**params, "walk": SEARCH_WALK})
    found = [int(row[0]) for row in cur.fetchall()]
    return found if len(found) == params["limit"] else None


class CountsCache:
    """The inbox's counts per broker, person and filter, for ``ttl_s`` seconds.

    Counting reads every live lead of the broker (200 ms at 50,000 leads, bench/workspace.py), and every
    inbox page shows the counts: people paging and filtering would make the database count the same leads
    over and over. A write through this process (``workspace.db.write_cursor``) forgets its broker's counts
    at once; what the pipeline or another process changes shows within ``ttl_s``. 0 turns it off.
    """

    def __init__(self, ttl_s: float, size: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._size = size
        self._clock = clock
        self._entries: OrderedDict[tuple[Any, ...], tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> dict[str, Any] | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None or self._clock() - found[0] > self.ttl_s:
                return None
            return copy.deepcopy(found[1])

    def put(self, key: tuple[Any, ...], counts: dict[str, Any]) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._entries[key] = (self._clock(), copy.deepcopy(counts))
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def forget(self, broker_id: int) -> None:
        with self._lock:
            for key in [key for key in self._entries if key[0] == broker_id]:
                del self._entries[key]


COUNTS = CountsCache(10.0)


def inbox_counts(cur: psycopg2.extensions.cursor, broker_id: int, me: int, pipeline: Pipeline,
                 f: InboxFilter) -> dict[str, Any]:
    """How many leads each filter value would show, the other active filters applied (one pass over the
    broker's live leads), and how many match them all; kept a few seconds (``CountsCache``)."""
    key = (broker_id, me, tuple(s.code for s in pipeline.stages), replace(f, after=None, limit=0))
    cached = COUNTS.get(key)
    if cached is not None:
        return cached
    counts = _count(cur, broker_id, me, pipeline, f)
    COUNTS.put(key, counts)
    return counts


def _count(cur: psycopg2.extensions.cursor, broker_id: int, me: int, pipeline: Pipeline,
           f: InboxFilter) -> dict[str, Any]:
    conditions = _conditions(f, joined=True)
    values: dict[str, Any] = {}

    def value(text: str) -> str:
        # Stage codes come from the broker's settings: bound, never spliced into the SQL.
        values[f"v{len(values)}"] = text
        return f"%(v{len(values) - 1})s"

    facets: list[tuple[str, str, str]] = [("stage", code, f"st.stage = {value(code)}")
                                          for code in [*(s.code for s in pipeline.stages), LOST]]
    facets += [("temperature", t, f"s.temperature = {value(t)}") for t in TEMPERATURES]
    facets += [("channel", c, f"{value(c)} = ANY(l.channels)") for c in CHANNELS]
    facets += [("assigned", "me", "l.assigned_user_id = %(me)s"),
               ("assigned", "unassigned", "l.assigned_user_id IS NULL"), ("assigned", "anyone", "true")]
    facets += [("handler", "person", "h.handler = 'person'"), ("handler", "bot", "h.handler IS DISTINCT FROM 'person'")]
    facets += [("stalled", "true", "coalesce(st.stalled, false)")]

    def others(facet: str) -> str:
        return "".join(f" AND {sql}" for name, sql in conditions.items() if name != facet)

    columns = ",\n".join(f"count(*) FILTER (WHERE {sql}{others(facet)})" for facet, _, sql in facets)
    # The broker's stages, scores and handlers are read whole and hashed (MATERIALIZED: row security hides
    # the broker filter's selectivity from the planner, which otherwise looks each lead up three times).
    cur.execute(f"""
        WITH st AS MATERIALIZED (
                SELECT lead_id, stage, stalled FROM leadflow.lead_stages WHERE broker_id = %(broker)s),
             s AS MATERIALIZED (
                SELECT lead_id, temperature FROM leadflow.lead_scores WHERE broker_id = %(broker)s),
             h AS MATERIALIZED (
                SELECT DISTINCT ON (lead_id) lead_id, handler FROM leadflow.lead_handlers
                WHERE broker_id = %(broker)s ORDER BY lead_id, switch_id DESC)
        SELECT count(*) FILTER (WHERE true{others("")}), {columns}
        FROM leadflow.leads l
        LEFT JOIN st ON st.lead_id = l.lead_id
        LEFT JOIN s ON s.lead_id = l.lead_id
        LEFT JOIN h ON h.lead_id = l.lead_id
        WHERE l.broker_id = %(broker)s AND l.merged_into IS NULL""", {**_params(broker_id, me, f), **values})
    row = cur.fetchone()
    assert row is not None
    counts: dict[str, dict[str, int]] = {}
    for (facet, shown, _), count in zip(facets, row[1:], strict=True):
        counts.setdefault(facet, {})[shown] = int(count)
    return {"total": int(row[0]), **counts}


def pipeline_of(cur: psycopg2.extensions.cursor, broker_id: int) -> Pipeline:
    cur.execute("SELECT pipeline FROM leadflow.broker_settings WHERE broker_id = %s", (broker_id,))
    row = cur.fetchone()
    return Pipeline.from_settings(row[0] if row else None)


def stage_names(pipeline: Pipeline) -> list[dict[str, str]]:
    return [{"code": s.code, "name": s.name} for s in (*pipeline.stages, pipeline.stage(LOST))]


def people(cur: psycopg2.extensions.cursor, broker_id: int) -> list[dict[str, Any]]:
    """The broker's active people a lead can be assigned to."""
    cur.execute("""SELECT user_id, email, display_name, role FROM leadflow.users
                   WHERE broker_id = %s AND NOT disabled AND role IN ('ADMIN', 'AGENT')
                   ORDER BY display_name, user_id""", (broker_id,))
    return _rows(cur)


# Who wrote a message: the lead (inbound), the bot or a person (their replies carry
# {"leadflow": {"author": …}}), else the voice assistant's turn of a call.
_MESSAGE_ITEMS = """
    SELECT 'message' AS kind, m.message_id AS item_id, m.channel, m.direction, m.message_type, m.body,
           m.sent_at AS at, m.conversation_id,
           CASE WHEN m.direction = 'inbound' THEN 'lead'
                WHEN m.payload #>> '{leadflow,author}' IN ('bot', 'person') THEN m.payload #>> '{leadflow,author}'
                ELSE 'assistant' END AS author,
           d.status AS delivery, NULL::text AS campaign, NULL::text AS detail
    FROM leadflow.message_leads ml JOIN leadflow.raw_messages m USING (message_id)
    LEFT JOIN LATERAL (SELECT ds.status FROM leadflow.delivery_statuses ds
                       WHERE m.direction = 'outbound' AND ds.broker_id = m.broker_id AND ds.channel = m.channel
                         AND ds.provider_message_id = m.provider_message_id
                       ORDER BY array_position(ARRAY['sent', 'delivered', 'read', 'failed'], ds.status) DESC
                       LIMIT 1) d ON true
    WHERE ml.lead_id = %(lead)s"""
_SEND_ITEMS = """
    SELECT 'send' AS kind, o.send_id AS item_id, o.channel, 'outbound' AS direction, o.action AS message_type,
           coalesce(o.payload ->> 'text', o.payload ->> 'task', o.payload ->> 'summary') AS body,
           coalesce(o.sent_at, o.created_at) AS at, NULL::text AS conversation_id, 'campaign' AS author,
           o.status AS delivery, c.name AS campaign, o.reason AS detail
    FROM leadflow.outbound_sends o JOIN leadflow.campaigns c USING (campaign_id)
    WHERE o.lead_id = %(lead)s AND o.action <> 'move_stage'"""


def conversation(cur: psycopg2.extensions.cursor, lead_id: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """The newest ``limit`` items of the lead's conversation across channels, oldest first; and whether
    older ones were left out."""
    cur.execute(f"""SELECT * FROM ({_MESSAGE_ITEMS} UNION ALL {_SEND_ITEMS}) items
                    ORDER BY at DESC, item_id DESC LIMIT %(limit)s""", {"lead": lead_id, "limit": limit + 1})
    items = _rows(cur)
    return list(reversed(items[:limit])), len(items) > limit


def items_since(cur: psycopg2.extensions.cursor, lead_id: int, after_message: int,
                sends_since: datetime) -> tuple[list[dict[str, Any]], int, datetime]:
    """What the live stream has not sent yet: messages after ``after_message`` and campaign sends created or
    changed since ``sends_since``; and the new marks."""
    cur.execute(f"""
        SELECT * FROM ({_MESSAGE_ITEMS} AND ml.message_id > %(after)s) items ORDER BY item_id""",
                {"lead": lead_id, "after": after_message})
    messages = _rows(cur)
    cur.execute(f"""SELECT items.*, o.updated_at FROM ({_SEND_ITEMS} AND o.updated_at > %(since)s) items
                    JOIN leadflow.outbound_sends o ON o.send_id = items.item_id ORDER BY o.updated_at""",
                {"lead": lead_id, "since": sends_since})
    sends = _rows(cur)
    marks = (max([after_message, *(m["item_id"] for m in messages)]),
             max([sends_since, *(s.pop("updated_at") for s in sends)]))
    return messages + sends, *marks


def live_marks(cur: psycopg2.extensions.cursor, lead_id: int) -> tuple[int, datetime]:
    """Where a live stream starts: the lead's newest message id and the database's now."""
    cur.execute("""SELECT coalesce(max(message_id), 0), now() FROM leadflow.message_leads WHERE lead_id = %s""",
                (lead_id,))
    row = cur.fetchone()
    assert row is not None
    return int(row[0]), row[1]


def lead_visible(cur: psycopg2.extensions.cursor, broker_id: int, lead_id: int) -> bool:
    cur.execute("SELECT 1 FROM leadflow.leads WHERE lead_id = %s AND broker_id = %s", (lead_id, broker_id))
    return cur.fetchone() is not None


def lead_page(cur: psycopg2.extensions.cursor, broker_id: int, lead_id: int, limit: int = 500) -> dict[str, Any] | None:
    """Everything the lead page shows; None when the cursor may not see the lead."""
    found = queries.lead(cur, broker_id, lead_id)
    if found is None:
        return None
    cur.execute("""SELECT u.user_id, u.display_name, u.email FROM leadflow.leads l
                   JOIN leadflow.users u ON u.user_id = l.assigned_user_id WHERE l.lead_id = %s""", (lead_id,))
    assigned = _rows(cur)
    found["assigned"] = assigned[0] if assigned else None
    cur.execute("""SELECT h.handler, h.reason, h.switched_at, u.display_name AS by_name
                   FROM leadflow.lead_handlers h LEFT JOIN leadflow.users u USING (user_id)
                   WHERE h.lead_id = %s ORDER BY h.switch_id DESC LIMIT 1""", (lead_id,))
    handler = _rows(cur)
    found["handler"] = handler[0] if handler else {"handler": "bot", "reason": None, "switched_at": None,
                                                   "by_name": None}
    cur.execute("""SELECT e.from_stage, e.to_stage, e.occurred_at, e.reason, e.automatic, u.display_name AS moved_by
                   FROM leadflow.stage_events e LEFT JOIN leadflow.users u ON u.user_id = e.moved_by
                   WHERE e.lead_id = %s ORDER BY e.occurred_at, e.sequence, e.stage_event_id""", (lead_id,))
    found["stage_history"] = _rows(cur)
    cur.execute("""SELECT identity_kind AS kind, identity_value AS value, reason, linked_at
                   FROM leadflow.lead_identities WHERE lead_id = %s ORDER BY linked_at, identity_kind""", (lead_id,))
    found["identities"] = _rows(cur)
    cur.execute("""SELECT merge_id, merged_lead_id, into_lead_id, reason, merged_at, undone_at,
                          cardinality(moved_message_ids) AS moved_messages
                   FROM leadflow.lead_merges WHERE broker_id = %(broker)s
                     AND (into_lead_id = %(lead)s OR merged_lead_id = %(lead)s) ORDER BY merged_at""",
                {"broker": broker_id, "lead": lead_id})
    found["merges"] = _rows(cur)
    found["notes"] = notes(cur, lead_id)
    cur.execute("""SELECT t.tag, t.added_at, t.added_by AS added_by_id, u.display_name AS added_by
                   FROM leadflow.lead_tags t
                   LEFT JOIN leadflow.users u ON u.user_id = t.added_by WHERE t.lead_id = %s ORDER BY t.tag""",
                (lead_id,))
    found["tags"] = _rows(cur)
    found["conversation"], found["older_left_out"] = conversation(cur, lead_id, limit)
    found["provenance"] = provenance.fact_sources(cur, lead_id, found["qualification"],
                                                  (queries.broker(cur, broker_id) or {}).get("country"))
    found["activity"] = audit(cur, broker_id, lead_id, 50)
    return found


def notes(cur: psycopg2.extensions.cursor, lead_id: int) -> list[dict[str, Any]]:
    # LEFT JOIN: a SUPERADMIN belongs to no broker, so the broker-scoped cursor does not see its name.
    cur.execute("""SELECT n.note_id, n.body, n.created_at, n.author_id, u.display_name AS author
                   FROM leadflow.lead_notes n LEFT JOIN leadflow.users u ON u.user_id = n.author_id
                   WHERE n.lead_id = %s ORDER BY n.note_id DESC""",
                (lead_id,))
    return _rows(cur)


def audit(cur: psycopg2.extensions.cursor, broker_id: int, lead_id: int | None, limit: int,
          before: int | None = None) -> list[dict[str, Any]]:
    """The newest audit entries of the broker (or of one lead), newest first."""
    cur.execute("""SELECT a.audit_id, a.action, a.lead_id, a.before, a.after, a.at, a.user_id, u.display_name AS by_name
                   FROM leadflow.audit_log a LEFT JOIN leadflow.users u USING (user_id)
                   WHERE a.broker_id = %(broker)s AND (%(lead)s::bigint IS NULL OR a.lead_id = %(lead)s)
                     AND (%(before)s::bigint IS NULL OR a.audit_id < %(before)s)
                   ORDER BY a.audit_id DESC LIMIT %(limit)s""",
                {"broker": broker_id, "lead": lead_id, "before": before, "limit": limit})
    return _rows(cur)


def board(cur: psycopg2.extensions.cursor, broker_id: int, me: int, pipeline: Pipeline, assigned: Assigned,
          per_column: int) -> list[dict[str, Any]]:
    """The pipeline as columns: each stage's live leads counted, and its most recently entered cards."""
    mine = {"me": "AND l.assigned_user_id = %(me)s", "unassigned": "AND l.assigned_user_id IS NULL",
            "anyone": ""}[assigned]
    params = {"broker": broker_id, "me": me, "limit": per_column}
    cur.execute(f"""SELECT st.stage, count(*) FROM leadflow.lead_stages st JOIN leadflow.leads l USING (lead_id)
                    WHERE st.broker_id = %(broker)s AND l.broker_id = %(broker)s AND l.merged_into IS NULL {mine}
                    GROUP BY st.stage""", params)
    counts = dict(cur.fetchall())
    codes = [s["code"] for s in stage_names(pipeline)]
    # Each column walks lead_stages_board in order and stops at its limit; the lead is checked by a scalar
    # sub-select (live, the assignment asked for, and visible: row security makes it NULL otherwise) so
    # that the planner cannot turn the walk into a sort of the whole stage.
    live = f"(SELECT l.merged_into IS NULL {mine} FROM leadflow.leads l WHERE l.lead_id = st.lead_id)"
    cur.execute(f"""
        SELECT c.stage, l.lead_id, l.display_name, l.phone_e164, l.email, l.channels, l.last_message_at,
               top.entered_at, top.stalled, s.score, s.temperature, l.assigned_user_id,
               u.display_name AS assigned_name
        FROM unnest(%(codes)s::text[]) WITH ORDINALITY AS c(stage, position)
        CROSS JOIN LATERAL (
            SELECT st.lead_id, st.entered_at, st.stalled FROM leadflow.lead_stages st
            WHERE st.broker_id = %(broker)s AND st.stage = c.stage AND {live}
            ORDER BY st.entered_at DESC, st.lead_id DESC LIMIT %(limit)s) top
        JOIN leadflow.leads l ON l.lead_id = top.lead_id
        LEFT JOIN leadflow.lead_scores s ON s.lead_id = l.lead_id
        LEFT JOIN leadflow.users u ON u.user_id = l.assigned_user_id
        ORDER BY c.position, top.entered_at DESC, top.lead_id DESC""", {**params, "codes": codes})
    cards: dict[str, list[dict[str, Any]]] = {}
    for row in _rows(cur):
        cards.setdefault(row.pop("stage"), []).append(row)
    return [{**stage, "count": int(counts.get(stage["code"], 0)), "cards": cards.get(stage["code"], [])}
            for stage in stage_names(pipeline)]


def _rows(cur: psycopg2.extensions.cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
