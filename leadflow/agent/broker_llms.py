"""Each broker's LLM policy for the agent process, and what the calls cost, written to ``llm_usage``.

A broker whose agent policy is "llm" talks through the provider and model of its ``llm`` settings
(the same choice its qualification uses). One policy is built per broker and setting, so each
broker's calls, fallbacks and tokens are counted apart and added to ``leadflow.llm_usage`` per day.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg2.extensions

from leadflow.agent.decision import Policy
from leadflow.agent.llm import DEFAULT_DEADLINE_S, CallLog, FallbackCounts, WithFallback, llm_policy

log = logging.getLogger(__name__)


@dataclass
class _BrokerLLM:
    provider: str
    model: str | None
    policy: WithFallback | None
    calls: CallLog
    fallbacks: FallbackCounts


class BrokerLLMs:
    """``llms(broker_id, llm_settings)`` → the broker's policy, or None (no key, or "rules")."""

    def __init__(self, deadline_s: float = DEFAULT_DEADLINE_S) -> None:
        self.deadline_s = deadline_s
        self._lock = threading.Lock()
        self._brokers: dict[int, _BrokerLLM] = {}

    def __call__(self, broker_id: int, settings: dict[str, Any]) -> Policy | None:
        provider = str(settings.get("provider") or "rules")
        model = settings.get("model")
        with self._lock:
            known = self._brokers.get(broker_id)
            if known is None or (known.provider, known.model) != (provider, model):
                calls, fallbacks = CallLog(), FallbackCounts()
                try:
                    policy = llm_policy(provider, model, self.deadline_s, retries=0, counts=fallbacks, calls=calls)
                except ValueError as exc:
                    log.error("broker %s: %s; the agent answers offline", broker_id, exc)
                    policy = None
                known = self._brokers[broker_id] = _BrokerLLM(provider, model, policy, calls, fallbacks)
            return known.policy

    def record_usage(self, cur: psycopg2.extensions.cursor, now: datetime | None = None) -> int:
        """Add the calls made since the last time to ``llm_usage``; returns how many calls were recorded."""
        day = (now or datetime.now(UTC)).date()
        recorded = 0
        with self._lock:
            brokers = list(self._brokers.items())
        for broker_id, b in brokers:
            calls, fallbacks = b.calls.drain(), b.fallbacks.drain()
            fell_back = sum(fallbacks.values())
            if not calls and not fell_back:
                continue
            used = [c.usage for c in calls if c.usage is not None]
            model = next((c.model for c in calls), b.model or "default")
            cur.execute("""
                INSERT INTO leadflow.llm_usage AS u (broker_id, day, provider, model, calls, fallbacks, input_tokens,
                                                     output_tokens, cost_usd)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (broker_id, day, provider, model) DO UPDATE SET
                    calls = u.calls + EXCLUDED.calls, fallbacks = u.fallbacks + EXCLUDED.fallbacks,
                    input_tokens = u.input_tokens + EXCLUDED.input_tokens,
                    output_tokens = u.output_tokens + EXCLUDED.output_tokens,
                    cost_usd = u.cost_usd + EXCLUDED.cost_usd""",
                        (broker_id, day, f"agent:{b.provider}", model, len(used), fell_back,
                         sum(u.input_tokens for u in used), sum(u.output_tokens for u in used),
                         sum(u.cost_usd for u in used)))
            recorded += len(calls)
        return recorded
