"""Leads whose conversation changed → qualifications, with the LLM answers kept and their usage counted.

A lead is read again only when it changed since it was last qualified, and qualified again only
when its conversation hash changed. Brokers on the rules qualify in one vectorised pass; brokers on
an LLM conversation by conversation, their answers kept in ``llm_answers`` (never asked twice) and
their calls, fallbacks, tokens and cost added to ``llm_usage`` per day and model.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import psycopg2.extensions

from leadflow.db.connection import transaction
from leadflow.db.copy import copy_rows, pg_array
from leadflow.leads.store.reads import broker_settings, conversations, countries, db_now
from leadflow.qualification.answers import in_context
from leadflow.qualification.llm import LLMQualifier, Outcome, from_environment
from leadflow.qualification.rules import messages_frame, qualifications, qualify_frame
from leadflow.qualification.schema import QUALIFICATION_VERSION, Qualification
from leadflow.qualification.turns import Turn

_LOCK = 7_240_002  # pg_advisory_xact_lock key of this step

COLUMNS = [
    "lead_id", "broker_id", "qualifier", "schema_version", "conversation_hash", "name", "phone", "email", "operation",
    "property_type", "bedrooms_min", "budget_min", "budget_max", "budget_currency", "budget_period", "locations",
    "timeline_months", "financing", "down_payment", "monthly_income", "dicom_status", "arrears_amount", "opted_out",
    "commitment", "commitment_at", "commitment_when", "hesitation", "urgency_reason", "asking_price", "asking_currency",
    "summary", "qualified_at",
]


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


class Conversation(NamedTuple):
    """One lead's conversation to qualify, as of this run."""

    lead_id: int
    broker_id: int
    digest: str
    turns: list[Turn]


@dataclass
class Usage:
    """What one broker's LLM (provider and model) cost in this run; added to ``llm_usage``."""

    calls: int = 0
    fallbacks: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, outcome: Outcome) -> None:
        if outcome.fallback_reason:
            self.fallbacks += 1
        if outcome.usage is not None:
            self.calls += 1
            self.input_tokens += outcome.usage.input_tokens
            self.output_tokens += outcome.usage.output_tokens
            self.cost_usd += outcome.usage.cost_usd


def qualify_changed_leads(url: str, concurrency: int = 8) -> QualifyResult:
    """Qualify every lead whose conversation changed since it was last qualified.

    Each broker's qualifier is used (an LLM with the rules as fallback, or the rules); LLM calls run
    ``concurrency`` at a time, and their usage is added to ``leadflow.llm_usage``.
    """
    result = QualifyResult()
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        now = db_now(cur)
        changed = conversations(cur, """
            SELECT l.lead_id FROM leadflow.leads l LEFT JOIN leadflow.lead_qualifications q USING (lead_id)
            WHERE l.merged_into IS NULL AND (q.lead_id IS NULL OR l.changed_at > q.qualified_at)""")
        if changed.is_empty():
            return result
        country = countries(cur)
        zones = timezones(cur)
        cur.execute("SELECT lead_id, conversation_hash FROM leadflow.lead_qualifications WHERE lead_id = ANY(%s)",
                    (changed["lead_id"].to_list(),))
        known_hash = dict(cur.fetchall())
        qualifiers = _qualifiers(cur)
        work: list[Conversation] = []
        for lead_id, broker_id, turns, digest in changed.select(
                "lead_id", "broker_id", "turns", "conversation_hash").iter_rows():
            result.candidates += 1
            if known_hash.get(lead_id) == digest:
                result.unchanged += 1
                cur.execute("UPDATE leadflow.lead_qualifications SET qualified_at = %s WHERE lead_id = %s",
                            (now, lead_id))
                continue
            # A bare reply to the lead agent's question ("3" after "¿cuántos dormitorios?") is read as its answer.
            # Each turn in the broker's local time: "mañana 19 hrs" is the lead's tomorrow, at their 19:00.
            zone = zones.get(broker_id)
            work.append(Conversation(lead_id, broker_id, digest, in_context(
                [(t["role"], t["text"] or "", t.get("asks")) for t in turns], country.get(broker_id) == "US",
                [_local(t.get("sent_at"), zone) for t in turns])))

        # Brokers on the rules qualify in one vectorised pass; LLM brokers conversation by conversation.
        by_llm = [c for c in work if c.broker_id in qualifiers and qualifiers[c.broker_id].provider is not None]
        by_rules = [c for c in work if not (c.broker_id in qualifiers and qualifiers[c.broker_id].provider is not None)]
        keys = {c.lead_id: qualifiers[c.broker_id].cache_key(c.turns, country.get(c.broker_id)) for c in by_llm}
        _recall_answers(cur, qualifiers, by_llm, keys)
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            outcomes = list(pool.map(lambda c: qualifiers[c.broker_id].qualify(c.turns, country.get(c.broker_id)),
                                     by_llm))
        _keep_answers(cur, by_llm, outcomes, keys)
        result.remembered = sum(1 for outcome in outcomes if outcome.cached)
        if by_rules:
            facts = qualify_frame(messages_frame([(i, c.turns, country.get(c.broker_id))
                                                  for i, c in enumerate(by_rules)]))
            outcomes += [Outcome(q, "rules") for q in qualifications(facts)]

        rows = []
        usage: dict[tuple[int, str, str], Usage] = {}
        for conversation, outcome in zip(by_llm + by_rules, outcomes, strict=True):
            q = outcome.qualification
            result.qualified += 1
            if q.operation:
                result.by_operation[q.operation] = result.by_operation.get(q.operation, 0) + 1
            rows.append(_row(conversation, q, now, outcome.qualifier))
            provider = qualifiers[conversation.broker_id].provider if conversation.broker_id in qualifiers else None
            if provider is not None and (outcome.usage is not None or outcome.fallback_reason):
                usage.setdefault((conversation.broker_id, provider.name, provider.model), Usage()).add(outcome)
        result.llm_calls = sum(u.calls for u in usage.values())
        result.fallbacks = sum(u.fallbacks for u in usage.values())
        result.cost_usd = round(sum(u.cost_usd for u in usage.values()), 6)
        _add_usage(cur, usage, now)
        cur.execute("DELETE FROM leadflow.lead_qualifications WHERE lead_id = ANY(%s)", ([r[0] for r in rows],))
        copy_rows(cur, "leadflow.lead_qualifications", COLUMNS, rows)
    return result


def timezones(cur: psycopg2.extensions.cursor) -> dict[int, ZoneInfo]:
    cur.execute("SELECT broker_id, timezone FROM leadflow.brokers")
    return {int(broker_id): ZoneInfo(zone) for broker_id, zone in cur.fetchall() if zone}


def _local(moment: datetime | None, zone: ZoneInfo | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None or zone is None:
        return moment.replace(tzinfo=None)
    return moment.astimezone(zone).replace(tzinfo=None)


def _qualifiers(cur: psycopg2.extensions.cursor) -> dict[int, LLMQualifier]:
    """Each broker's qualifier: its LLM provider and prompt additions, the rules when none or no key."""
    return {broker_id: from_environment(str(settings.get("provider", "rules")), settings.get("model"),
                                        prompt_additions=str(settings.get("prompt_additions", "")))
            for broker_id, settings in broker_settings(cur, "llm").items()}


def _recall_answers(cur: psycopg2.extensions.cursor, qualifiers: dict[int, LLMQualifier],
                    work: list[Conversation], keys: dict[int, str]) -> None:
    """Give each broker's qualifier the answers it got before for these conversations."""
    wanted: dict[int, list[str]] = {}
    for conversation in work:
        wanted.setdefault(conversation.broker_id, []).append(keys[conversation.lead_id])
    for broker_id, broker_keys in wanted.items():
        cur.execute("SELECT cache_key, qualifier, qualification FROM leadflow.llm_answers "
                    "WHERE broker_id = %s AND cache_key = ANY(%s)", (broker_id, broker_keys))
        qualifiers[broker_id].remember({key: Outcome(Qualification.model_validate(answer), qualifier)
                                        for key, qualifier, answer in cur.fetchall()})


def _keep_answers(cur: psycopg2.extensions.cursor, work: list[Conversation], outcomes: list[Outcome],
                  keys: dict[int, str]) -> None:
    """Keep what the LLMs answered this run (not the rules' fallbacks: those are retried next time)."""
    for conversation, outcome in zip(work, outcomes, strict=False):
        if outcome.usage is not None and outcome.fallback_reason is None:
            cur.execute("""INSERT INTO leadflow.llm_answers (broker_id, cache_key, qualifier, qualification)
                           VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                        (conversation.broker_id, keys[conversation.lead_id], outcome.qualifier,
                         outcome.qualification.model_dump_json()))


def _add_usage(cur: psycopg2.extensions.cursor, usage: dict[tuple[int, str, str], Usage], now: datetime) -> None:
    for (broker_id, provider_name, model), u in usage.items():
        cur.execute("""
            INSERT INTO leadflow.llm_usage AS u (broker_id, day, provider, model, calls, fallbacks, input_tokens,
                                                 output_tokens, cost_usd)
            VALUES (%s, %s::date, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (broker_id, day, provider, model) DO UPDATE SET
                calls = u.calls + EXCLUDED.calls, fallbacks = u.fallbacks + EXCLUDED.fallbacks,
                input_tokens = u.input_tokens + EXCLUDED.input_tokens,
                output_tokens = u.output_tokens + EXCLUDED.output_tokens,
                cost_usd = u.cost_usd + EXCLUDED.cost_usd""",
                    (broker_id, now, provider_name, model, u.calls, u.fallbacks, u.input_tokens, u.output_tokens,
                     u.cost_usd))


def _row(conversation: Conversation, q: Qualification, now: datetime, qualifier: str) -> tuple[Any, ...]:
    d = q.model_dump()
    return (conversation.lead_id, conversation.broker_id, qualifier, QUALIFICATION_VERSION, conversation.digest,
            d["name"], d["phone"], d["email"], d["operation"], d["property_type"], d["bedrooms_min"],
            d["budget_min"], d["budget_max"], d["budget_currency"], d["budget_period"], pg_array(d["locations"]),
            d["timeline_months"], d["financing"], d["down_payment"], d["monthly_income"], d["dicom_status"],
            d["arrears_amount"], d["opted_out"], d["commitment"], d["commitment_at"], d["commitment_when"],
            d["hesitation"], d["urgency_reason"], d["asking_price"], d["asking_currency"], d["summary"], now)
