"""The offline rules qualifier on the way people really write (no services: pure functions)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl
import pytest

from leadflow.qualification import rules
from leadflow.qualification.rules import qualify
from leadflow.qualification.turns import Turn
from tests.qualification_eval import evaluate, load


def facts(*texts: str, country: str | None = "CL") -> dict[str, Any]:
    return qualify([Turn("lead", t) for t in texts], country).model_dump()


PHRASES: list[tuple[str, str, dict[str, Any]]] = [
    ("busco depto en Ñuñoa", "CL", {"property_type": "apartment"}),
    ("busco dpto", "CL", {"property_type": "apartment"}),
    ("2d2b con estacionamiento", "CL", {"bedrooms_min": 2}),
    ("casa de 3 dorm", "CL", {"bedrooms_min": 3, "property_type": "house"}),
    ("busco 3 ambientes en Palermo", "AR", {"bedrooms_min": 2, "locations": ["palermo"]}),
    ("hasta 5.200 UF", "CL", {"budget_max": 5200, "budget_currency": "UF"}),
    ("entre 4.000 y 5.000 UF", "CL", {"budget_min": 4000, "budget_max": 5000, "budget_currency": "UF"}),
    ("presupuesto USD 180k", "MX", {"budget_max": 180_000, "budget_currency": "USD"}),
    ("tengo un presupuesto de 450 millones", "CL", {"budget_max": 450_000_000, "budget_currency": "CLP"}),
    ("hasta 3 palos", "CL", {"budget_max": 3_000_000, "budget_currency": "CLP"}),
    ("arriendo hasta 600 lucas", "CL", {"operation": "rent", "budget_max": 600_000, "budget_period": "month"}),
    ("presupuesto 1,2 MM", "CL", {"budget_max": 1_200_000}),
    ("arriendo hasta 600 mil", "CL", {"operation": "rent", "budget_max": 600_000, "budget_currency": "CLP"}),
    ("tengo crédito preaprobado", "CL", {"financing": "mortgage_preapproved", "operation": "buy"}),
    ("tengo crédito Infonavit", "MX", {"financing": "mortgage_preapproved"}),
    ("quiero usar mi Infonavit", "MX", {"financing": "mortgage_needed"}),
    ("tengo 800 UF de pie", "CL", {"down_payment": 800}),
    ("puedo pagar quinientas cincuenta lucas de arriendo", "CL", {"budget_max": 550_000, "budget_currency": "CLP"}),
    ("mi correo es juan punto perez arroba gmail punto com", "CL", {"email": "juan.perez@gmail.com"}),
    ("mi mail es Camila.Rojas@Gmail.com", "CL", {"email": "camila.rojas@gmail.com"}),
    ("llámame al +56 9 8765 4321", "CL", {"phone": "+56987654321"}),
    ("en unos 6 meses", "CL", {"timeline_months": 6}),
    ("lo necesito urgente", "CL", {"timeline_months": 0}),
    ("dentro de dos años", "CL", {"timeline_months": 24}),
    ("no estoy en dicom", "CL", {"dicom_status": "clean"}),
    ("estoy en DICOM", "CL", {"dicom_status": "dirty"}),
    ("no me escriban más", "CL", {"opted_out": True}),
    ("no llamar", "MX", {"opted_out": True}),
]


@pytest.mark.parametrize(("text", "country", "expected"), PHRASES)
def test_phrases_as_leads_write_them(text: str, country: str, expected: dict[str, Any]) -> None:
    result = facts(text, country=country)
    assert {key: result[key] for key in expected} == expected


def test_latest_statement_wins_when_the_lead_corrects_themselves() -> None:
    result = facts("quiero arrendar, hasta 500 mil", "mejor compro, hasta 4.000 UF", "no, perdón: hasta 3.800 UF")
    assert (result["operation"], result["budget_max"], result["budget_currency"]) == ("buy", 3800, "UF")


def test_a_place_the_lead_rules_out_is_removed() -> None:
    assert facts("busco en Ñuñoa o Macul", "ya no en Macul")["locations"] == ["ñuñoa"]


def test_the_agents_words_are_not_the_leads_facts() -> None:
    result = qualify([Turn("agent", "Tenemos casas de 4 dormitorios en Vitacura desde 12.000 UF"),
                      Turn("lead", "ok")], "CL")
    assert result.bedrooms_min is None and result.locations == [] and result.budget_min is None


def test_a_person_named_santiago_is_not_a_place() -> None:
    result = facts("Hola, me llamo Santiago Díaz, busco depto en Providencia")
    assert result["name"] == "Santiago Díaz" and result["locations"] == ["providencia"]


def test_street_numbers_years_and_areas_are_not_money() -> None:
    result = facts("vivo en Av. Grecia 1234 desde 2019, el depto tiene 80 m2 y 2 baños")
    assert (result["budget_min"], result["budget_max"]) == (None, None)


@pytest.mark.parametrize("texts", [
    (),
    ("",),
    ("   ",),
    ("😀😀😀🏠🏠🔥",),
    ("ja" * 600_000,),  # a 1.2 MB message
    ("Hi! Busco apartment en Vitacura, budget 8.000 UF, I can pay cash",),
    ("\x00\x01 weird \u202e bytes",),
])
def test_bad_input_never_crashes_and_invents_nothing(texts: tuple[str, ...]) -> None:
    result = qualify([Turn("lead", t) for t in texts], "CL")
    if not any("UF" in t for t in texts):
        assert result.operation is None and result.budget_max is None and result.name is None


def test_field_accuracy_on_the_labelled_set() -> None:
    accuracy, misses = evaluate()
    assert min(accuracy.values()) >= 0.9, misses
    assert sum(accuracy.values()) / len(accuracy) >= 0.97, misses


def _corpus() -> list[str]:
    """Every lead text we have: the labelled set, the phrases above and a generated demo stream."""
    from bench.qualification import conversations

    texts = [m["text"] for case in load() for m in case["messages"]]
    texts += [t for c in conversations(3_000) for t in (m["text"] for m in c["messages"])]
    texts += [p[0] for p in PHRASES]
    return texts


def test_each_cheap_gate_lets_through_every_text_its_patterns_match() -> None:
    lead = pl.DataFrame({"text": _corpus(), "country": "CL"}).with_row_index("_m")
    lead = lead.with_columns(rules._fold(lead, "text").alias("folded"))
    lead = lead.with_columns(rules._numeric(lead).alias("numeric"))
    for family, (gate, column, patterns) in rules.GATES.items():
        text = pl.col(column)
        hidden = lead.filter(pl.any_horizontal(*(text.str.contains(p) for p in patterns)) & ~text.str.contains(gate))
        matched = lead.filter(pl.any_horizontal(*(text.str.contains(p) for p in patterns))).height
        assert matched > 0, f"{family}: the corpus never exercises these patterns"
        assert hidden.is_empty(), f"{family}: the gate hides {hidden[column].head(3).to_list()}"


def test_reading_in_chunks_on_threads_equals_one_pass() -> None:
    from bench.qualification import _frame, conversations

    frame = _frame(conversations(2_000), 5_000)
    whole = rules.qualify_frame(frame)
    chunked = rules.qualify_frame(frame, chunk_rows=4_000)
    assert whole.height == 5_000 and whole.equals(chunked)


def test_messages_of_a_conversation_need_not_be_together() -> None:
    frame = pl.DataFrame({"conversation": ["a", "b", "a", "b"], "seq": [0, 0, 1, 1], "role": ["lead"] * 4,
                          "text": ["busco depto en Ñuñoa", "hola", "hasta 5.000 UF", "quiero arrendar"],
                          "country": ["CL"] * 4})
    out = {row["conversation"]: row for row in rules.qualify_frame(frame).iter_rows(named=True)}
    assert (out["a"]["property_type"], out["a"]["budget_max"], out["a"]["locations"]) == ("apartment", 5000, ["ñuñoa"])
    assert (out["b"]["operation"], out["b"]["budget_max"]) == ("rent", None)


def test_no_messages_gives_no_rows() -> None:
    empty = pl.DataFrame(schema={"conversation": pl.Int64, "seq": pl.Int64, "role": pl.String, "text": pl.String,
                                 "country": pl.String})
    assert rules.qualify_frame(empty).is_empty()


# --- the seed product's extraction cases and their families -----------------------------------------

@pytest.mark.parametrize(("text", "country", "name", "phone"), [
    ("gabriel gonzalez, y mi numero es 954100504", "CL", "Gabriel Gonzalez", "+56954100504"),
    ("María José Pérez, mi correo es mjperez@gmail.com", "CL", "María José Pérez", None),
    ("tomás herrera, mi cel es 9 8765 4321", "CL", "Tomás Herrera", "+56987654321"),
    ("Lucía Martín, mi teléfono es 612 345 678", "ES", "Lucía Martín", "+34612345678"),
    ("hola buenas, mi numero es 954100504", "CL", None, "+56954100504"),  # a greeting, not a name
    ("Providencia, mi numero es 954100504", "CL", None, "+56954100504"),  # a place, not a name
    ("busco depto, 2 dormitorios", "CL", None, None),  # no contact after the comma, nobody asked
])
def test_a_name_given_first_before_a_comma(text: str, country: str, name: str | None, phone: str | None) -> None:
    result = facts(text, country=country)
    assert (result["name"], result["phone"]) == (name, phone)


def test_a_bare_name_and_comma_answers_the_agents_question() -> None:
    result = qualify([Turn("agent", "¿Con quién hablo?"), Turn("lead", "Pedro Soto, busco casa en Maipú")], "CL")
    assert result.name == "Pedro Soto"


@pytest.mark.parametrize(("text", "country", "phone"), [
    ("me llamo Carlos Ruiz, mi cel es 912345678 y mi email carlos@test.cl", "CL", "+56912345678"),
    ("mi cel es 912345678", "CL", "+56912345678"),
    ("whatsapp 56 9 1234 5678", "CL", "+56912345678"),
    ("mi móvil es 712345678", "ES", "+34712345678"),
    ("mi número es 123456789", "CL", None),  # not a Chilean mobile
])
def test_plain_nine_digit_mobiles(text: str, country: str, phone: str | None) -> None:
    assert facts(text, country=country)["phone"] == phone


def test_the_seed_case_with_name_phone_and_email_in_one_sentence() -> None:
    result = facts("me llamo Carlos Ruiz, mi cel es 912345678 y mi email carlos@test.cl")
    assert (result["name"], result["phone"], result["email"]) == ("Carlos Ruiz", "+56912345678", "carlos@test.cl")
    assert result["budget_max"] is None  # the mobile's digits are not money


# --- commitment, hesitation, urgency, asking price ---------------------------------------------------

AT = datetime(2025, 3, 13, 18, 0)  # a Thursday; every time below is read against it, never against today


def talk(*turns: tuple[str, str], country: str = "CL", at: datetime | None = AT) -> dict[str, Any]:
    return qualify([Turn("lead" if role == "l" else "agent", text, at) for role, text in turns], country).model_dump()


@pytest.mark.parametrize(("turns", "kind", "moment"), [
    ((("a", "¿Te acomoda visitarlo mañana a las 19 hrs?"), ("l", "ya dale, mañana 19 hrs")), "visit",
     datetime(2025, 3, 14, 19)),
    ((("a", "¿Lo vemos el domingo?"), ("l", "sí, el domingo a las 12 me sirve")), "visit", datetime(2025, 3, 16, 12)),
    ((("a", "¿Puedes ir a verlo el martes a las 18:30?"), ("l", "no puedo el martes, ¿el jueves a la misma hora?")),
     "visit", datetime(2025, 3, 20, 18, 30)),
    ((("a", "Podemos hacer la tasación, ¿te parece el lunes a las 10?"), ("l", "perfecto")), "valuation",
     datetime(2025, 3, 17, 10)),
    ((("a", "Would you like to see it this weekend?"), ("l", "Yes! Sunday afternoon works")), "visit", None),
    ((("a", "I can call you today at 5pm, does that work?"), ("l", "Sure, 5pm works")), "call",
     datetime(2025, 3, 13, 17)),
    ((("l", "¿la puedo ver mañana a las 5?"),), "visit", datetime(2025, 3, 14, 17)),
    ((("a", "¿Le llamo hoy a las 8 de la noche?"), ("l", "va")), "call", datetime(2025, 3, 13, 20)),
])
def test_an_accepted_proposal_is_a_commitment_dated_from_the_message(
        turns: tuple[tuple[str, str], ...], kind: str, moment: datetime | None) -> None:
    result = talk(*turns)
    assert (result["commitment"], result["commitment_at"], result["hesitation"]) == (kind, moment, None)


def test_the_same_words_a_year_later_date_a_year_later() -> None:
    turns = (("a", "¿Te acomoda visitarlo mañana a las 19 hrs?"), ("l", "ya dale"))
    assert talk(*turns, at=datetime(2026, 3, 13, 18))["commitment_at"] == datetime(2026, 3, 14, 19)
    assert talk(*turns, at=None)["commitment_at"] is None  # no timestamp: the words are kept, not a guessed date
    assert talk(*turns, at=None)["commitment_when"] == "mañana a las 19 hrs"


@pytest.mark.parametrize(("turns", "hesitation"), [
    ((("a", "¿Agendamos una visita este sábado?"), ("l", "no, todavía no, primero lo converso con mi señora")),
     "postponed"),
    ((("a", "¿Quiere agendar una visita?"), ("l", "déjeme lo platico con mi esposo y le aviso")), "postponed"),
    ((("a", "¿Te gustaría visitarlo?"), ("l", "no gracias, solo estoy mirando")), "declined"),
    ((("a", "Can I set up a showing for Thursday?"), ("l", "Not yet, I'll let you know")), "postponed"),
    ((("a", "¿Lo vemos el martes?"), ("l", "no")), "declined"),
    ((("a", "¿Lo vemos el martes?"), ("l", "dale"), ("l", "al final no voy a poder, te escribo la semana que viene")),
     "postponed"),
])
def test_declining_or_putting_off_is_hesitation_and_the_latest_stance_wins(
        turns: tuple[tuple[str, str], ...], hesitation: str) -> None:
    result = talk(*turns)
    assert (result["hesitation"], result["commitment"]) == (hesitation, None)


def test_a_later_yes_clears_an_earlier_not_yet() -> None:
    result = talk(("a", "¿Lo vemos el sábado a las 11?"), ("l", "te aviso"), ("a", "¿Y el domingo a las 11?"),
                  ("l", "sí, el domingo me sirve"))
    assert (result["commitment"], result["hesitation"], result["commitment_at"]) == (
        "visit", None, datetime(2025, 3, 16, 11))


def test_a_yes_to_another_question_commits_to_nothing() -> None:
    result = talk(("a", "¿Tienes mascotas?"), ("l", "sí, un gato"), ("a", "¿Tienes dicom?"), ("l", "no"))
    assert (result["commitment"], result["hesitation"]) == (None, None)


def test_a_call_in_progress_is_not_a_call_proposed() -> None:
    result = talk(("a", "Hola Ximena, le llamo de la corredora por su consulta."),
                  ("l", "Sí, hola, gracias por llamar."))
    assert result["commitment"] is None
    assert talk(("a", "¿Le llamo mañana a las 10?"), ("l", "sí"))["commitment"] == "call"


def test_a_fact_said_with_not_yet_is_no_hesitation() -> None:
    assert talk(("l", "todavía no tengo el crédito aprobado"))["hesitation"] is None


@pytest.mark.parametrize(("text", "reason"), [
    ("se me termina el contrato en 3 semanas", "contract_ending"),
    ("me vence el contrato este mes", "contract_ending"),
    ("my lease ends in 4 weeks", "contract_ending"),
    ("nos mudamos de ciudad en 2 meses", "moving"),
    ("me trasladan por trabajo", "moving"),
    ("we're moving to Miami in June", "moving"),
    ("busco depto en Ñuñoa", None),
])
def test_urgency_has_a_reason(text: str, reason: str | None) -> None:
    assert facts(text)["urgency_reason"] == reason


@pytest.mark.parametrize(("texts", "country", "price", "currency"), [
    (("quiero vender mi casa en Zapopan", "pensaba pedir 11 millones"), "MX", 11_000_000, "MXN"),
    (("tengo un depto en Palermo y lo quiero vender, pensaba pedir USD 180.000",), "AR", 180_000, "USD"),
    (("vendo mi depto en Ñuñoa en 5.500 UF",), "CL", 5_500, "UF"),
    (("I'm selling my condo, asking $450k",), "US", 450_000, "USD"),
])
def test_a_sellers_price_is_an_asking_price_not_a_budget(
        texts: tuple[str, ...], country: str, price: float, currency: str) -> None:
    result = facts(*texts, country=country)
    assert (result["asking_price"], result["asking_currency"]) == (price, currency)
    assert (result["budget_min"], result["budget_max"], result["budget_period"]) == (None, None, None)


def test_selling_first_to_buy_is_still_a_purchase() -> None:
    result = facts("Quiero comprar un 3 ambientes en Belgrano", "no por ahora, primero tengo que vender el mío",
                   country="AR")
    assert result["operation"] == "buy"


def test_el_piso_is_a_flat_and_el_piso_5_a_floor() -> None:
    assert facts("me interesa el piso de 3 habitaciones", country="ES")["property_type"] == "apartment"
    assert facts("vivo en el piso 5", country="ES")["property_type"] is None
