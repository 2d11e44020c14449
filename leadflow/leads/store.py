"""Leads in PostgreSQL: resolve new messages to leads, then qualify and score the leads that changed.

Each step runs in one transaction under an advisory lock, so steps never interleave with
themselves, and each is incremental:

- ``resolve_new_messages`` reads only messages not yet assigned to a lead;
- ``qualify_changed_leads`` reads only leads changed since their last qualification, and skips
  those whose conversation hash did not change (nothing is qualified twice);
- ``score_qualified_leads`` rescoring leads whose qualification is newer than their score.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl
import psycopg2.extensions

from leadflow.db.connection import copy_rows, transaction
from leadflow.leads.conversations import assemble, median_reply_minutes
from leadflow.leads.identity import LINK_SCHEMA, resolve
from leadflow.leads.stages import DEFAULT_PIPELINE, Pipeline, StageFacts, advance, stage_moment, visit_accepted
from leadflow.qualification.llm import LLMQualifier, Outcome, from_environment
from leadflow.qualification.rules import Turn, messages_frame, qualifications, qualify_frame
from leadflow.qualification.schema import QUALIFICATION_SCHEMA, QUALIFICATION_VERSION, Qualification
from leadflow.qualification.scoring import ENGAGEMENT_SCHEMA, ScoringConfig, breakdown, score_frame

LOCK_LEADS = 7_240_001  # pg_advisory_xact_lock keys: one per step
_LOCK_QUALIFY = 7_240_002
_LOCK_SCORE = 7_240_003
_LOCK_STAGES = 7_240_004


def _frame(cur: psycopg2.extensions.cursor, sql: str, params: tuple[Any, ...] = (),
           schema: dict[str, Any] | None = None) -> pl.DataFrame:
    cur.execute(sql, params)
    names = [d[0] for d in cur.description or []]
    rows = cur.fetchall()
    if schema is not None:
        return pl.DataFrame(rows, schema=schema, orient="row")
    return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)


def _pg_array(values: list[str] | None) -> str:
    items = ['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values or []]
    return "{" + ",".join(items) + "}"


# --- identity -----------------------------------------------------------------------------------

@dataclass
class ResolveResult:
    messages: int = 0
    new_leads: int = 0
    merges: int = 0
    touched_leads: int = 0


def resolve_new_messages(url: str, max_messages: int = 200_000) -> ResolveResult:
    """Assign messages without a lead to leads (creating and merging leads as identities say)."""
    result = ResolveResult()
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_LEADS,))
        messages = _frame(cur, """
            SELECT m.broker_id, m.message_id, m.channel, m.contact_channel_id, m.contact_phone, m.contact_email
            FROM leadflow.raw_messages m LEFT JOIN leadflow.message_leads ml USING (message_id)
            WHERE ml.message_id IS NULL ORDER BY m.message_id LIMIT %s""", (max_messages,),
            schema={"broker_id": pl.Int64, "message_id": pl.Int64, "channel": pl.String,
                    "contact_channel_id": pl.String, "contact_phone": pl.String, "contact_email": pl.String})
        stated = _stated_identities(cur)
        if messages.is_empty() and stated.is_empty():
            return result
        brokers = sorted(set(messages["broker_id"].to_list()) | set(stated["broker_id"].to_list()))
        links = _frame(cur, """
            SELECT broker_id, identity_kind, identity_value, lead_id, reason FROM leadflow.lead_identities
            WHERE broker_id = ANY(%s)""", (brokers,), schema=LINK_SCHEMA)
        messages = pl.concat([messages, stated.select(messages.columns)])
        cur.execute("SELECT last_value, is_called FROM leadflow.lead_id_seq")
        last_value, is_called = cur.fetchone() or (1, False)
        first_new = int(last_value) + 1 if is_called else int(last_value)
        apart = _frame(cur, "SELECT lead_a, lead_b FROM leadflow.lead_separations WHERE broker_id = ANY(%s)",
                       (brokers,), schema={"lead_a": pl.Int64, "lead_b": pl.Int64})
        resolution = resolve(messages, links, first_new, apart)
        if resolution.next_lead_id > first_new:
            cur.execute("SELECT setval('leadflow.lead_id_seq', %s)", (resolution.next_lead_id - 1,))

        new_links = resolution.links.join(links.select("broker_id", "identity_kind", "identity_value"),
                                          on=["broker_id", "identity_kind", "identity_value"], how="anti")
        new_links = new_links.with_columns(  # synthetic message ids are -lead_id: say what really happened
            pl.col("reason").str.replace(r"^first seen in message -(\d+) \(.*\)$", "stated by lead $1 in a message"))
        new_lead_ids = sorted(set(new_links["lead_id"].to_list()) - set(links["lead_id"].to_list()))
        broker_of = dict(new_links.select("lead_id", "broker_id").unique().iter_rows())
        copy_rows(cur, "leadflow.leads", ["lead_id", "broker_id"], [(i, broker_of[i]) for i in new_lead_ids])
        copy_rows(cur, "leadflow.lead_identities", list(LINK_SCHEMA),
                   list(new_links.select(list(LINK_SCHEMA)).iter_rows()))
        for broker_id, merged, into, reason in resolution.merges.iter_rows():
            cur.execute("""
                INSERT INTO leadflow.lead_merges (broker_id, merged_lead_id, into_lead_id, reason, moved_identities,
                                                  moved_message_ids)
                SELECT %s, %s, %s, %s,
                       coalesce((SELECT jsonb_agg(jsonb_build_array(identity_kind, identity_value))
                                 FROM leadflow.lead_identities WHERE lead_id = %s), '[]'::jsonb),
                       coalesce((SELECT array_agg(message_id) FROM leadflow.message_leads WHERE lead_id = %s), '{}')""",
                        (broker_id, merged, into, reason, merged, merged))
            cur.execute("UPDATE leadflow.lead_identities SET lead_id = %s WHERE lead_id = %s", (into, merged))
            cur.execute("UPDATE leadflow.message_leads SET lead_id = %s WHERE lead_id = %s", (into, merged))
            # The merged lead's own qualification and score no longer describe anyone; the kept lead is redone.
            cur.execute("DELETE FROM leadflow.lead_scores WHERE lead_id = %s", (merged,))
            cur.execute("DELETE FROM leadflow.lead_qualifications WHERE lead_id = %s", (merged,))
            cur.execute("UPDATE leadflow.leads SET merged_into = %s, message_count = 0, changed_at = now() "
                        "WHERE lead_id = %s", (into, merged))
        assigned = resolution.message_leads.filter(pl.col("message_id") > 0)
        copy_rows(cur, "leadflow.message_leads", ["message_id", "broker_id", "lead_id"],
                   list(assigned.select("message_id", "broker_id", "lead_id").iter_rows()))
        touched = sorted(set(assigned["lead_id"].to_list())
                         | set(resolution.merges["into_lead_id"].to_list()))
        refresh_leads(cur, touched)
        result = ResolveResult(assigned.height, len(new_lead_ids), resolution.merges.height, len(touched))
    return result


def refresh_leads(cur: psycopg2.extensions.cursor, lead_ids: list[int]) -> None:
    """Recompute what ``leads`` says about each lead (name, contacts, channels, counts) from its messages."""
    cur.execute("""
        UPDATE leadflow.leads l SET
            display_name = a.display_name, phone_e164 = a.phone, email = a.email, channels = a.channels,
            message_count = a.message_count, first_message_at = a.first_at, last_message_at = a.last_at,
            changed_at = now()
        FROM (
            SELECT ml.lead_id,
                   (array_agg(m.contact_name ORDER BY m.sent_at DESC)
                        FILTER (WHERE m.contact_name IS NOT NULL))[1] AS display_name,
                   (array_agg(m.contact_phone ORDER BY m.sent_at DESC)
                        FILTER (WHERE m.contact_phone IS NOT NULL))[1] AS phone,
                   (array_agg(m.contact_email ORDER BY m.sent_at DESC)
                        FILTER (WHERE m.contact_email IS NOT NULL))[1] AS email,
                   array_agg(DISTINCT m.channel ORDER BY m.channel) AS channels,
                   count(*) AS message_count, min(m.sent_at) AS first_at, max(m.sent_at) AS last_at
            FROM leadflow.message_leads ml JOIN leadflow.raw_messages m USING (message_id)
            WHERE ml.lead_id = ANY(%s)
            GROUP BY ml.lead_id
        ) a
        WHERE l.lead_id = a.lead_id""", (lead_ids,))


def _stated_identities(cur: psycopg2.extensions.cursor) -> pl.DataFrame:
    """Phones and emails leads wrote in their messages that are not identities yet, as synthetic messages.

    Each synthetic message (id = -lead_id) names one identity the lead already has and the stated
    phone/email, so resolution links them, and merges the lead with whoever already owns them.
    """
    return _frame(cur, """
        SELECT q.broker_id, -q.lead_id AS message_id, a.identity_kind AS channel,
               a.identity_value AS contact_channel_id,
               -- Only what is not already this lead's own: a phone that is another lead's is what merges them.
               CASE WHEN q.phone IS NOT NULL AND NOT EXISTS (
                        SELECT 1 FROM leadflow.lead_identities i WHERE i.lead_id = q.lead_id
                        AND i.identity_kind = 'phone' AND i.identity_value = q.phone) THEN q.phone END AS contact_phone,
               CASE WHEN q.email IS NOT NULL AND NOT EXISTS (
                        SELECT 1 FROM leadflow.lead_identities i WHERE i.lead_id = q.lead_id
                        AND i.identity_kind = 'email' AND i.identity_value = lower(q.email)) THEN lower(q.email)
               END AS contact_email
        FROM leadflow.lead_qualifications q JOIN leadflow.leads l USING (lead_id)
        CROSS JOIN LATERAL (SELECT identity_kind, identity_value FROM leadflow.lead_identities i
                            WHERE i.lead_id = q.lead_id ORDER BY linked_at, identity_kind LIMIT 1) a
        WHERE l.merged_into IS NULL""",
        schema={"broker_id": pl.Int64, "message_id": pl.Int64, "channel": pl.String,
                "contact_channel_id": pl.String, "contact_phone": pl.String, "contact_email": pl.String},
    ).filter(pl.col("contact_phone").is_not_null() | pl.col("contact_email").is_not_null())


# --- qualification ------------------------------------------------------------------------------

@dataclass
class QualifyResult:
    candidates: int = 0
    qualified: int = 0
    unchanged: int = 0
    llm_calls: int = 0
    fallbacks: int = 0
    remembered: int = 0  # LLM answers given in an earlier run for the same content, not asked again
    cost_usd: float = 0.0
    by_operation: dict[str, int] = field(default_factory=dict)


_QUALIFICATION_COLUMNS = [
    "lead_id", "broker_id", "qualifier", "schema_version", "conversation_hash", "name", "phone", "email", "operation",
    "property_type", "bedrooms_min", "budget_min", "budget_max", "budget_currency", "budget_period", "locations",
    "timeline_months", "financing", "down_payment", "monthly_income", "dicom_status", "arrears_amount", "opted_out",
    "summary", "qualified_at",
]


def _conversations(cur: psycopg2.extensions.cursor, lead_filter: str, params: tuple[Any, ...]) -> pl.DataFrame:
    messages = _frame(cur, f"""
        SELECT ml.broker_id, ml.lead_id, m.message_id, m.channel, m.direction, m.body, m.sent_at
        FROM leadflow.message_leads ml JOIN leadflow.raw_messages m USING (message_id)
        WHERE ml.lead_id IN ({lead_filter})""", params,
        schema={"broker_id": pl.Int64, "lead_id": pl.Int64, "message_id": pl.Int64, "channel": pl.String,
                "direction": pl.String, "body": pl.String, "sent_at": pl.Datetime("us", "UTC")})
    return assemble(messages) if not messages.is_empty() else messages


def _db_now(cur: psycopg2.extensions.cursor) -> datetime:
    # The database's clock, the one that stamps leads.changed_at: comparing the two stays exact.
    cur.execute("SELECT now()")
    row = cur.fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment


def _qualifiers(cur: psycopg2.extensions.cursor) -> dict[int, LLMQualifier]:
    """Each broker's qualifier: its LLM provider and prompt additions, the rules when none or no key."""
    qualifiers = {}
    for broker_id, settings in _settings(cur, "llm").items():
        qualifiers[broker_id] = from_environment(str(settings.get("provider", "rules")), settings.get("model"),
                                                 prompt_additions=str(settings.get("prompt_additions", "")))
    return qualifiers


def qualify_changed_leads(url: str, concurrency: int = 8) -> QualifyResult:
    """Qualify every lead whose conversation changed since it was last qualified.

    Each broker's qualifier is used (an LLM with the rules as fallback, or the rules); LLM calls run
    ``concurrency`` at a time, and their usage is added to ``leadflow.llm_usage``.
    """
    from concurrent.futures import ThreadPoolExecutor

    result = QualifyResult()
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_QUALIFY,))
        now = _db_now(cur)
        changed = """SELECT l.lead_id FROM leadflow.leads l LEFT JOIN leadflow.lead_qualifications q USING (lead_id)
                     WHERE l.merged_into IS NULL AND (q.lead_id IS NULL OR l.changed_at > q.qualified_at)"""
        conversations = _conversations(cur, changed, ())
        if conversations.is_empty():
            return result
        cur.execute("SELECT broker_id, country FROM leadflow.brokers")
        country = dict(cur.fetchall())
        cur.execute("SELECT lead_id, conversation_hash FROM leadflow.lead_qualifications WHERE lead_id = ANY(%s)",
                    (conversations["lead_id"].to_list(),))
        known_hash = dict(cur.fetchall())
        qualifiers = _qualifiers(cur)
        work = []
        for lead_id, broker_id, turns, digest in conversations.select(
                "lead_id", "broker_id", "turns", "conversation_hash").iter_rows():
            result.candidates += 1
            if known_hash.get(lead_id) == digest:
                result.unchanged += 1
                cur.execute("UPDATE leadflow.lead_qualifications SET qualified_at = %s WHERE lead_id = %s",
                            (now, lead_id))
                continue
            work.append((lead_id, broker_id, digest, [Turn(t["role"], t["text"] or "") for t in turns]))

        def run(item: tuple[int, int, str, list[Turn]]) -> Outcome:
            return qualifiers[item[1]].qualify(item[3], country.get(item[1]))

        # Brokers on the rules qualify in one vectorised pass; LLM brokers conversation by conversation.
        by_llm = [item for item in work if item[1] in qualifiers and qualifiers[item[1]].provider is not None]
        by_rules = [item for item in work if not (item[1] in qualifiers and qualifiers[item[1]].provider is not None)]
        keys = {item[0]: qualifiers[item[1]].cache_key(item[3], country.get(item[1])) for item in by_llm}
        _recall_answers(cur, qualifiers, by_llm, keys)
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            outcomes = list(pool.map(run, by_llm))
        _keep_answers(cur, by_llm, outcomes, keys)
        result.remembered = sum(1 for outcome in outcomes if outcome.cached)
        if by_rules:
            frame = messages_frame([(i, item[3], country.get(item[1])) for i, item in enumerate(by_rules)])
            facts = qualify_frame(frame)
            outcomes += [Outcome(q, "rules") for q in qualifications(facts)]
        work = by_llm + by_rules
        rows = []
        usage: dict[tuple[int, str, str], list[float]] = {}
        for (lead_id, broker_id, digest, _turns), outcome in zip(work, outcomes, strict=True):
            q = outcome.qualification
            result.qualified += 1
            if q.operation:
                result.by_operation[q.operation] = result.by_operation.get(q.operation, 0) + 1
            rows.append(_qualification_row(lead_id, broker_id, digest, q, now, outcome.qualifier))
            if outcome.usage is not None or (outcome.fallback_reason and outcome.qualifier == "rules" \
                    and broker_id in qualifiers and qualifiers[broker_id].provider is not None):
                provider = qualifiers[broker_id].provider
                assert provider is not None
                totals = usage.setdefault((broker_id, provider.name, provider.model), [0, 0, 0, 0, 0.0])
                totals[0] += 1 if outcome.usage is not None else 0
                totals[1] += 1 if outcome.fallback_reason else 0
                if outcome.usage is not None:
                    totals[2] += outcome.usage.input_tokens
                    totals[3] += outcome.usage.output_tokens
                    totals[4] += outcome.usage.cost_usd
        result.llm_calls = int(sum(t[0] for t in usage.values()))
        result.fallbacks = int(sum(t[1] for t in usage.values()))
        result.cost_usd = round(float(sum(t[4] for t in usage.values())), 6)
        for (broker_id, provider_name, model), (calls, fallbacks, tokens_in, tokens_out, cost) in usage.items():
            cur.execute("""
                INSERT INTO leadflow.llm_usage AS u (broker_id, day, provider, model, calls, fallbacks, input_tokens,
                                                     output_tokens, cost_usd)
                VALUES (%s, %s::date, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (broker_id, day, provider, model) DO UPDATE SET
                    calls = u.calls + EXCLUDED.calls, fallbacks = u.fallbacks + EXCLUDED.fallbacks,
                    input_tokens = u.input_tokens + EXCLUDED.input_tokens,
                    output_tokens = u.output_tokens + EXCLUDED.output_tokens,
                    cost_usd = u.cost_usd + EXCLUDED.cost_usd""",
                        (broker_id, now, provider_name, model, calls, fallbacks, tokens_in, tokens_out, cost))
        cur.execute("DELETE FROM leadflow.lead_qualifications WHERE lead_id = ANY(%s)", ([r[0] for r in rows],))
        copy_rows(cur, "leadflow.lead_qualifications", _QUALIFICATION_COLUMNS, rows)
    return result


def _recall_answers(cur: psycopg2.extensions.cursor, qualifiers: dict[int, LLMQualifier],
                    work: list[tuple[int, int, str, list[Turn]]], keys: dict[int, str]) -> None:
    """Give each broker's qualifier the answers it got before for these conversations."""
    wanted: dict[int, list[str]] = {}
    for lead_id, broker_id, _digest, _turns in work:
        wanted.setdefault(broker_id, []).append(keys[lead_id])
    for broker_id, broker_keys in wanted.items():
        cur.execute("SELECT cache_key, qualifier, qualification FROM leadflow.llm_answers "
                    "WHERE broker_id = %s AND cache_key = ANY(%s)", (broker_id, broker_keys))
        qualifiers[broker_id].remember({key: Outcome(Qualification.model_validate(answer), qualifier)
                                        for key, qualifier, answer in cur.fetchall()})


def _keep_answers(cur: psycopg2.extensions.cursor, work: list[tuple[int, int, str, list[Turn]]],
                  outcomes: list[Outcome], keys: dict[int, str]) -> None:
    """Keep what the LLMs answered this run (not the rules' fallbacks: those are retried next time)."""
    for (lead_id, broker_id, _digest, _turns), outcome in zip(work, outcomes, strict=False):
        if outcome.usage is not None and outcome.fallback_reason is None:
            cur.execute("""INSERT INTO leadflow.llm_answers (broker_id, cache_key, qualifier, qualification)
                           VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                        (broker_id, keys[lead_id], outcome.qualifier, outcome.qualification.model_dump_json()))


def _qualification_row(lead_id: int, broker_id: int, digest: str, q: Qualification, now: datetime,
                       qualifier: str) -> tuple[Any, ...]:
    d = q.model_dump()
    return (lead_id, broker_id, qualifier, QUALIFICATION_VERSION, digest, d["name"], d["phone"], d["email"],
            d["operation"], d["property_type"], d["bedrooms_min"], d["budget_min"], d["budget_max"],
            d["budget_currency"], d["budget_period"], _pg_array(d["locations"]), d["timeline_months"], d["financing"],
            d["down_payment"], d["monthly_income"], d["dicom_status"], d["arrears_amount"], d["opted_out"],
            d["summary"], now)


# --- scoring ------------------------------------------------------------------------------------

def _settings(cur: psycopg2.extensions.cursor, column: str) -> dict[int, dict[str, Any]]:
    cur.execute(f"SELECT broker_id, {column} FROM leadflow.broker_settings")
    return {int(broker_id): value for broker_id, value in cur.fetchall() if value}


def _scoring_configs(cur: psycopg2.extensions.cursor) -> dict[int, ScoringConfig]:
    """Each broker's scoring overrides (weights, thresholds) on top of the defaults."""
    configs = {}
    for broker_id, overrides in _settings(cur, "scoring").items():
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
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_SCORE,))
        now = _db_now(cur)
        as_of = as_of or now
        pending = """SELECT q.lead_id FROM leadflow.lead_qualifications q
                     LEFT JOIN leadflow.lead_scores s USING (lead_id)
                     WHERE s.lead_id IS NULL OR q.qualified_at > s.scored_at"""
        cur.execute(f"SELECT q.* FROM leadflow.lead_qualifications q WHERE q.lead_id IN ({pending})")
        names = [d[0] for d in cur.description or []]
        qualifications = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        if not qualifications:
            return result
        conversations = {row["lead_id"]: row for row in _conversations(cur, pending, ()).iter_rows(named=True)}
        configs = _scoring_configs(cur) if config is None else {}
        frame_rows = []
        for record in qualifications:
            conversation = conversations.get(record["lead_id"], {})
            last = conversation.get("last_message_at")
            frame_rows.append({
                **{k: record[k] for k in QUALIFICATION_SCHEMA}, "lead_id": record["lead_id"],
                "broker_id": record["broker_id"], "lead_messages": int(conversation.get("lead_messages") or 0),
                "median_reply_minutes": median_reply_minutes(conversation.get("turns") or []),
                "days_since_last_message": (as_of - last).total_seconds() / 86400 if last else None,
            })
        frame = pl.DataFrame(frame_rows, schema_overrides=QUALIFICATION_SCHEMA | ENGAGEMENT_SCHEMA)
        cur.execute("SELECT broker_id, country FROM leadflow.brokers")
        countries = dict(cur.fetchall())
        rows = []
        for (broker_id,), part in frame.group_by("broker_id"):
            scored = score_frame(part, config or configs.get(int(broker_id)), countries.get(broker_id))
            for row in scored.iter_rows(named=True):
                result.scored += 1
                result.by_temperature[row["temperature"]] = result.by_temperature.get(row["temperature"], 0) + 1
                decile = min(row["score"] // 10 * 10, 90)
                result.histogram[f"{decile}-{decile + 9}"] = result.histogram.get(f"{decile}-{decile + 9}", 0) + 1
                rows.append((row["lead_id"], row["broker_id"], row["score"], row["temperature"],
                             json.dumps(breakdown(row)), row["financing_ready"], _pg_array(row["reasons"]), now))
        cur.execute("DELETE FROM leadflow.lead_scores WHERE lead_id = ANY(%s)", ([r[0] for r in rows],))
        copy_rows(cur, "leadflow.lead_scores", ["lead_id", "broker_id", "score", "temperature", "breakdown",
                                                 "financing_ready", "reasons", "scored_at"], rows)
    return result


# --- stages -------------------------------------------------------------------------------------

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
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_STAGES,))
        now = _db_now(cur)
        as_of = as_of or now
        pending = """SELECT s.lead_id FROM leadflow.lead_scores s LEFT JOIN leadflow.lead_stages st USING (lead_id)
                     JOIN leadflow.leads l USING (lead_id)
                     WHERE l.merged_into IS NULL AND (st.lead_id IS NULL OR s.scored_at > st.evaluated_at)"""
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
        turns = {row["lead_id"]: row["turns"] for row in _conversations(cur, pending, ()).iter_rows(named=True)}
        pipelines = {b: Pipeline.from_settings(p) for b, p in _settings(cur, "pipeline").items()}
        warm = {b: c.warm for b, c in _scoring_configs(cur).items()}
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
        result.stalled = _flag_stalled(cur, pipelines, as_of)
    return result


def _flag_stalled(cur: psycopg2.extensions.cursor, pipelines: dict[int, Pipeline], as_of: datetime) -> int:
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
