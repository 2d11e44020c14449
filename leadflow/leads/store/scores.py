"""Qualifications newer than their score → scores (0–100, temperature, breakdown, financing readiness).

Scoring is pure (``leadflow.qualification.scoring``); this module feeds it each broker's overrides
and the engagement a conversation shows (messages, reply times, days since the last message).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
    configs = {}
    for broker_id, overrides in broker_settings(cur, "scoring").items():
        known = {k: v for k, v in overrides.items() if k in ScoringConfig.__dataclass_fields__}
        converted: dict[str, Any] = {k: tuple(map(tuple, v)) if isinstance(v, list) else v for k, v in known.items()}
        configs[broker_id] = dataclasses.replace(ScoringConfig(), **converted)
    return configs


@dataclass
class ScoreResult:
    scored: int = 0
    by_temperature: dict[str, int] = field(default_factory=dict)
    histogram: dict[str, int] = field(default_factory=dict)  # score decile → leads


def score_qualified_leads(url: str, as_of: datetime | None = None,
                          config: ScoringConfig | None = None) -> ScoreResult:
    """Score every lead whose qualification is newer than its score; inactivity is measured at ``as_of``."""
    result = ScoreResult()
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        now = db_now(cur)
        as_of = as_of or now
        pending = """SELECT q.lead_id FROM leadflow.lead_qualifications q
                     LEFT JOIN leadflow.lead_scores s USING (lead_id)
                     WHERE s.lead_id IS NULL OR q.qualified_at > s.scored_at"""
        cur.execute(f"SELECT q.* FROM leadflow.lead_qualifications q WHERE q.lead_id IN ({pending})")
        names = [d[0] for d in cur.description or []]
        qualifications = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        if not qualifications:
            return result
        by_lead = {row["lead_id"]: row for row in conversations(cur, pending).iter_rows(named=True)}
        configs = scoring_configs(cur) if config is None else {}
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
        frame = pl.DataFrame(frame_rows, schema_overrides=QUALIFICATION_SCHEMA | ENGAGEMENT_SCHEMA)
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
