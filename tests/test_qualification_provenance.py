"""Where each fact of a qualification came from (``leadflow.qualification.provenance``): no services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from leadflow.qualification.answers import in_context
from leadflow.qualification.provenance import Said, Source, provenance
from leadflow.qualification.rules import qualify


def qualified(messages: list[Said], country: str | None, english: bool = False) -> dict[str, Any]:
    """What the batch qualification stores for this conversation (the rules, on in_context's turns)."""
    turns = in_context([(m.role, m.text, m.asks) for m in messages], english)
    return {**qualify(turns, country).model_dump(), "qualifier": "rules"}


def by_field(sources: list[Source]) -> dict[str, Source]:
    return {s.field: s for s in sources if s.field != "locations"}


def test_each_fact_points_at_the_message_that_stated_it_with_its_words_es_cl() -> None:
    messages = [Said(10, "lead", "Hola, busco depto de 3 dormitorios en Ñuñoa"),
                Said(11, "agent", "¡Genial! ¿Y cuál es tu presupuesto?"),
                Said(12, "lead", "Mi presupuesto es 4.500 UF, tengo crédito preaprobado")]
    sources = by_field(provenance(messages, qualified(messages, "CL"), "CL"))
    bedrooms, budget = sources["bedrooms_min"], sources["budget"]
    assert (bedrooms.kind, bedrooms.message_id, bedrooms.index) == ("message", 10, 0)
    assert bedrooms.excerpt == "busco depto de 3 dormitorios en Ñuñoa"  # the greeting is not the fact
    assert (budget.kind, budget.message_id, budget.value) == ("message", 12, "4500 UF")
    assert budget.excerpt == "Mi presupuesto es 4.500 UF"
    assert sources["financing"].excerpt == "tengo crédito preaprobado"
    assert all(s.model is None for s in sources.values())


def test_a_correction_points_at_the_later_message_es_ar() -> None:
    messages = [Said(1, "lead", "Busco 3 dormitorios en Palermo"), Said(2, "lead", "no, mejor 2 dormitorios")]
    stored = qualified(messages, "AR")
    assert stored["bedrooms_min"] == 2
    sources = provenance(messages, stored, "AR")
    assert by_field(sources)["bedrooms_min"].message_id == 2
    assert by_field(sources)["bedrooms_min"].excerpt == "mejor 2 dormitorios"
    [palermo] = [s for s in sources if s.field == "locations"]
    assert (palermo.value, palermo.message_id) == ("palermo", 1)


def test_a_bare_answer_is_the_answer_to_the_bots_question_es_mx() -> None:
    messages = [Said(1, "lead", "Hola, quiero comprar depa en Polanco"),
                Said(2, "agent", "¿Cuántas recámaras necesitas?", asks="bedrooms"),
                Said(3, "lead", "3")]
    stored = qualified(messages, "MX")
    assert stored["bedrooms_min"] == 3
    bedrooms = by_field(provenance(messages, stored, "MX"))["bedrooms_min"]
    assert (bedrooms.kind, bedrooms.message_id, bedrooms.excerpt) == ("answer", 3, "3")
    assert bedrooms.question == "¿Cuántas recámaras necesitas?"


def test_a_reply_after_a_question_that_states_the_fact_itself_is_a_message() -> None:
    messages = [Said(1, "agent", "¿Cuál es tu presupuesto?", asks="budget"), Said(2, "lead", "hasta 5.200 UF")]
    budget = by_field(provenance(messages, qualified(messages, "CL"), "CL"))["budget"]
    assert (budget.kind, budget.question, budget.excerpt) == ("message", None, "hasta 5.200 UF")


def test_english_facts_and_an_operation_named_beats_one_inferred_from_a_mortgage() -> None:
    messages = [Said("a", "lead", "Hi, I'm looking to buy a 2 bedroom condo in Miami"),
                Said("b", "lead", "My budget is up to $450k, pre-approved mortgage")]
    sources = by_field(provenance(messages, qualified(messages, "US", english=True), "US", english=True))
    assert sources["operation"].message_id == "a"  # "buy" is said in a; b's mortgage only implies it
    assert sources["budget"].message_id == "b" and sources["budget"].excerpt == "My budget is up to $450k"
    assert sources["financing"].message_id == "b"


def test_a_value_no_message_states_comes_from_the_conversation_as_a_whole() -> None:
    # An LLM read three bedrooms into "we are five"; the bot's offer of three is not the lead's word.
    messages = [Said(1, "lead", "somos una familia de cinco, buscamos casa en Maipú"),
                Said(2, "agent", "Tenemos casas de 3 dormitorios en Maipú"),
                Said(3, "lead", "me interesa, soy camila rojas")]
    stored = {"qualifier": "anthropic:claude-test", "bedrooms_min": 3, "property_type": "house",
              "locations": ["maipu"], "name": "Camila Rojas", "opted_out": False}
    sources = provenance(messages, stored, "CL")
    fields = by_field(sources)
    assert (fields["bedrooms_min"].kind, fields["bedrooms_min"].message_id) == ("conversation", None)
    assert all(s.model == "anthropic:claude-test" for s in sources)
    assert fields["property_type"].message_id == 1
    # The model's name is still found in the lead's own words (the rules alone would not read it).
    assert (fields["name"].kind, fields["name"].message_id) == ("message", 3)
    assert "opted_out" not in fields  # an empty fact has no source


def test_every_rules_fact_of_the_labelled_conversations_points_at_a_lead_message() -> None:
    lines = Path(__file__).with_name("data").joinpath("qualification_labelled.jsonl").read_bytes().splitlines()
    checked = 0
    for line in lines:
        case = orjson.loads(line)
        country = case.get("country")
        messages = [Said(i, "lead" if m["role"] in ("lead", "user") else "agent", m["text"], m.get("asks"))
                    for i, m in enumerate(case["messages"])]
        for source in provenance(messages, qualified(messages, country, country == "US"), country, country == "US"):
            assert source.kind != "conversation", (case["id"], source)
            assert source.index is not None and messages[source.index].role == "lead", (case["id"], source)
            assert source.excerpt and source.excerpt in " ".join(messages[source.index].text.split())
            checked += 1
    assert checked > 100


def test_a_long_message_is_cut_and_no_facts_means_no_sources() -> None:
    long = "Quiero arrendar " + "un lugar tranquilo " * 20 + "en Providencia"
    messages = [Said(1, "lead", long)]
    sources = provenance(messages, qualified(messages, "CL"), "CL")
    assert sources and all(s.excerpt is not None and len(s.excerpt) <= 160 for s in sources)
    assert provenance([Said(1, "lead", "hola")], qualified([Said(1, "lead", "hola")], "CL"), "CL") == []
    assert provenance([], {"qualifier": "rules"}, "CL") == []
