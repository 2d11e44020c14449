"""The agent's entry point: the broker's policy for a conversation, always behind the guardrails."""

from __future__ import annotations

import dataclasses

from leadflow.agent.decision import Conversation, Decision, Policy, VisitStep
from leadflow.agent.guardrails import Guarded
from leadflow.agent.offline import OfflinePolicy, visit_move
from leadflow.appointments.choice import Wants
from leadflow.appointments.dialog import Move


class WithVisits:
    """A policy (the LLM's) with visits booked by the same rules as the offline policy's: an answer about a
    visit (a slot, a time, a confirmation, a cancellation) is the offline policy's to read, and the LLM's
    "propose_visit" becomes a real offer of free slots (made by the stream), never times it made up."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def decide(self, conversation: Conversation) -> Decision:
        if visit_move(conversation) is not None:
            return OfflinePolicy().decide(conversation)
        decision = self.policy.decide(conversation)
        visits = conversation.visits
        if (decision.action == "propose_visit" and decision.visit is None and visits is not None
                and visits.offer is None and visits.appointment is None):
            return dataclasses.replace(decision, visit=VisitStep(Move(Wants())))
        if decision.action == "close" and visits is not None:
            # A booked lead may still write to cancel or move the visit: the bot does not step back.
            return dataclasses.replace(decision, action="answer")
        return decision


def respond(conversation: Conversation, llm: Policy | None = None) -> Decision:
    """The bot's next decision. A broker set to "llm" gets ``llm`` when the caller has one, and the
    offline policy otherwise (flagged, so the fallback shows)."""
    wants_llm = conversation.config.policy == "llm"
    policy: Policy = WithVisits(llm) if wants_llm and llm is not None else OfflinePolicy()
    decision = Guarded(policy).decide(conversation)
    return decision.with_reasons("llm_unavailable") if wants_llm and llm is None else decision
