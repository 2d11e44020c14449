"""The offline policy: slot filling on top of the rules qualifier, no model, no network.

Each turn it reads what the lead has said (``knowledge.known``), acknowledges a new or corrected
fact, answers questions about the broker from its configured facts, and then does one thing: ask
the next missing fact, propose a visit once the lead is ready, or, after a yes to the visit, take
the name and contact and close. A question is asked once: answered, it is known; left unanswered,
the bot moves on rather than nag.
"""

from __future__ import annotations

import dataclasses

from leadflow.agent import knowledge, words
from leadflow.agent.decision import Conversation, Decision, Slot, VisitStep
from leadflow.agent.voice import Voice, conversation_seed, describe, voice_of
from leadflow.appointments import texts as visit_texts
from leadflow.appointments.choice import Cancels, Chose, Reschedules, Unrelated, Wants, parse
from leadflow.appointments.dialog import Move
from leadflow.leads.stages import accepts_visit
from leadflow.qualification.schema import Qualification

# The order a person would ask in: what and where first, then money and time, who last.
ORDER: tuple[Slot, ...] = ("operation", "location", "property_type", "bedrooms", "budget", "timeline", "financing",
                           "dicom", "name", "contact")
# Channels that come with the lead's phone number: the bot does not ask for a contact there.
PHONE_CHANNELS = frozenset({"whatsapp", "vapi", "bland", "phone", "sms"})
_BUYING = ("buy", "invest")
# What to show before a visit is worth proposing, and what a booked visit needs.
_SHAPE: tuple[Slot, ...] = ("property_type", "bedrooms")
_BOOKING: tuple[Slot, ...] = ("name", "contact")
# Facts whose change the bot acknowledges, in the order it names them.
_ACKNOWLEDGED = ("operation", "location", "property_type", "bedrooms", "budget", "timeline", "financing", "name")
_NOTHING = Qualification().model_dump(exclude={"summary"})


def applies(slot: Slot, q: Qualification, conversation: Conversation) -> bool:
    if slot == "bedrooms":
        return q.property_type in (None, "apartment", "house")
    if slot == "financing":
        return q.operation in _BUYING
    if slot == "dicom":  # only a lead who needs credit is asked about their credit record
        return q.operation in _BUYING and q.financing in ("mortgage_needed", "subsidy")
    if slot == "contact":
        return (conversation.channel or "").lower() not in PHONE_CHANNELS
    return True


def is_known(slot: Slot, q: Qualification) -> bool:
    values = {
        "operation": q.operation, "location": q.locations or None, "property_type": q.property_type,
        "bedrooms": q.bedrooms_min, "budget": q.budget_max if q.budget_max is not None else q.budget_min,
        "timeline": q.timeline_months, "financing": q.financing, "dicom": q.dicom_status, "name": q.name,
        "contact": q.phone or q.email,
    }
    return values.get(slot) is not None


def financing_ok(q: Qualification) -> bool:
    """Able to pay: cash, a bank already on board, a subsidy, or a mortgage to ask for with a clean record."""
    if knowledge.credit_blocked(q):
        return q.financing == "cash"
    return q.financing in ("cash", "mortgage_preapproved", "subsidy") or (
        q.financing == "mortgage_needed" and q.dicom_status == "clean")


def ready(q: Qualification) -> bool:
    """Ready for a visit: what and where, and how much with the means to pay it (renting needs no credit);
    a seller is ready to have the property valued once it is known what and where it is."""
    if q.opted_out or q.operation is None or not q.locations:
        return False
    if q.operation == "sell":
        return q.property_type is not None
    if q.budget_max is None and q.budget_min is None:
        return False
    return q.operation == "rent" or financing_ok(q)


def next_slot(q: Qualification, conversation: Conversation) -> Slot | None:
    asked = knowledge.asked(conversation)
    return next((s for s in ORDER if applies(s, q, conversation) and not is_known(s, q) and s not in asked), None)


def visit_state(conversation: Conversation) -> str:
    """"none", "proposed", "declined" or "accepted": how the lead answered the visit proposal, if any.

    A yes (or a thumbs-up) right after the proposal accepts it; so does any day or time given right
    after the bot asked for one.
    """
    state, pending = "none", None
    for message in conversation.turns:
        if message.role == "bot":
            if message.action == "propose_visit" and state != "accepted":
                state, pending = "proposed", "proposal"
            else:
                pending = "time" if message.asks == "visit_time" else None
        elif message.role == "lead" and message.text.strip() and pending:
            if pending == "time":
                state = "accepted"
            elif words.DECLINE.search(words.folded(message.text)):
                state = "declined"
            elif accepts_visit(message.text) or words.is_yes(message.text):
                state = "accepted"
            pending = None
    return state


def _since_bot(conversation: Conversation) -> str:
    """What the lead wrote since the bot's last message (a burst: "perfecto" + "el martes a las 5")."""
    said: list[str] = []
    for message in reversed(conversation.turns):
        if message.role != "lead":
            break
        if message.type == "text" and message.text.strip():
            said.append(message.text.strip())
    return " ".join(reversed(said))


def visit_move(conversation: Conversation) -> Move | None:
    """The visit write the lead's latest words ask for: a slot of the open offer, another time, a yes to the
    proposal, a confirmation, cancellation or move of the coming visit. None: nothing about a visit, or a
    conversation whose caller does not know the lead's visits."""
    visits = conversation.visits
    last = conversation.last
    if visits is None or last is None or last.role != "lead":
        return None
    offer, appointment = visits.offer, visits.appointment
    bot = conversation.bot_messages[-1] if conversation.bot_messages else None
    proposed = bot is not None and (bot.action == "propose_visit" or bot.asks == "visit_time")
    if offer is None and appointment is None and not proposed:
        return None
    text = _since_bot(conversation)
    if not text:
        return None
    choice = parse(text, slots=offer.slots if offer is not None else (),
                   appointment_start=appointment.starts_at if appointment is not None else None,
                   now=visits.now, timezone=visits.timezone, language=conversation.config.language)
    if isinstance(choice, Unrelated):
        return None
    return Move(choice, offer.offer_id if offer is not None else None,
                appointment.appointment_id if appointment is not None else None)


class OfflinePolicy:
    def decide(self, conversation: Conversation) -> Decision:
        voice, seed = voice_of(conversation), conversation_seed(conversation)
        q = knowledge.known(conversation)
        last = conversation.last
        text = last.text if last is not None and last.role == "lead" and last.type == "text" else ""
        parts: list[str] = []
        if not conversation.bot_messages:
            persona = conversation.config.persona_name
            parts.append(voice.say("greeting", seed, persona=persona) if persona
                         else voice.say("greeting", seed, kind="anonymous"))
        if conversation.notice:
            parts.append(conversation.notice)
        step = visit_move(conversation)
        acknowledgement, reasons = self._acknowledge(conversation, q, voice, seed, text)
        if step is not None:
            # An answer about the visit is not a fact to thank for ("no voy a poder" read as a name).
            acknowledgement = None
        answers, answer_reasons = self._answer_facts(conversation, voice, seed, text,
                                                     learned=bool(reasons) or acknowledgement is not None
                                                     or step is not None)
        parts += ([acknowledgement] if acknowledgement else []) + answers
        move = self._visit(conversation, q, voice, seed, step) if step is not None \
            else self._next_move(conversation, q, voice, seed)
        reply = " ".join([*parts, move.reply or ""]).strip()
        action = "answer" if answers and move.action == "ask" else move.action
        # The stream writes the visit's outcome after what was said before it (greeting, acknowledgement, answers).
        visit = dataclasses.replace(move.visit, preface=" ".join(parts)) if move.visit is not None else None
        return Decision(action, reply, move.asks, (*reasons, *answer_reasons, *move.reasons), visit)

    def _visit(self, conversation: Conversation, q: Qualification, voice: Voice, seed: str, step: Move) -> Decision:
        """A visit write for the stream to make; the reply here is what is said if it cannot be made."""
        offers = isinstance(step.choice, Wants | Reschedules | Cancels)
        follow_up, asks = None, None
        if isinstance(step.choice, Chose):
            asked = knowledge.asked(conversation)
            wanted = next((w for w in _BOOKING if applies(w, q, conversation) and not is_known(w, q)
                           and w not in asked), None)
            if wanted is not None:
                follow_up, asks = voice.say(f"ask.{wanted}", seed), wanted
        fallback = voice.say("close", seed, name="")
        return Decision("propose_visit" if offers else "answer", fallback,
                        reasons=(f"visit:{type(step.choice).__name__.lower()}",),
                        visit=VisitStep(step, follow_up=follow_up, follow_up_asks=asks))

    def _acknowledge(self, conversation: Conversation, q: Qualification, voice: Voice, seed: str,
                     text: str) -> tuple[str | None, tuple[str, ...]]:
        """A corrected fact is named back ("¿Mejor en Providencia? Anotado."); new facts get a short thanks."""
        if not text:
            return None, ()
        if not conversation.bot_messages:  # the greeting comes first; what the lead said shows in the question
            return None, (("learned",) if q.model_dump(exclude={"summary"}) != _NOTHING else ())
        before = knowledge.known_before(conversation)
        for field in _ACKNOWLEDGED:
            old, new = describe(field, before, voice), describe(field, q, voice)
            if old is not None and new is not None and old != new:
                key = "correction" if words.CORRECTION.search(words.folded(text)) else "noted"
                return voice.say(key, seed, value=new), (f"correction:{field}",)
        if before.model_dump(exclude={"summary"}) != q.model_dump(exclude={"summary"}):
            return voice.say("got_it", seed), ("learned",)
        return None, ()

    def _answer_facts(self, conversation: Conversation, voice: Voice, seed: str, text: str,
                      learned: bool) -> tuple[list[str], tuple[str, ...]]:
        """The broker's facts the lead asked about, stated as configured; what is not configured is
        promised to be checked with a person, never made up."""
        folded = words.folded(text)
        facts = conversation.config.facts
        answers: list[str] = []
        reasons: list[str] = []
        unknown = False
        for name, pattern in words.FACT_QUESTIONS.items():
            if not pattern.search(folded):
                continue
            fact: str | None = getattr(facts, name)
            if fact:
                answers.append(voice.say("fact", seed, kind=name, fact=fact.rstrip(".")))
                reasons.append(f"fact:{name}")
            else:
                unknown = True
                reasons.append(f"fact_missing:{name}")
        if (not reasons and "?" in text and not learned and len(folded.split()) >= 3
                and not words.HELP_REQUEST.search(folded)):
            unknown = True
            reasons.append("unanswered_question")
        if unknown:
            answers.append(voice.say("fact_unknown", seed))
        return answers, tuple(reasons)

    def _next_move(self, conversation: Conversation, q: Qualification, voice: Voice, seed: str) -> Decision:
        kind = "sell" if q.operation == "sell" else "rent" if q.operation == "rent" else None
        if conversation.visits is not None:
            booked = self._with_visits(conversation, q, voice, seed, kind)
            if booked is not None:
                return booked
        state = visit_state(conversation)
        asked = knowledge.asked(conversation)
        if state == "accepted":
            for wanted in _BOOKING:
                if applies(wanted, q, conversation) and not is_known(wanted, q) and wanted not in asked:
                    return Decision("ask", voice.say(f"ask.{wanted}", seed), wanted)
            name = f", {q.name.split()[0]}" if q.name else ""
            return Decision("close", voice.say("close", seed, name=name), reasons=("visit_accepted",))
        if state == "declined" and "visit_time" not in asked:
            return Decision("ask", voice.say("ask.visit_time", seed), "visit_time", ("visit_declined",))
        shaped = all(is_known(s, q) or s in asked or not applies(s, q, conversation) for s in _SHAPE)
        if state == "none" and ready(q) and shaped:
            return Decision("propose_visit", self._proposal(conversation, voice, seed, kind), reasons=("ready",))
        slot = next_slot(q, conversation)
        if slot is not None:
            return Decision("ask", voice.say(f"ask.{slot}", seed, kind=kind), slot)
        # Nothing left the bot can ask and no visit to book: a person takes it from here.
        return Decision("handoff", voice.say("needs_person", seed), reasons=("needs_person",))

    def _with_visits(self, conversation: Conversation, q: Qualification, voice: Voice, seed: str,
                     kind: str | None) -> Decision | None:
        """The move when the lead's visits are known: a real offer once the lead is ready, the visit named
        back once it is booked, the offer recalled while it is open. None: go on qualifying."""
        visits = conversation.visits
        assert visits is not None
        asked = knowledge.asked(conversation)
        if visits.appointment is not None:
            for wanted in _BOOKING:
                if applies(wanted, q, conversation) and not is_known(wanted, q) and wanted not in asked:
                    return Decision("ask", voice.say(f"ask.{wanted}", seed), wanted)
            return Decision("answer", visit_texts.about(visits.appointment, "coming", voice), reasons=("visit_booked",))
        if visits.offer is not None:
            return Decision("answer", visit_texts.still_open(voice), reasons=("offer_open",))
        shaped = all(is_known(s, q) or s in asked or not applies(s, q, conversation) for s in _SHAPE)
        proposed = any(m.action == "propose_visit" for m in conversation.bot_messages)
        if ready(q) and shaped and not proposed:
            text = _since_bot(conversation)
            said = parse(text, now=visits.now, timezone=visits.timezone, language=conversation.config.language) \
                if text else Unrelated()
            wants = said if isinstance(said, Wants) else Wants()
            return Decision("propose_visit", self._proposal(conversation, voice, seed, kind), reasons=("ready",),
                            visit=VisitStep(Move(wants)))
        return None

    def _proposal(self, conversation: Conversation, voice: Voice, seed: str, kind: str | None) -> str:
        config = conversation.config
        options = list(config.visit_slots)
        joined = ", ".join(options[:-1]) + voice.say("or", seed) + options[-1] if len(options) > 1 else "".join(options)
        if config.visit_proposal:  # the broker's own words, with the times it offers after them
            times = " " + voice.say("times", seed, slots=joined) if joined else ""
            return config.visit_proposal + times
        slots = voice.say("slots", seed, slots=joined) if joined else ""
        return voice.say("propose_visit", seed, kind=kind, slots=slots)
