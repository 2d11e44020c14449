"""The agent's visit moves, decided purely from a conversation that carries the lead's open offer and next visit
(as the stream loads them), and the words of each outcome in the lead's language. No services, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from leadflow.agent.decision import Conversation, Decision, Message, Visits
from leadflow.agent.offline import OfflinePolicy
from leadflow.agent.respond import WithVisits, respond
from leadflow.agent.voice import Voice
from leadflow.appointments.choice import Cancels, Chose, Confirms, Reschedules, Wants
from leadflow.appointments.dialog import Move, Outcome
from leadflow.appointments.slots import Preference, Slot
from leadflow.appointments.store import Appointment, Offer
from leadflow.appointments.texts import render
from tests.test_agent_policy import bot, config, lead

ZONE = ZoneInfo("America/Santiago")
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=ZONE)
READY = "Busco arrendar depto en Providencia hasta 600 lucas, 2 dormitorios, me llamo Ana"
SLOTS = tuple(Slot(datetime(2026, 12, d, h, tzinfo=ZONE), datetime(2026, 12, d, h + 1, tzinfo=ZONE), (None,))
              for d, h in ((8, 10), (9, 15), (11, 17)))
OFFER = Offer(41, 7, "in_person", SLOTS, NOW.astimezone(UTC))


def _visit(status: str = "confirmed", kind: str = "in_person", meet: str | None = None,
           address: str | None = "Av. Providencia 1234") -> Appointment:
    return Appointment(9, 1, 7, None, kind, address, SLOTS[2].start, SLOTS[2].end, "America/Santiago",  # type: ignore[arg-type]
                       status, "agent", "telegram", meet, "pending", None)  # type: ignore[arg-type]


def _conversation(*turns: Message, offer: Offer | None = None, visit: Appointment | None = None,
                  country: str = "CL") -> Conversation:
    return Conversation(turns, config(country), country, "telegram",
                        visits=Visits(NOW, "America/Santiago", offer, visit))


def test_a_ready_lead_gets_a_real_offer_asked_of_the_stream() -> None:
    decision = OfflinePolicy().decide(_conversation(lead(READY + ". ¿Podría ser el sábado?")))
    assert decision.action == "propose_visit" and decision.visit is not None
    assert decision.visit.move == Move(Wants(Preference(weekday=5)))
    assert decision.visit.preface.startswith("¡Hola!")


@pytest.mark.parametrize(("text", "move"), [
    ("la segunda", Move(Chose(1), 41)),
    ("el viernes a las 5", Move(Chose(2), 41)),
    ("no puedo, ¿el sábado?", Move(Wants(Preference(weekday=5)), 41)),
])
def test_an_answer_to_the_offer_becomes_a_move_on_that_offer(text: str, move: Move) -> None:
    turns = (lead(READY), bot("Tengo estos horarios: …", action="propose_visit"), lead(text))
    decision = OfflinePolicy().decide(_conversation(*turns, offer=OFFER))
    assert decision.visit is not None and decision.visit.move == move


def test_a_booking_asks_next_for_what_the_visit_still_needs() -> None:
    turns = (lead("Busco arrendar depto en Providencia hasta 600 lucas, 2 dormitorios"),
             bot("Tengo estos horarios: …", action="propose_visit"), lead("la primera"))
    decision = OfflinePolicy().decide(_conversation(*turns, offer=OFFER))
    assert decision.visit is not None and decision.visit.follow_up_asks == "name"


@pytest.mark.parametrize(("text", "choice"), [
    ("confirmo", Confirms()), ("no voy a poder", Cancels()),
    ("¿podemos cambiarla al jueves?", Reschedules(Preference(weekday=3))),
])
def test_an_answer_about_the_coming_visit_confirms_cancels_or_moves_it(text: str, choice: object) -> None:
    turns = (lead(READY), bot("¡Listo! Visita agendada…", action="answer"), lead(text))
    decision = OfflinePolicy().decide(_conversation(*turns, visit=_visit("proposed")))
    assert decision.visit is not None and decision.visit.move == Move(choice, None, 9)  # type: ignore[arg-type]
    # A question about the visit is the visit's to answer: no "I'll check with a person" before it.
    assert decision.visit.preface == ""


def test_an_unrelated_message_with_an_offer_open_recalls_it_and_writes_nothing() -> None:
    turns = (lead(READY), bot("Tengo estos horarios: …", action="propose_visit"), lead("¿aceptan mascotas?"))
    decision = OfflinePolicy().decide(_conversation(*turns, offer=OFFER))
    assert decision.visit is None and decision.reply is not None and "horarios que te envié" in decision.reply


def test_a_booked_lead_is_told_when_it_is_awaited() -> None:
    turns = (lead(READY + ", mi correo es ana@correo.cl"), bot("¡Listo! Visita agendada…", action="answer"),
             lead("¿hay estacionamiento?"))
    decision = OfflinePolicy().decide(_conversation(*turns, visit=_visit()))
    assert decision.visit is None and decision.reply is not None
    assert "Te esperamos el viernes 11 de diciembre a las 17:00 en Av. Providencia 1234" in decision.reply


class _ProposingLLM:
    def decide(self, conversation: Conversation) -> Decision:
        return Decision("propose_visit", "¿Agendamos una visita el sábado a las 11?", reasons=("llm",))


def test_the_llm_s_proposal_becomes_a_real_offer_and_answers_to_an_offer_are_read_by_the_rules() -> None:
    proposing = WithVisits(_ProposingLLM()).decide(_conversation(lead(READY)))
    assert proposing.visit is not None and proposing.visit.move == Move(Wants())
    answered = respond(Conversation((lead(READY), bot("Tengo estos horarios: …", action="propose_visit"),
                                     lead("la tercera")), config("CL", policy="llm"), "CL", "telegram",
                                    visits=Visits(NOW, "America/Santiago", OFFER, None)), _ProposingLLM())
    assert answered.visit is not None and answered.visit.move == Move(Chose(2), 41)


def test_without_the_lead_s_visits_the_bot_proposes_in_words_as_before() -> None:
    decision = OfflinePolicy().decide(Conversation((lead(READY),), config("CL"), "CL", "telegram"))
    assert decision.action == "propose_visit" and decision.visit is None


# --- the words of each outcome -------------------------------------------------------------------------------

def test_the_offer_lists_the_slots_numbered_in_the_broker_s_timezone() -> None:
    text = render(Outcome("offered", "America/Santiago", OFFER), Voice("es", "CL"))
    assert text == ("Tengo estos horarios para la visita:\n1) martes 8 de diciembre a las 10:00\n"
                    "2) miércoles 9 de diciembre a las 15:00\n3) viernes 11 de diciembre a las 17:00\n"
                    "¿Cuál te acomoda? Basta con el número o el día.")
    english = render(Outcome("offered", "America/Santiago", OFFER), Voice("en", "US"))
    assert "1) Tuesday, December 8 at 10:00 AM" in english and "3) Friday, December 11 at 5:00 PM" in english


def test_the_register_follows_the_lead() -> None:
    usted = render(Outcome("confirmed", "America/Santiago", appointment=_visit()), Voice("es", "ES", "usted"))
    vos = render(Outcome("declined", "America/Santiago"), Voice("es", "AR", "vos"))
    assert usted.startswith("¡Gracias por confirmar! Le esperamos el viernes 11 de diciembre a las 17:00")
    assert "querés" in vos


def test_a_virtual_visit_gives_the_meet_link_or_says_it_will_come() -> None:
    later = render(Outcome("booked", "America/Santiago", appointment=_visit(kind="virtual")), Voice("es", "MX"))
    assert "por videollamada" in later and "enlace de Google Meet antes de la visita" in later
    link = "https://meet.google.com/abc-defg-hij"
    now = render(Outcome("booked", "America/Santiago", appointment=_visit(kind="virtual", meet=link)),
                 Voice("en", "US"))
    assert now.endswith(f"Google Meet link: {link}")


def test_an_in_person_visit_without_an_address_says_a_person_will_confirm_it() -> None:
    text = render(Outcome("booked", "America/Santiago", appointment=_visit(address=None)), Voice("es", "CL"))
    assert text.endswith("Un ejecutivo te confirmará la dirección.")


def test_an_ambiguous_answer_lists_the_candidates_with_their_first_numbers() -> None:
    text = render(Outcome("ambiguous", "America/Santiago", OFFER, options=((0, SLOTS[0]), (2, SLOTS[2]))),
                  Voice("es", "CL"))
    assert text == ("¿Cuál de estos prefieres?\n1) martes 8 de diciembre a las 10:00\n"
                    "3) viernes 11 de diciembre a las 17:00")


def test_the_time_said_is_the_wall_clock_of_the_visit_day_across_a_change() -> None:
    # Booked in March (UTC-3) for Monday 5 April 2027 (UTC-4 by then): still "a las 10:00".
    start = datetime(2027, 4, 5, 10, tzinfo=ZONE)
    visit = Appointment(1, 1, 1, None, "in_person", "Of. 1", start, start + timedelta(hours=1), "America/Santiago",
                        "confirmed", "agent", None, None, "pending", None)
    assert "lunes 5 de abril a las 10:00" in render(Outcome("booked", "America/Santiago", appointment=visit),
                                                    Voice("es", "CL"))
