"""The offline rules qualifier on the way people really write (no services: pure functions)."""

from __future__ import annotations

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
