"""Newly scored leads → pipeline stages and stage events; stalled flags; a move a campaign, visit or person makes.

Which moves the facts allow is pure (``leadflow.leads.stages``); this module records every stage
entered as a stage event stamped with the time of its evidence, and keeps ``lead_stages`` current.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg2.extensions

from leadflow.db.connection import transaction
from leadflow.db.copy import copy_rows
from leadflow.leads.stages import DEFAULT_PIPELINE, Pipeline, StageFacts, advance, stage_moment, visit_accepted
from leadflow.leads.store.reads import broker_settings, conversations, db_now
from leadflow.leads.store.scores import scoring_configs
from leadflow.qualification.scoring import ScoringConfig

# pg_advisory_xact_lock key of this step; a pipeline being saved takes it too, so no run moves a lead into a
# stage while the save checks which stages have leads.
LOCK = 7_240_004


@dataclass
class StageResult:
    evaluated: int = 0
    transitions: int = 0
    entered: dict[str, int] = field(default_factory=dict)
    stalled: int = 0


def update_stages(url: str, as_of: datetime | None = None) -> StageResult:
    """Advance every newly scored lead through its broker's pipeline; flag stalled leads.

    Stage events and ``lead_stages.entered_at`` carry the time of the evidence (the lead's newest
    message; see ``stages.stage_moment``), not the time of this run; ``evaluated_at`` is this run's.
    Stalled is measured at ``as_of`` (default: now).
    """
    result = StageResult()
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
        now = db_now(cur)
        as_of = as_of or now
        # Also due: leads evaluated before their broker's pipeline changed (migration 0025 stamps it), so new
        # stages and conditions apply to leads whose messages did not change.
        pending = """SELECT s.lead_id FROM leadflow.lead_scores s LEFT JOIN leadflow.lead_stages st USING (lead_id)
                     JOIN leadflow.leads l USING (lead_id)
                     LEFT JOIN leadflow.broker_settings bs ON bs.broker_id = l.broker_id
                     WHERE l.merged_into IS NULL AND (st.lead_id IS NULL OR s.scored_at > st.evaluated_at
                                                      OR st.evaluated_at < bs.pipeline_changed_at)"""
        cur.execute(f"""
            SELECT l.lead_id, l.broker_id, st.stage, coalesce(q.name, l.display_name), q.phone, q.email, l.phone_e164,
                   l.email,
                   (q.budget_min IS NOT NULL OR q.budget_max IS NOT NULL), cardinality(q.locations) > 0,
                   s.score, s.temperature, s.financing_ready, q.opted_out,
                   l.last_message_at, st.entered_at,
                   (SELECT max(e.sequence) FROM leadflow.stage_events e
                    WHERE e.lead_id = l.lead_id AND e.occurred_at = st.entered_at)
            FROM leadflow.leads l JOIN leadflow.lead_scores s USING (lead_id)
            JOIN leadflow.lead_qualifications q USING (lead_id)
            LEFT JOIN leadflow.lead_stages st USING (lead_id)
            WHERE l.lead_id IN ({pending})""")
        candidates = cur.fetchall()
        turns = {row["lead_id"]: row["turns"] for row in conversations(cur, pending).iter_rows(named=True)}
        pipelines = {b: Pipeline.from_settings(p) for b, p in broker_settings(cur, "pipeline").items()}
        warm = {b: c.warm for b, c in scoring_configs(cur).items()}
        events: list[tuple[Any, ...]] = []
        for (lead_id, broker_id, stage, name, phone, email, lead_phone, lead_email, has_budget, has_location,
             lead_score, temperature, financing_ready, opted_out, last_message_at, entered_at,
             last_sequence) in candidates:
            facts = StageFacts(has_name=name is not None, has_contact=any((phone, email, lead_phone, lead_email)),
                               has_budget=bool(has_budget), has_location=bool(has_location), score=lead_score,
                               temperature=temperature, financing_ready=financing_ready, opted_out=opted_out,
                               visit_accepted=visit_accepted(turns.get(lead_id) or []),
                               warm_threshold=warm.get(broker_id, ScoringConfig.warm))
            moves = advance(stage, facts, pipelines.get(broker_id, DEFAULT_PIPELINE))
            result.evaluated += 1
            moved_at, first_sequence = stage_moment(last_message_at or now, entered_at, last_sequence)
            for sequence, move in enumerate(moves, start=first_sequence):
                events.append((broker_id, lead_id, move.from_stage, move.to_stage, moved_at, move.reason, True,
                               sequence))
                result.entered[move.to_stage] = result.entered.get(move.to_stage, 0) + 1
            final = moves[-1].to_stage if moves else stage
            cur.execute("""
                INSERT INTO leadflow.lead_stages (lead_id, broker_id, stage, entered_at, evaluated_at)
                VALUES (%s, %s, %s, %s, %s)
                ON CONFLICT (lead_id) DO UPDATE SET evaluated_at = EXCLUDED.evaluated_at,
                    stage = EXCLUDED.stage,
                    entered_at = CASE WHEN leadflow.lead_stages.stage = EXCLUDED.stage
                                      THEN leadflow.lead_stages.entered_at ELSE EXCLUDED.entered_at END""",
                        (lead_id, broker_id, final, moved_at, now))
        copy_rows(cur, "leadflow.stage_events", ["broker_id", "lead_id", "from_stage", "to_stage", "occurred_at",
                                                  "reason", "automatic", "sequence"], events)
        result.transitions = len(events)
        result.stalled = flag_stalled(cur, pipelines, as_of)
    return result


def flag_stalled(cur: psycopg2.extensions.cursor, pipelines: dict[int, Pipeline], as_of: datetime) -> int:
    """A lead is stalled when neither a message nor a stage change happened for its stage's stall_days."""
    limits: list[tuple[int | None, str, int]] = [(None, s.code, s.stall_days) for s in DEFAULT_PIPELINE.stages
                                                 if s.stall_days]
    limits += [(b, s.code, s.stall_days) for b, p in pipelines.items() for s in p.stages if s.stall_days]
    cur.execute("""
        WITH limits AS (SELECT * FROM unnest(%s::bigint[], %s::text[], %s::int[]) AS u(broker_id, stage, days)),
        idle AS (
            SELECT st.lead_id,
                   extract(epoch FROM (%s::timestamptz - greatest(st.entered_at, l.last_message_at))) / 86400 AS days,
                   coalesce(own.days, def.days) AS limit_days
            FROM leadflow.lead_stages st JOIN leadflow.leads l USING (lead_id)
            LEFT JOIN limits own ON own.broker_id = st.broker_id AND own.stage = st.stage
            LEFT JOIN limits def ON def.broker_id IS NULL AND def.stage = st.stage
                                AND st.broker_id NOT IN (SELECT broker_id FROM limits WHERE broker_id IS NOT NULL)
        )
        UPDATE leadflow.lead_stages st SET
            stalled = idle.limit_days IS NOT NULL AND idle.days > idle.limit_days,
            stalled_days = CASE WHEN idle.limit_days IS NOT NULL AND idle.days > idle.limit_days
                                THEN floor(idle.days)::int END
        FROM idle WHERE idle.lead_id = st.lead_id""",
                ([b for b, _, _ in limits], [c for _, c, _ in limits], [d for _, _, d in limits], as_of))
    cur.execute("SELECT count(*) FROM leadflow.lead_stages WHERE stalled")
    row = cur.fetchone()
    return int(row[0]) if row else 0


def move_lead_forward(cur: psycopg2.extensions.cursor, broker_id: int, lead_id: int, target: str, pipeline: Pipeline,
                      now: datetime, reason: str, automatic: bool) -> str | None:
    """Put a lead in ``target`` if that is forward in its pipeline, with the stage event; returns the stage
    it left, or None when it was already there or further (stages never go back)."""
    cur.execute("""SELECT st.stage, st.entered_at,
                          (SELECT max(e.sequence) FROM leadflow.stage_events e
                           WHERE e.lead_id = st.lead_id AND e.occurred_at = st.entered_at)
                   FROM leadflow.lead_stages st WHERE st.lead_id = %s FOR UPDATE""", (lead_id,))
    stage, entered_at, last_sequence = cur.fetchone() or (None, None, None)
    if pipeline.position(target) <= pipeline.position(stage):
        return None
    moved_at, sequence = stage_moment(now, entered_at, last_sequence)
    cur.execute("""INSERT INTO leadflow.stage_events (broker_id, lead_id, from_stage, to_stage, occurred_at, reason,
                                                      automatic, sequence)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
                (broker_id, lead_id, stage, target, moved_at, reason, automatic, sequence))
    cur.execute("""INSERT INTO leadflow.lead_stages (lead_id, broker_id, stage, entered_at, evaluated_at)
                   VALUES (%s, %s, %s, %s, %s) ON CONFLICT (lead_id) DO UPDATE SET stage = EXCLUDED.stage,
                   entered_at = EXCLUDED.entered_at, stalled = false, stalled_days = NULL""",
                (lead_id, broker_id, target, moved_at, now))
    return stage or ""
