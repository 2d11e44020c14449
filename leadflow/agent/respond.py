"""The agent's entry point: the broker's policy for a conversation, always behind the guardrails."""

from __future__ import annotations

from leadflow.agent.decision import Conversation, Decision, Policy
from leadflow.agent.guardrails import Guarded
from leadflow.agent.offline import OfflinePolicy


def respond(conversation: Conversation, llm: Policy | None = None) -> Decision:
    """The bot's next decision. A broker set to "llm" gets ``llm`` when the caller has one, and the
    offline policy otherwise (flagged, so the fallback shows)."""
    wants_llm = conversation.config.policy == "llm"
    policy: Policy = llm if wants_llm and llm is not None else OfflinePolicy()
    decision = Guarded(policy).decide(conversation)
    return decision.with_reasons("llm_unavailable") if wants_llm and llm is None else decision
