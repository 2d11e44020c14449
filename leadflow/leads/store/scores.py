"""Qualifications newer than their score, or scored before their broker's scoring changed → scores (0–100,
temperature, breakdown, financing readiness).

Scoring is pure (``leadflow.qualification.scoring``); this module feeds it each broker's overrides
and the engagement a conversation shows (messages, reply times, days since the last message).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl
import psycopg2.extensions

from leadflow.db.connection import transaction
from leadflow.db.copy import copy_rows, pg_array
from leadflow.leads.conversations import median_reply_minutes
from leadflow.leads.store.reads import broker_settings, conversations, countries, db_now
from leadflow.qualification.schema import QUALIFICATION_SCHEMA
from leadflow.qualification.scoring import ENGAGEMENT_SCHEMA, ScoringConfig, breakdown, score_frame

_LOCK = 7_240_003  # pg_advisory_xact_lock key of this step


def scoring_configs(cur: psycopg2.extensions.cursor) -> dict[int, ScoringConfig]:
    """Each broker's scoring overrides (weights, thresholds) on top of the defaults."""
    return {broker_id: ScoringConfig.from_settings(overrides)
            for broker_id, overrides in broker_settings(cur, "scoring").items()}


@dataclass
class ScoreResult:
    scored: int = 0
    by_temperature: dict[str, int] = field(default_factory=dict)
    histogram: dict[str, int] = field(default_factory=dict)  # score decile → leads


def scoring_frame(cur: psycopg2.extensions.cursor, lead_filter: str, as_of: datetime) -> pl.DataFrame:
    """What ``score_frame`` reads for the leads ``lead_filter`` (SQL selecting lead ids) picks: each one's
    qualification, its conversation's engagement at ``as_of``, ``lead_id`` and ``broker_id``."""
    cur.execute(f"SELECT q.* FROM leadflow.lead_qualifications q WHERE q.lead_id IN ({lead_filter})")
    names = [d[0] for d in cur.description or []]
    qualifications = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    if not qualifications:
        return pl.DataFrame(schema={**QUALIFICATION_SCHEMA, **ENGAGEMENT_SCHEMA, "lead_id": pl.Int64,
                                    "broker_id": pl.Int64})
    by_lead = {row["lead_id"]: row for row in conversations(cur, lead_filter).iter_rows(named=True)}
    frame_rows = []
    for record in qualifications:
        conversation = by_lead.get(record["lead_id"], {})
        last = conversation.get("last_message_at")
        frame_rows.append({
            **{k: record[k] for k in QUALIFICATION_SCHEMA}, "lead_id": record["lead_id"],
            "broker_id": record["broker_id"], "lead_messages": int(conversation.get("lead_messages") or 0),
            "median_reply_minutes": median_reply_minutes(conversation.get("turns") or []),
            "days_since_last_message": (as_of - last).total_seconds() / 86400 if last else None,
        })
    return pl.DataFrame(frame_rows, schema_overrides=QUALIFICATION_SCHEMA | ENGAGEMENT_SCHEMA)


@dataclass(frozen=True)
class Preview:
    now: dict[str, int]  # temperature → leads, under the broker's scoring as saved
    proposed: dict[str, int]  # … under the candidate
    changed: int  # leads whose temperature differs between the two
    leads: int


def preview_temperatures(cur: psycopg2.extensions.cursor, broker_id: int, candidate: ScoringConfig) -> Preview:
    """How the broker's live, qualified leads would be spread over hot/warm/cold under ``candidate``, next to
    how the saved config spreads them, both scored now by ``score_frame`` as a run would. Writes nothing."""
    now = db_now(cur)
    frame = scoring_frame(cur, f"""SELECT q.lead_id FROM leadflow.lead_qualifications q
                                   JOIN leadflow.leads l USING (lead_id)
                                   WHERE q.broker_id = {int(broker_id)} AND l.merged_into IS NULL""", now)
    cur.execute("SELECT scoring FROM leadflow.broker_settings WHERE broker_id = %s", (broker_id,))
    row = cur.fetchone()
    saved = ScoringConfig.from_settings(row[0] if row else None)
    country = countries(cur).get(broker_id)
    temperatures = {"hot": 0, "warm": 0, "cold": 0}
    if frame.is_empty():
        return Preview(dict(temperatures), dict(temperatures), 0, 0)
    before = score_frame(frame, saved, country)["temperature"]
    after = score_frame(frame, candidate, country)["temperature"]
    return Preview({**temperatures, **dict(before.value_counts().iter_rows())},
                   {**temperatures, **dict(after.value_counts().iter_rows())},
                   int((before != after).sum()), frame.height)


def score_qualified_leads(url: str, as_of: datetime | None = None,
                          config: ScoringConfig | None = None) -> ScoreResult:
    """Score every lead whose qualification is newer than its score; inactivity is measured at ``as_of``."""
    result = ScoreResult()
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        now = db_now(cur)
        as_of = as_of or now
        # A lead is due when its qualification changed, or its broker's scoring did (settings saved since: the
        # trigger of migration 0025 stamps scoring_changed_at), so new weights reach every lead on the next run.
        pending = """SELECT q.lead_id FROM leadflow.lead_qualifications q
                     LEFT JOIN leadflow.lead_scores s USING (lead_id)
                     LEFT JOIN leadflow.broker_settings bs ON bs.broker_id = q.broker_id
                     WHERE s.lead_id IS NULL OR q.qualified_at > s.scored_at OR s.scored_at < bs.scoring_changed_at"""
        frame = scoring_frame(cur, pending, as_of)
        if frame.is_empty():
            return result
        configs = scoring_configs(cur) if config is None else {}
        country = countries(cur)
        rows = []
        for (broker_id,), part in frame.group_by("broker_id"):
            scored = score_frame(part, config or configs.get(int(broker_id)), country.get(broker_id))
            for row in scored.iter_rows(named=True):
                result.scored += 1
                result.by_temperature[row["temperature"]] = result.by_temperature.get(row["temperature"], 0) + 1
                decile = min(row["score"] // 10 * 10, 90)
                result.histogram[f"{decile}-{decile + 9}"] = result.histogram.get(f"{decile}-{decile + 9}", 0) + 1
                rows.append((row["lead_id"], row["broker_id"], row["score"], row["temperature"],
                             json.dumps(breakdown(row)), row["financing_ready"], pg_array(row["reasons"]), now))
        cur.execute("DELETE FROM leadflow.lead_scores WHERE lead_id = ANY(%s)", ([r[0] for r in rows],))
        copy_rows(cur, "leadflow.lead_scores", ["lead_id", "broker_id", "score", "temperature", "breakdown",
                                                 "financing_ready", "reasons", "scored_at"], rows)
    return result
