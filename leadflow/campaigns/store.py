"""Segments, consent and campaign batches against PostgreSQL (and Kafka for the outbound commands).

Each function is one step of a batch and one transaction: read what it needs, call the pure
functions (``segments``, ``targeting``), write the result. Writes carry the keys that make a
rerun harmless: one open membership per segment and lead, one enrollment per campaign and lead,
one send per campaign, lead and step.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import psycopg2.extensions

from leadflow.appointments import store as appointments
from leadflow.appointments import texts
from leadflow.appointments.rules import RulesError
from leadflow.appointments.texts import Wording
from leadflow.campaigns.definitions import CampaignDefinition, CampaignStatus
from leadflow.campaigns.eligibility import ContactRules, opt_out_words_pattern, opts_out
from leadflow.campaigns.segments import SegmentRules, members, membership_changes
from leadflow.campaigns.targeting import Broker, Campaign, decide, enroll, manual_outcomes
from leadflow.campaigns.templates import VISIT_OPTIONS_MARK, VISIT_TIME_MARK, unknown_variables
from leadflow.db.connection import transaction
from leadflow.db.copy import copy_frame, read_frame
from leadflow.events import SCHEMA_VERSION, event_id_for

_LOCK_CAMPAIGNS = 7_240_010


class CampaignError(ValueError):
    """A segment or campaign that cannot be saved; the message says what to fix."""


def _broker_id(cur: psycopg2.extensions.cursor, slug: str) -> int:
    cur.execute("SELECT broker_id FROM leadflow.brokers WHERE slug = %s", (slug,))
    row = cur.fetchone()
    if row is None:
        raise CampaignError(f"no broker {slug!r} (leadflow brokers list)")
    return int(row[0])


def save_segment(url: str, broker_slug: str, name: str, rules: dict[str, Any]) -> int:
    """Create or replace a broker's segment; the rules are validated first."""
    try:
        SegmentRules.model_validate(rules)
    except ValueError as exc:
        raise CampaignError(f"segment {name!r}: {exc}") from exc
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.segments (broker_id, name, rules) VALUES (%s, %s, %s)
                       ON CONFLICT (broker_id, name) DO UPDATE SET rules = EXCLUDED.rules RETURNING segment_id""",
                    (_broker_id(cur, broker_slug), name, json.dumps(rules)))
        row = cur.fetchone()
        assert row is not None
        return int(row[0])


def save_campaign(url: str, broker_slug: str, name: str, definition: dict[str, Any],
                  status: CampaignStatus = "draft") -> int:
    """Create or replace a broker's campaign; switching it to active stamps ``activated_at``."""
    try:
        parsed = CampaignDefinition.model_validate(definition)
    except ValueError as exc:
        raise CampaignError(f"campaign {name!r}: {exc}") from exc
    for number, step in enumerate(parsed.steps, start=1):
        texts = [step.template or "", *(step.whatsapp_template.parameters if step.whatsapp_template else [])]
        unknown = [v for text in texts for v in unknown_variables(text)]
        if unknown:
            raise CampaignError(f"campaign {name!r} step {number}: unknown variables {', '.join(unknown)}")
    with transaction(url) as conn, conn.cursor() as cur:
        broker_id = _broker_id(cur, broker_slug)
        if parsed.trigger.segment is not None:
            cur.execute("SELECT 1 FROM leadflow.segments WHERE broker_id = %s AND name = %s",
                        (broker_id, parsed.trigger.segment))
            if cur.fetchone() is None:
                raise CampaignError(f"campaign {name!r}: no segment {parsed.trigger.segment!r} for this broker")
        cur.execute("""
            INSERT INTO leadflow.campaigns (broker_id, name, status, definition, activated_at)
            VALUES (%s, %s, %s, %s, CASE WHEN %s = 'active' THEN now() END)
            ON CONFLICT (broker_id, name) DO UPDATE SET status = EXCLUDED.status, definition = EXCLUDED.definition,
                activated_at = CASE WHEN EXCLUDED.status = 'active' AND campaigns.status <> 'active' THEN now()
                                    ELSE campaigns.activated_at END
            RETURNING campaign_id""", (broker_id, name, status, parsed.model_dump_json(), status))
        row = cur.fetchone()
        assert row is not None
        return int(row[0])


# --- by hand: applying a manual campaign, switching a campaign's status ------------------------------

@dataclass
class Applied:
    """What applying a campaign to leads did: requested now, requested or enrolled before, refused (why)."""

    requested: list[int] = field(default_factory=list)
    already: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)


NOT_THE_BROKERS = "not a lead of this broker"


def request_enrollments(cur: psycopg2.extensions.cursor, broker_id: int, campaign_id: int, lead_ids: list[int],
                        requested_by: int | None) -> Applied:
    """Apply a ``manual`` campaign (the caller checked it is the broker's) to these leads, in the caller's
    transaction: each live lead of the broker becomes one request, which the next batch enrolls or refuses
    with its reason. Applying twice requests once. Another broker's lead and an unknown id are refused alike
    (the answer does not tell which exists); a merged lead is refused naming the lead it lives on as."""
    applied = Applied()
    wanted = sorted(set(lead_ids))
    cur.execute("SELECT lead_id, broker_id, merged_into FROM leadflow.leads WHERE lead_id = ANY(%s)", (wanted,))
    found = {int(lead): (int(broker), merged) for lead, broker, merged in cur.fetchall()}
    live = []
    for lead in wanted:
        broker, merged = found.get(lead, (None, None))
        if broker != broker_id:
            applied.refused[lead] = NOT_THE_BROKERS
        elif merged is not None:
            applied.refused[lead] = f"merged into lead {merged}: apply the campaign to that one"
        else:
            live.append(lead)
    cur.execute("""
        INSERT INTO leadflow.manual_enrollments (campaign_id, broker_id, lead_id, requested_by)
        SELECT %(campaign)s, %(broker)s, l, %(by)s FROM unnest(%(leads)s::bigint[]) AS l
        WHERE NOT EXISTS (SELECT 1 FROM leadflow.campaign_enrollments e WHERE e.campaign_id = %(campaign)s
                          AND e.lead_id = l)
        ON CONFLICT (campaign_id, lead_id) DO NOTHING
        RETURNING lead_id""", {"campaign": campaign_id, "broker": broker_id, "by": requested_by, "leads": live})
    applied.requested = sorted(int(r[0]) for r in cur.fetchall())
    applied.already = sorted(set(live) - set(applied.requested))
    return applied


# What a send owed when its campaign was paused or completed says; resuming sends those held by a pause.
HELD_BY_PAUSE = "held: the campaign was paused before this was sent"
DROPPED_BY_COMPLETION = "the campaign was completed before this was sent"
# action → (statuses it applies to, status it sets)
TRANSITIONS: dict[str, tuple[tuple[CampaignStatus, ...], CampaignStatus]] = {
    "activate": (("draft",), "active"), "pause": (("active",), "paused"), "resume": (("paused",), "active"),
    "complete": (("draft", "active", "paused"), "completed")}


def change_status(cur: psycopg2.extensions.cursor, campaign_id: int, action: str) -> tuple[str, str]:
    """Switch a campaign (the caller checked it is the broker's and locked nothing): (status before, after).

    Paused, the batches neither enroll nor decide for it, and its sends still owed are held (the dispatcher
    sends only ``pending`` ones) until it resumes; resuming keeps ``activated_at``, so what happened while
    it was paused is caught up. Completed is final: its enrollments stop and its waiting requests are refused.
    """
    if action not in TRANSITIONS:
        raise CampaignError(f"no action {action!r}: use {', '.join(TRANSITIONS)}")
    allowed, target = TRANSITIONS[action]
    cur.execute("SELECT status FROM leadflow.campaigns WHERE campaign_id = %s FOR UPDATE", (campaign_id,))
    row = cur.fetchone()
    if row is None:
        raise CampaignError(f"no campaign {campaign_id}")
    before = str(row[0])
    if before not in allowed:
        raise CampaignError(f"a {before} campaign cannot be {'resumed' if action == 'resume' else action + 'd'}"
                            f" (only a {' or '.join(allowed)} one)")
    cur.execute("""UPDATE leadflow.campaigns SET status = %s,
                       activated_at = CASE WHEN %s = 'activate' THEN now() ELSE activated_at END
                   WHERE campaign_id = %s""", (target, action, campaign_id))
    if action in ("pause", "complete"):
        cur.execute("""UPDATE leadflow.outbound_sends SET status = 'skipped', reason = %s, next_attempt_at = NULL,
                           updated_at = now()
                       WHERE campaign_id = %s AND (status = 'pending' OR (status = 'skipped' AND reason = %s))""",
                    (HELD_BY_PAUSE if action == "pause" else DROPPED_BY_COMPLETION, campaign_id, HELD_BY_PAUSE))
    if action == "resume":
        # Due from when they were decided: whatever the dispatcher's clock (a replayed batch's as well).
        cur.execute("""UPDATE leadflow.outbound_sends SET status = 'pending', reason = NULL,
                           next_attempt_at = created_at, updated_at = now()
                       WHERE campaign_id = %s AND status = 'skipped' AND reason = %s""", (campaign_id, HELD_BY_PAUSE))
    if action == "complete":
        cur.execute("""UPDATE leadflow.campaign_enrollments SET status = 'stopped', next_due_at = NULL,
                           stopped_reason = 'campaign completed'
                       WHERE campaign_id = %s AND status = 'active'""", (campaign_id,))
        cur.execute("""UPDATE leadflow.manual_enrollments SET status = 'refused', decided_at = now(),
                           reason = 'the campaign was completed before it enrolled the lead'
                       WHERE campaign_id = %s AND status = 'requested'""", (campaign_id,))
    return before, target


# --- consent -------------------------------------------------------------------------------------

def record_opt_outs(url: str) -> int:
    """Scan inbound messages not scanned yet for opt-out words; record each lead who said one."""
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_CAMPAIGNS + 1,))
        cur.execute("SELECT last_message_id FROM leadflow.scan_watermarks WHERE name = 'consent'")
        row = cur.fetchone()
        since = int(row[0]) if row else 0
        cur.execute("""SELECT m.message_id, ml.lead_id, ml.broker_id, m.body, m.sent_at
                       FROM leadflow.raw_messages m JOIN leadflow.message_leads ml USING (message_id)
                       WHERE m.message_id > %s AND m.direction = 'inbound' ORDER BY m.message_id""", (since,))
        rows = cur.fetchall()
        if not rows:
            return 0
        frame = pl.DataFrame(rows, schema=["message_id", "lead_id", "broker_id", "body", "sent_at"], orient="row")
        cur.execute("""SELECT broker_id, campaigns -> 'opt_out_words' FROM leadflow.broker_settings
                       WHERE jsonb_typeof(campaigns -> 'opt_out_words') = 'array' AND broker_id = ANY(%s)""",
                    (frame["broker_id"].unique().to_list(),))
        # Each broker's own words, on its own leads' messages only, besides the words every lead may use.
        own = [(pl.col("broker_id") == broker_id) & pl.col("body").str.contains(pattern).fill_null(False)
               for broker_id, words in cur.fetchall() if (pattern := opt_out_words_pattern(words))]
        said = frame.filter(pl.any_horizontal(opts_out(pl.col("body")), *own))
        first = said.sort("message_id").unique("lead_id", keep="first", maintain_order=True)
        for message_id, lead_id, broker_id, body, sent_at in first.iter_rows():
            cur.execute("""INSERT INTO leadflow.lead_consent (lead_id, broker_id, opted_out_at, message_id, reason)
                           VALUES (%s, %s, %s, %s, %s) ON CONFLICT (lead_id) DO NOTHING""",
                        (lead_id, broker_id, sent_at, message_id, f"said {(body or '')[:60]!r}"))
        cur.execute("""INSERT INTO leadflow.scan_watermarks (name, last_message_id) VALUES ('consent', %s)
                       ON CONFLICT (name) DO UPDATE SET last_message_id = EXCLUDED.last_message_id""",
                    (int(frame["message_id"].max()),))  # type: ignore[arg-type]
        return first.height


# --- profiles and segments -------------------------------------------------------------------------

# Arrays travel as text joined by U+001F and times as epoch microseconds: COPY's CSV, read by polars.
PROFILE_SQL = """
    WITH contact AS (
        SELECT ml.lead_id,
               max(m.contact_channel_id) FILTER (WHERE m.channel = 'whatsapp') AS wa_id,
               max(m.sent_at) FILTER (WHERE m.channel = 'whatsapp' AND m.direction = 'inbound') AS last_whatsapp_at,
               max(m.contact_channel_id) FILTER (WHERE m.channel = 'telegram') AS telegram_chat_id,
               max(m.sent_at) FILTER (WHERE m.direction = 'inbound') AS last_inbound_at
        FROM leadflow.message_leads ml JOIN leadflow.raw_messages m USING (message_id)
        WHERE ml.broker_id = ANY(%(brokers)s)
        GROUP BY ml.lead_id
    ), tags AS (
        SELECT lead_id, array_to_string(array_agg(tag ORDER BY tag), E'\\x1f') AS tags FROM leadflow.lead_tags
        WHERE broker_id = ANY(%(brokers)s) GROUP BY lead_id
    )
    SELECT l.lead_id, l.broker_id, b.slug AS broker_slug, b.name AS broker_name,
           coalesce(q.name, l.display_name) AS name, l.phone_e164, l.email,
           array_to_string(l.channels, E'\\x1f') AS channels,
           s.score, s.temperature, coalesce(s.financing_ready, false) AS financing_ready,
           st.stage, (extract(epoch FROM st.entered_at) * 1000000)::bigint AS stage_entered_at,
           coalesce(st.stalled, false) AS stalled,
           q.operation, q.property_type, q.bedrooms_min, q.budget_min::float8, q.budget_max::float8,
           q.budget_currency, q.budget_period, array_to_string(q.locations, E'\\x1f') AS locations,
           q.timeline_months, q.financing, q.dicom_status, q.summary,
           (lc.lead_id IS NOT NULL OR coalesce(q.opted_out, false)) AS opted_out, t.tags,
           c.wa_id, (extract(epoch FROM c.last_whatsapp_at) * 1000000)::bigint AS last_whatsapp_at,
           c.telegram_chat_id, (extract(epoch FROM c.last_inbound_at) * 1000000)::bigint AS last_inbound_at
    FROM leadflow.leads l JOIN leadflow.brokers b USING (broker_id)
    LEFT JOIN contact c USING (lead_id)
    LEFT JOIN tags t USING (lead_id)
    LEFT JOIN leadflow.lead_scores s USING (lead_id)
    LEFT JOIN leadflow.lead_qualifications q USING (lead_id)
    LEFT JOIN leadflow.lead_stages st USING (lead_id)
    LEFT JOIN leadflow.lead_consent lc USING (lead_id)
    WHERE l.merged_into IS NULL AND l.broker_id = ANY(%(brokers)s)
"""
_TEXT, _INT, _FLOAT = pl.String, pl.Int64, pl.Float64
PROFILE_CSV = {
    "lead_id": _INT, "broker_id": _INT, "broker_slug": _TEXT, "broker_name": _TEXT, "name": _TEXT,
    "phone_e164": _TEXT, "email": _TEXT, "channels": _TEXT, "score": _INT, "temperature": _TEXT,
    "financing_ready": _TEXT, "stage": _TEXT, "stage_entered_at": _INT, "stalled": _TEXT, "operation": _TEXT,
    "property_type": _TEXT, "bedrooms_min": _INT, "budget_min": _FLOAT, "budget_max": _FLOAT,
    "budget_currency": _TEXT, "budget_period": _TEXT, "locations": _TEXT, "timeline_months": _INT,
    "financing": _TEXT, "dicom_status": _TEXT, "summary": _TEXT, "opted_out": _TEXT, "tags": _TEXT, "wa_id": _TEXT,
    "last_whatsapp_at": _INT, "telegram_chat_id": _TEXT, "last_inbound_at": _INT,
}


def load_profiles(cur: psycopg2.extensions.cursor, brokers: list[int], now: datetime) -> pl.DataFrame:
    """Every live lead of these brokers as one profile row (the columns segments and campaigns read)."""
    frame: pl.DataFrame = read_frame(cur, PROFILE_SQL, {"brokers": brokers}, PROFILE_CSV)
    if frame.is_empty():
        return frame
    lists = ("channels", "locations", "tags")
    times = ("last_inbound_at", "last_whatsapp_at", "stage_entered_at")
    return frame.with_columns(
        *(pl.col(c).str.split("\x1f").list.eval(pl.element().filter(pl.element() != ""))
          .fill_null(pl.lit([], pl.List(pl.String))) for c in lists),
        *(pl.from_epoch(pl.col(c), "us").dt.replace_time_zone("UTC") for c in times),
        *(pl.col(c) == "t" for c in ("financing_ready", "stalled", "opted_out")),
    ).with_columns(
        days_silent=((pl.lit(now) - pl.col("last_inbound_at")).dt.total_seconds() / 86400),
        days_in_stage=((pl.lit(now) - pl.col("stage_entered_at")).dt.total_seconds() / 86400),
    )


@dataclass
class SegmentResult:
    members: dict[str, int] = field(default_factory=dict)  # "broker/segment" → members now
    entered: int = 0
    exited: int = 0


def refresh_segments(url: str, now: datetime) -> SegmentResult:
    """Evaluate every segment; open a membership for each lead that entered, close it for each that left."""
    result = SegmentResult()
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_CAMPAIGNS + 2,))
        cur.execute("SELECT s.segment_id, s.broker_id, s.rules::text, b.slug || '/' || s.name FROM leadflow.segments s "
                    "JOIN leadflow.brokers b USING (broker_id)")
        segments = pl.DataFrame(cur.fetchall(), schema=["segment_id", "broker_id", "rules", "label"], orient="row")
        if segments.is_empty():
            return result
        profiles = load_profiles(cur, segments["broker_id"].unique().to_list(), now)
        current = members(profiles, segments) if not profiles.is_empty() else members(pl.DataFrame(), segments[:0])
        cur.execute("SELECT segment_id, lead_id FROM leadflow.segment_memberships WHERE exited_at IS NULL")
        previous = pl.DataFrame(cur.fetchall(), schema={"segment_id": pl.Int64, "lead_id": pl.Int64}, orient="row")
        entered, exited = membership_changes(current, previous)
        for segment_id, broker_id, lead_id in entered.select("segment_id", "broker_id", "lead_id").iter_rows():
            cur.execute("INSERT INTO leadflow.segment_memberships (segment_id, broker_id, lead_id, entered_at) "
                        "VALUES (%s, %s, %s, %s)", (segment_id, broker_id, lead_id, now))
        for segment_id, lead_id in exited.iter_rows():
            cur.execute("UPDATE leadflow.segment_memberships SET exited_at = %s WHERE segment_id = %s "
                        "AND lead_id = %s AND exited_at IS NULL", (now, segment_id, lead_id))
        counts = dict(current.group_by("segment_id").len().iter_rows())
        result.members = {label: int(counts.get(sid, 0)) for sid, label in segments.select("segment_id",
                                                                                          "label").iter_rows()}
        result.entered, result.exited = entered.height, exited.height
    return result


# --- campaign batches ----------------------------------------------------------------------------

@dataclass
class TargetResult:
    enrolled: int = 0
    sent: int = 0  # commands written (pending sends)
    skipped: dict[str, int] = field(default_factory=dict)  # reason → count
    deferred: dict[str, int] = field(default_factory=dict)
    stopped: int = 0
    already_decided: int = 0  # due steps that a previous run had already written (a rerun)
    refused: dict[str, int] = field(default_factory=dict)  # leads applied to a manual campaign, not enrolled


def _contact_rules(cur: psycopg2.extensions.cursor) -> dict[int, ContactRules]:
    cur.execute("SELECT broker_id, campaigns FROM leadflow.broker_settings")
    known = ContactRules.__dataclass_fields__
    return {int(b): ContactRules(**{k: v for k, v in (settings or {}).items() if k in known})
            for b, settings in cur.fetchall()}


def target_campaigns(url: str, now: datetime, publish: Callable[[list[tuple[bytes, bytes]]], None]) -> TargetResult:
    """One campaign batch: enroll, decide every due step, write sends and produce their commands.

    ``publish`` gets (key, value) records of ``OutboundCommand`` JSON and must return only once Kafka
    acknowledged them: it runs before the transaction commits, so a failure leaves nothing
    half-done and the next batch redoes it.
    """
    result = TargetResult()
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_CAMPAIGNS,))
        cur.execute("""SELECT c.campaign_id, c.broker_id, c.name, c.definition, c.activated_at
                       FROM leadflow.campaigns c WHERE c.status = 'active'""")
        campaigns = {cid: Campaign(cid, bid, name, CampaignDefinition.model_validate(definition), activated)
                     for cid, bid, name, definition, activated in cur.fetchall()}
        if not campaigns:
            return result
        broker_ids = sorted({c.broker_id for c in campaigns.values()})
        rules = _contact_rules(cur)
        cur.execute("SELECT broker_id, name, timezone FROM leadflow.brokers WHERE broker_id = ANY(%s)", (broker_ids,))
        brokers = {b: Broker(b, name, tz, rules.get(b, ContactRules())) for b, name, tz in cur.fetchall()}
        profiles = load_profiles(cur, broker_ids, now)
        if profiles.is_empty():
            return result
        memberships: pl.DataFrame = read_frame(cur, """
            SELECT m.broker_id, s.name AS segment, m.lead_id FROM leadflow.segment_memberships m
            JOIN leadflow.segments s USING (segment_id) WHERE m.exited_at IS NULL""", {},
            {"broker_id": pl.Int64, "segment": pl.String, "lead_id": pl.Int64})
        ids = {"campaigns": list(campaigns)}
        enrolled: pl.DataFrame = read_frame(cur, """
            SELECT campaign_id, lead_id FROM leadflow.campaign_enrollments WHERE campaign_id = ANY(%(campaigns)s)""",
            ids, {"campaign_id": pl.Int64, "lead_id": pl.Int64})
        requested: pl.DataFrame = read_frame(cur, """
            SELECT campaign_id, lead_id FROM leadflow.manual_enrollments
            WHERE status = 'requested' AND campaign_id = ANY(%(campaigns)s)""",
            ids, {"campaign_id": pl.Int64, "lead_id": pl.Int64})
        new = enroll(list(campaigns.values()), profiles, memberships, enrolled, now, requested)
        result.enrolled = new.height
        _record_requests(cur, manual_outcomes(
            list(campaigns.values()), requested, profiles, memberships,
            pl.concat([enrolled, new.select("campaign_id", "lead_id")])), now, result)

        cap_days = max((b.rules.cap_days for b in brokers.values()), default=7.0)
        recent: pl.DataFrame = read_frame(cur, """
            SELECT lead_id, count(*) AS sends FROM leadflow.outbound_sends
            WHERE broker_id = ANY(%(brokers)s) AND created_at > %(since)s AND status NOT IN ('skipped', 'failed')
                  AND channel <> 'pipeline'
            GROUP BY lead_id""", {"brokers": broker_ids, "since": now - timedelta(days=cap_days)},
            {"lead_id": pl.Int64, "sends": pl.Int64})
        # No row locks needed: the advisory lock above keeps batches from running side by side.
        due: pl.DataFrame = read_frame(cur, """
            SELECT campaign_id, lead_id, next_step FROM leadflow.campaign_enrollments
            WHERE status = 'active' AND next_due_at <= %(now)s AND campaign_id = ANY(%(campaigns)s)""",
            {**ids, "now": now}, {"campaign_id": pl.Int64, "lead_id": pl.Int64, "next_step": pl.Int64})
        # New enrollments whose first step is due now are decided in this batch too, and written once,
        # already moved on by their decision.
        due = pl.concat([due, new.filter(pl.col("next_due_at") <= now).select(due.columns)])
        decisions = decide(due, profiles, campaigns, brokers, recent, now)
        keys = ["campaign_id", "lead_id"]
        copy_frame(cur, "leadflow.campaign_enrollments", _moved_on(
            new.join(decisions, on=keys, how="left", suffix="_decided"), now))
        existing = decisions.join(new.select(keys), on=keys, how="anti")
        commands = _write_decisions(cur, decisions, existing, now, result)
        publish(commands)
    return result


def _record_requests(cur: psycopg2.extensions.cursor, outcomes: pl.DataFrame, now: datetime,
                     result: TargetResult) -> None:
    """Close each manual request this batch took: enrolled, or refused with its reason (shown in the log)."""
    if outcomes.is_empty():
        return
    cur.execute("""
        UPDATE leadflow.manual_enrollments m SET status = o.status, reason = o.reason, decided_at = %s
        FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[]) AS o(campaign_id, lead_id, status, reason)
        WHERE m.campaign_id = o.campaign_id AND m.lead_id = o.lead_id AND m.status = 'requested'""",
                (now, outcomes["campaign_id"].to_list(), outcomes["lead_id"].to_list(), outcomes["status"].to_list(),
                 outcomes["reason"].to_list()))
    for (reason,), group in outcomes.filter(pl.col("status") == "refused").group_by("reason"):
        result.refused[str(reason)] = group.height


def _moved_on(enrollments: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """New enrollments as they stand after their first decision (if one was taken in this batch)."""
    col = pl.col
    moves = col("decision").is_in(["send", "skip"])
    return enrollments.select(
        "campaign_id", "broker_id", "lead_id", enrolled_at=pl.lit(now).dt.convert_time_zone("UTC"),
        next_step=pl.when(moves).then(col("step") + 1).otherwise(col("next_step")),
        next_due_at=pl.when(col("decision") == "stop").then(None).when(col("decision").is_not_null())
        .then(col("next_due_at_decided")).otherwise(col("next_due_at")),
        status=pl.when(col("decision") == "stop").then(pl.lit("stopped"))
        .when(moves & col("done")).then(pl.lit("done")).otherwise(pl.lit("active")),
        stopped_reason=pl.when(col("decision") == "stop").then(col("reason")),
    )


def _write_decisions(cur: psycopg2.extensions.cursor, decisions: pl.DataFrame, existing: pl.DataFrame,
                     now: datetime, result: TargetResult) -> list[tuple[bytes, bytes]]:
    """Write every decision in bulk (COPY, then set-based statements); the commands to produce.

    A send row is inserted once per (campaign, lead, step) — ``ON CONFLICT DO NOTHING`` — and only
    the rows inserted now become commands, so a batch written twice produces its commands once.
    ``existing``: the decisions about enrollments already in the table, which move on here.
    """
    cur.execute("""CREATE TEMP TABLE decisions (campaign_id bigint, broker_id bigint, broker_slug text, lead_id bigint,
                       step integer, action text, channel text, decision text, reason text, payload jsonb,
                       next_due_at timestamptz, done boolean) ON COMMIT DROP""")
    copy_frame(cur, "decisions", decisions)
    cur.execute("ANALYZE decisions")  # a scratch table has no statistics: without them the joins below go quadratic
    inserted: pl.DataFrame = read_frame(cur, """
        INSERT INTO leadflow.outbound_sends (broker_id, campaign_id, lead_id, step, action, channel, status, reason,
                                             payload, next_attempt_at, created_at, updated_at)
        SELECT broker_id, campaign_id, lead_id, step, action, channel,
               CASE WHEN decision = 'send' THEN 'pending' ELSE 'skipped' END, reason, payload,
               CASE WHEN decision = 'send' THEN %(now)s::timestamptz END, %(now)s, %(now)s
        FROM decisions WHERE decision <> 'defer'
        ON CONFLICT (campaign_id, lead_id, step) DO NOTHING
        RETURNING send_id, campaign_id, lead_id, step""", {"now": now},
        {"send_id": pl.Int64, "campaign_id": pl.Int64, "lead_id": pl.Int64, "step": pl.Int64})
    # Deferred: the same step, later. Stopped (opted out): the enrollment ends. Otherwise the lead moves
    # on — set, not incremented, so writing the same decision twice moves it once.
    cur.execute("""CREATE TEMP TABLE moves (campaign_id bigint, lead_id bigint, step integer, decision text,
                       reason text, next_due_at timestamptz, done boolean) ON COMMIT DROP""")
    copy_frame(cur, "moves", existing.select("campaign_id", "lead_id", "step", "decision", "reason", "next_due_at",
                                             "done"))
    cur.execute("ANALYZE moves")
    cur.execute("""
        UPDATE leadflow.campaign_enrollments e SET
            next_step = CASE WHEN d.decision IN ('send', 'skip') THEN d.step + 1 ELSE e.next_step END,
            next_due_at = CASE WHEN d.decision = 'stop' THEN NULL ELSE d.next_due_at END,
            status = CASE WHEN d.decision = 'stop' THEN 'stopped'
                          WHEN d.decision IN ('send', 'skip') AND d.done THEN 'done' ELSE e.status END,
            stopped_reason = CASE WHEN d.decision = 'stop' THEN d.reason ELSE e.stopped_reason END
        FROM moves d WHERE e.campaign_id = d.campaign_id AND e.lead_id = d.lead_id""")
    keys = ["campaign_id", "lead_id", "step"]
    written = decisions.join(inserted, on=keys, how="left")
    counts = written.group_by("decision", "reason", pl.col("send_id").is_not_null().alias("new")).len()
    for decision, reason, new, count in counts.iter_rows():
        if decision == "defer":
            result.deferred[reason] = result.deferred.get(reason, 0) + count
        elif not new:
            result.already_decided += count  # written by an earlier run of this batch: never twice
        elif decision == "send":
            result.sent += count
        elif decision == "skip":
            result.skipped[reason] = result.skipped.get(reason, 0) + count
        else:
            result.stopped += count
    sends = written.filter((pl.col("decision") == "send") & pl.col("send_id").is_not_null())
    return _commands(offer_visits(cur, sends, now, result), now)


def offer_visits(cur: psycopg2.extensions.cursor, sends: pl.DataFrame, now: datetime,
                 result: TargetResult) -> pl.DataFrame:
    """Each new visit send offers the lead the free slots of now (an offer tied to the send, source
    "campaign"), listed where the template says ``{{visit_options}}`` (or after its text) and the first named
    by ``{{visit_time}}``. A visit send nobody can take (no free slot over the horizon, or the broker's visiting
    rules unreadable) is skipped with the reason, and not sent. Other sends get the neutral words."""
    marked = pl.col("payload").str.contains(VISIT_TIME_MARK, literal=True) \
        | pl.col("payload").str.contains(VISIT_OPTIONS_MARK, literal=True) | (pl.col("action") == "visit")
    touched = sends.filter(marked)
    if touched.is_empty():
        return sends
    cur.execute("""SELECT b.broker_id, b.timezone, coalesce(s.agent ->> 'language', CASE b.country WHEN 'US' THEN
                              'en-US' ELSE 'es' END) FROM leadflow.brokers b
                   LEFT JOIN leadflow.broker_settings s USING (broker_id) WHERE b.broker_id = ANY(%s)""",
                (touched["broker_id"].unique().to_list(),))
    brokers = {int(b): (tz, Wording.of(language)) for b, tz, language in cur.fetchall()}
    payloads: dict[int, str] = {}
    dropped: list[int] = []
    for row in touched.iter_rows(named=True):
        payload = json.loads(row["payload"])
        timezone, wording = brokers[row["broker_id"]]
        options, first = "", _FALLBACK_VISIT_TIME
        if row["action"] == "visit":
            try:
                offer = appointments.make_offer(cur, row["broker_id"], row["lead_id"], now, source="campaign",
                                                channel=row["channel"], send_id=row["send_id"])
                reason = None if offer is not None else "nobody free to take a visit over the booking horizon"
            except (appointments.AppointmentError, RulesError) as exc:
                offer, reason = None, f"visits cannot be offered: {exc}"
            if offer is None:
                cur.execute("""UPDATE leadflow.outbound_sends SET status = 'skipped', reason = %s,
                                   next_attempt_at = NULL WHERE send_id = %s""", (reason, row["send_id"]))
                result.sent -= 1
                result.skipped[str(reason)] = result.skipped.get(str(reason), 0) + 1
                dropped.append(row["send_id"])
                continue
            options = texts.listing(list(enumerate(offer.slots)), timezone, wording)
            first = texts.when(offer.slots[0].start, timezone, wording)
            payload["visit"] = {**(payload.get("visit") or {}), "offer_id": offer.offer_id}
            if VISIT_OPTIONS_MARK not in row["payload"] and "text" in payload:
                payload["text"] = f"{payload['text']}\n{VISIT_OPTIONS_MARK}"
        marks = {VISIT_OPTIONS_MARK: options, VISIT_TIME_MARK: first}
        filled_payload = _fill(payload, marks)
        if isinstance(payload.get("template"), dict):
            # WhatsApp refuses line breaks in a template's parameters: the options on one line there.
            filled_payload["template"] = _fill(payload["template"], {**marks, VISIT_OPTIONS_MARK: "; ".join(
                options.splitlines())})
        filled = json.dumps(filled_payload, ensure_ascii=False)
        payloads[row["send_id"]] = filled
        cur.execute("UPDATE leadflow.outbound_sends SET payload = %s WHERE send_id = %s", (filled, row["send_id"]))
    if not payloads and not dropped:
        return sends
    ids = pl.Series("send_id", list(payloads), dtype=pl.Int64)
    replaced = pl.DataFrame({"send_id": ids, "_filled": pl.Series(list(payloads.values()), dtype=pl.String)})
    return (sends.filter(~pl.col("send_id").is_in(dropped)).join(replaced, on="send_id", how="left")
            .with_columns(payload=pl.coalesce("_filled", "payload")).drop("_filled"))


_FALLBACK_VISIT_TIME = "pronto"


def _fill(value: Any, marks: dict[str, str]) -> Any:
    """``value`` (a payload) with each mark replaced in every string it holds (text, template parameters)."""
    if isinstance(value, str):
        for mark, words in marks.items():
            value = value.replace(mark, words)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, marks) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, marks) for v in value]
    return value


def _commands(sends: pl.DataFrame, now: datetime) -> list[tuple[bytes, bytes]]:
    """(Kafka key, ``OutboundCommand`` JSON) for each new send, built over columns."""
    if sends.is_empty():
        return []
    event_ids = [event_id_for(b, "outbound", f"{c}/{s}", str(lead)) for b, c, s, lead in
                 sends.select("broker_id", "campaign_id", "step", "lead_id").iter_rows()]
    col, lit = pl.col, pl.lit
    text = lambda name: col(name).cast(pl.String)  # noqa: E731
    built = sends.with_columns(pl.Series("event_id", event_ids)).select(
        key=pl.concat_str(text("broker_id"), lit(":"), text("lead_id")),
        value=pl.concat_str(
            lit(f'{{"event_type":"outbound","schema_version":{SCHEMA_VERSION},"event_id":"'), col("event_id"),
            lit('","send_id":'), text("send_id"), lit(',"broker_id":'), text("broker_id"),
            lit(',"broker_slug":"'), col("broker_slug"), lit('","campaign_id":'), text("campaign_id"),
            lit(',"lead_id":'), text("lead_id"), lit(',"step":'), text("step"), lit(',"action":"'), col("action"),
            lit('","channel":"'), col("channel"), lit('","payload":'), col("payload"),
            lit(f',"created_at":"{now.isoformat()}"}}')))
    return list(zip([k.encode() for k in built["key"]], [v.encode() for v in built["value"]], strict=True))


def trigger_watermark(url: str) -> str | None:
    """How far the events that can enroll leads have come (stage moves, scores, leads applied by hand to
    manual campaigns), for brokers with an active campaign triggered by them; None when no such campaign is
    active."""
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("""
            WITH brokers AS (
                SELECT DISTINCT broker_id FROM leadflow.campaigns
                WHERE status = 'active' AND definition -> 'trigger' ->> 'type' IN ('stage_change', 'score_threshold')
            ), manual AS (
                SELECT campaign_id FROM leadflow.campaigns
                WHERE status = 'active' AND definition -> 'trigger' ->> 'type' = 'manual'
            )
            SELECT (SELECT count(*) FROM brokers), (SELECT count(*) FROM manual),
                   (SELECT coalesce(max(stage_event_id), 0) FROM leadflow.stage_events WHERE broker_id IN
                        (SELECT broker_id FROM brokers)),
                   (SELECT coalesce(extract(epoch FROM max(scored_at))::bigint, 0) FROM leadflow.lead_scores
                    WHERE broker_id IN (SELECT broker_id FROM brokers)),
                   (SELECT coalesce(max(extract(epoch FROM requested_at) * 1000000)::bigint, 0)
                    FROM leadflow.manual_enrollments WHERE campaign_id IN (SELECT campaign_id FROM manual))""")
        row = cur.fetchone()
    assert row is not None
    active, manual, stage_event, scored, requested = row
    if not active and not manual:
        return None
    # Requests are stamped when made, so a batch that decides them leaves this part as it was: no second run.
    return f"stages{stage_event}-scores{scored}" + (f"-manual{requested}" if manual else "")
