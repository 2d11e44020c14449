"""Guardrails around every policy: what the bot must do, and must never say, whoever writes its words.

``Guarded(policy)`` is itself a ``Policy``. Before the policy: consent (opt-out confirmed once, then
silence), stepping back once a person has the conversation, a reply rate limit, media the bot
cannot read, attacks on its instructions and requests for other leads' data (refused, and the
policy continues the task without seeing them), and what only a person may handle (asked for a
person, anger, legal and contract matters, credit decisions). After the policy: no reply promises
credit, leaks a prompt or someone else's contact, or proposes a purchase to a lead whose credit
record rules it out (that lead is told kindly what the broker can and cannot do, once).
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from datetime import timedelta

from leadflow.agent import knowledge, words
from leadflow.agent.decision import Conversation, Decision, Message, Policy, silence
from leadflow.agent.voice import Voice, conversation_seed, voice_of
from leadflow.campaigns.eligibility import broker_opt_out

_MEDIA = ("audio", "image", "video", "document")  # a person can open these; the bot cannot
_SENTENCES = re.compile(r"(?<=[.!?])\s+")


class Guarded:
    """A policy with the guardrails applied before and after it."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def decide(self, conversation: Conversation) -> Decision:
        return review(conversation, self._decide(conversation))

    def _decide(self, conversation: Conversation) -> Decision:
        last = conversation.last
        if last is None or last.role != "lead":
            return silence("nothing_to_answer")  # the lead's latest message already has its reply
        if not conversation.config.enabled:
            return silence("disabled")
        voice, seed = voice_of(conversation), conversation_seed(conversation)
        if opted_out(conversation):
            if any(m.action == "confirm_opt_out" for m in conversation.bot_messages):
                return silence("opted_out")
            return Decision("confirm_opt_out", voice.say("opt_out", seed), reasons=("opted_out",))
        stepped_back = _stepped_back(conversation, voice, seed)
        if stepped_back is not None:
            return stepped_back
        if _rate_limited(conversation):
            # Said once, so a lead who floods the chat knows it was read; then silence until the hour passes.
            if any("rate_limited" in m.reasons for m in _last_hour(conversation)):
                return silence("rate_limited")
            return Decision("answer", voice.say("rate_limited", seed), reasons=("rate_limited",))
        if last.type != "text" or emoji_only(last.text):
            answering_visit = (last.type == "text" and words.is_yes(last.text) and conversation.bot_messages
                               and conversation.bot_messages[-1].action == "propose_visit")
            if not answering_visit:
                return _media(conversation, voice, seed)
        text = words.folded(last.text)
        if words.INJECTION.search(text) or words.OTHER_LEADS.search(text):
            return self._refuse(conversation, seed, "injection" if words.INJECTION.search(text) else "other_lead_data")
        if words.HANDOFF_REQUEST.search(text):
            hours = conversation.config.facts.office_hours
            return Decision("handoff", voice.say("handoff", seed, hours=voice.say("hours", seed, office_hours=hours)
                                                 if hours else ""), reasons=("handoff_request",))
        if words.ANGER.search(text) or (words.COMPLAINT.search(text) and words.shouting(last.text)):
            return Decision("handoff", voice.say("handoff", seed, kind="anger"), reasons=("anger",))
        if words.CREDIT_DECISION.search(text):
            return Decision("handoff", voice.say("handoff", seed, kind="credit"), reasons=("out_of_scope:credit",))
        if words.LEGAL.search(text) or words.CONTRACT_DISPUTE.search(text):
            reason = "out_of_scope:legal" if words.LEGAL.search(text) else "out_of_scope:contract"
            return Decision("handoff", voice.say("handoff", seed, kind="legal"), reasons=(reason,))
        return self.policy.decide(conversation)

    def _refuse(self, conversation: Conversation, seed: str, reason: str) -> Decision:
        """A refusal, then the task goes on: the policy decides without ever seeing the message (whose
        language does not steer the reply either: refusal and question come in one voice)."""
        turns = (*conversation.turns[:-1], dataclasses.replace(conversation.turns[-1], text=""))
        blanked = dataclasses.replace(conversation, turns=turns)
        notice = voice_of(blanked).say("refuse.injection" if reason == "injection" else "refuse.data", seed)
        decision = self.policy.decide(dataclasses.replace(blanked, notice=notice))
        if decision.reply is None or decision.action not in ("ask", "answer", "propose_visit"):
            return Decision("answer", notice, reasons=(reason,))
        reply = decision.reply if notice in decision.reply else f"{notice} {decision.reply}"
        return Decision("answer", reply, decision.asks, (*decision.reasons, reason))


def review(conversation: Conversation, decision: Decision) -> Decision:
    """The checks on what the bot is about to say, whatever produced it."""
    if decision.reply is None:
        return decision
    voice, seed = voice_of(conversation), conversation_seed(conversation)
    reply = decision.reply
    if words.PROMPT_LEAK.search(words.folded(reply)) or _foreign_contacts(conversation, reply):
        return Decision("answer", voice.say("refuse.data", seed), reasons=(*decision.reasons, "leak_blocked"))
    if words.APPROVAL_CLAIM.search(words.folded(reply)):
        decision = dataclasses.replace(decision, reply=_without_claims(reply, voice.say("approval_fix", seed)),
                                       reasons=(*decision.reasons, "approval_claim"))
    if decision.action in ("ask", "answer", "propose_visit", "close"):
        decision = _credit_record(conversation, decision, voice, seed)
    return decision


def _without_claims(reply: str, fix: str) -> str:
    """The reply without its sentences that promise credit, and the honest line before its question."""
    kept = [s for s in _SENTENCES.split(reply) if s and not words.APPROVAL_CLAIM.search(words.folded(s))]
    if kept and kept[-1].endswith("?"):
        return " ".join([*kept[:-1], fix, kept[-1]])
    return " ".join([*kept, fix])


def _credit_record(conversation: Conversation, decision: Decision, voice: Voice, seed: str) -> Decision:
    """A lead in DICOM (or with arrears) who wants to buy hears once, kindly, what the broker can do;
    and is never offered a purchase visit the bank would not finance."""
    q = knowledge.known(conversation)
    if not knowledge.credit_blocked(q) or q.operation not in (None, "buy", "invest") or q.financing == "cash":
        return decision
    if not any("dicom_guardrail" in m.reasons for m in conversation.bot_messages):
        reply = f"{voice.say('dicom', seed)} {voice.say('ask.switch_to_rent', seed)}"
        return Decision("answer", reply, "switch_to_rent", (*decision.reasons, "dicom_guardrail"))
    if decision.action == "propose_visit":
        return Decision("handoff", voice.say("needs_person", seed), reasons=(*decision.reasons, "dicom_guardrail"))
    return decision


def opted_out(conversation: Conversation) -> bool:
    """Any lead message with the campaigns' opt-out words (the built-in ones and the broker's own), or a
    qualification that says so."""
    if conversation.qualification is not None and conversation.qualification.opted_out:
        return True
    own = broker_opt_out(conversation.opt_out_words)
    return any(m.type == "text" and (words.OPT_OUT.search(m.text) or (own is not None and own.search(m.text)))
               for m in conversation.lead_messages)


def emoji_only(text: str) -> bool:
    """Symbols and nothing to read: "😍😍", "👍🏻", "❤️"."""
    stripped = "".join(ch for ch in text if not ch.isspace())
    return bool(stripped) and not any(ch.isalnum() for ch in stripped) and any(
        unicodedata.category(ch) in ("So", "Sk") for ch in stripped)


def _media(conversation: Conversation, voice: Voice, seed: str) -> Decision:
    """Only text is read for now: say so once; a lead who insists with media gets a person."""
    lead = conversation.lead_messages
    last = lead[-1]
    kind = last.type if last.type != "text" else "emoji"
    previous = lead[-2] if len(lead) > 1 else None
    if kind in _MEDIA and previous is not None and previous.type in _MEDIA:
        return Decision("handoff", voice.say("handoff", seed, kind="media"), reasons=("media_insist",))
    previous_is_symbols = previous is not None and (previous.type == "sticker" or (
        previous.type == "text" and emoji_only(previous.text)))
    if kind in ("sticker", "emoji") and previous_is_symbols:
        return silence("media_repeat")  # a sticker back and forth is not a conversation to keep up
    return Decision("answer", voice.say("text_only", seed), reasons=(f"media:{kind}",))


def _stepped_back(conversation: Conversation, voice: Voice, seed: str) -> Decision | None:
    """Once a person writes, or the bot handed the lead over, the bot keeps out of the way; it only
    tells a lead who writes again after ``handoff_quiet_minutes`` of nobody answering that it is still
    being handled."""
    turns = conversation.turns
    if any(m.role == "person" for m in turns):
        return silence("person_in_charge")
    handed = [m for m in conversation.bot_messages if m.action in ("handoff", "close")]
    if not handed:
        return None
    if any("holding" in m.reasons for m in handed):
        return silence("handed_off")  # the holding message is sent once; then it is the person's turn
    since, now = conversation.bot_messages[-1].sent_at, turns[-1].sent_at
    quiet = timedelta(minutes=conversation.config.handoff_quiet_minutes)
    if since is not None and now is not None and now - since >= quiet:
        return Decision("handoff", voice.say("holding", seed), reasons=("holding",))
    return silence("handed_off")


def _last_hour(conversation: Conversation) -> list[Message]:
    """The bot's messages of the hour before the lead's latest one."""
    now = conversation.turns[-1].sent_at
    if now is None:
        return []
    return [m for m in conversation.bot_messages if m.sent_at is not None and now - m.sent_at < timedelta(hours=1)]


def _rate_limited(conversation: Conversation) -> bool:
    return len(_last_hour(conversation)) >= conversation.config.max_replies_per_hour


def _foreign_contacts(conversation: Conversation, reply: str) -> bool:
    """A phone or email in the reply that is neither the lead's own nor in the broker's configuration."""
    allowed = " ".join(m.text for m in conversation.lead_messages) + " " + conversation.config.model_dump_json()
    emails = {e.lower() for e in words.EMAIL.findall(allowed)}
    phones = {re.sub(r"\D", "", p)[-8:] for p in words.PHONE.findall(allowed)}
    if any(e.lower() not in emails for e in words.EMAIL.findall(reply)):
        return True
    # Spanish thousands ("1.200.000") are money, not phones; a phone is compared by its last 8 digits.
    return any("." not in p and len(re.sub(r"\D", "", p)) >= 8 and re.sub(r"\D", "", p)[-8:] not in phones
               for p in words.PHONE.findall(reply))
