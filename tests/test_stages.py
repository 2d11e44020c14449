"""Sales-pipeline stages, pure: automatic advance, never backwards, perdido from anywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from leadflow.leads.stages import (
    DEFAULT_PIPELINE,
    LOST,
    Pipeline,
    StageFacts,
    Transition,
    advance,
    stage_moment,
    visit_accepted,
)

READY = StageFacts(has_name=True, has_contact=True, has_budget=True, has_location=True, score=80,
                   temperature="hot", financing_ready=True)


def stages(moves: list[Transition]) -> list[str]:
    return [m.to_stage for m in moves]


def test_a_new_lead_enters_the_first_stage() -> None:
    assert stages(advance(None, StageFacts())) == ["entrada"]


def test_name_plus_contact_moves_to_perfilamiento() -> None:
    assert stages(advance("entrada", StageFacts(has_name=True, has_contact=True))) == ["perfilamiento"]


def test_a_ready_lead_passes_every_stage_it_qualifies_for_and_stops_at_a_visit() -> None:
    moves = advance(None, READY)
    assert stages(moves) == ["entrada", "perfilamiento", "calificacion_financiera", "potencial"]
    assert moves[2].reason == "auto: scored_warm and has_budget and has_location"


def test_an_accepted_visit_moves_to_agendado_but_manual_stages_stay_manual() -> None:
    facts = StageFacts(**{**READY.__dict__, "visit_accepted": True})
    assert stages(advance("potencial", facts)) == ["agendado"]
    assert advance("agendado", facts) == []  # seguimiento, referidos, ganado are set by people


def test_never_backwards_when_the_facts_get_worse() -> None:
    assert advance("potencial", StageFacts()) == []


@pytest.mark.parametrize("current", [None, "entrada", "potencial", "agendado"])
def test_opting_out_loses_the_lead_from_any_stage(current: str | None) -> None:
    [move] = advance(current, StageFacts(opted_out=True))
    assert (move.from_stage, move.to_stage, move.reason) == (current, LOST, "auto: opted_out")
    assert advance(LOST, READY) == []


def test_a_broker_pipeline_is_data() -> None:
    pipeline = Pipeline.from_settings({"stages": [
        {"code": "nuevo", "name": "Nuevo", "stall_days": 1},
        {"code": "caliente", "name": "Caliente", "requires": ["scored_hot"]}]})
    assert stages(advance(None, READY, pipeline)) == ["nuevo", "caliente"]
    with pytest.raises(ValueError, match="unknown stage conditions"):
        Pipeline.from_settings({"stages": [{"code": "x", "requires": ["is_rich"]}]})
    assert Pipeline.from_settings({}) is DEFAULT_PIPELINE


def test_visit_accepted_needs_a_proposal_then_a_yes() -> None:
    proposal = {"role": "agent", "text": "¿Te acomoda agendar una visita el sábado?"}
    assert visit_accepted([proposal, {"role": "lead", "text": "Sí, el sábado me acomoda"}])
    assert not visit_accepted([proposal, {"role": "lead", "text": "no puedo, otro día"}])
    assert not visit_accepted([{"role": "lead", "text": "sí"}])


def test_the_dbt_seed_of_stages_is_the_default_pipeline() -> None:
    import csv
    from pathlib import Path

    from leadflow.leads.stages import DEFAULT_PIPELINE, LOST

    seed = Path(__file__).resolve().parent.parent / "dbt_project" / "seeds" / "pipeline_stages.csv"
    with seed.open(encoding="utf-8") as handle:
        rows = [(r["stage"], r["stage_name"], int(r["stage_position"]),
                 int(r["stall_days"]) if r["stall_days"] else None) for r in csv.DictReader(handle)]
    expected = [(s.code, s.name, i + 1, s.stall_days) for i, s in enumerate(DEFAULT_PIPELINE.stages)]
    assert rows == [*expected, (LOST, "Perdido", len(expected) + 1, None)]


MESSAGE_AT = datetime(2024, 3, 5, 14, 30, tzinfo=UTC)


def test_a_move_happens_when_its_evidence_happened() -> None:
    assert stage_moment(MESSAGE_AT, None, None) == (MESSAGE_AT, 0)
    assert stage_moment(MESSAGE_AT, MESSAGE_AT - timedelta(days=3), 4) == (MESSAGE_AT, 0)


def test_evidence_older_than_the_current_stage_moves_at_that_stage_numbered_after_its_events() -> None:
    entered = MESSAGE_AT + timedelta(hours=1)
    assert stage_moment(MESSAGE_AT, entered, 2) == (entered, 3)
    assert stage_moment(entered, entered, 0) == (entered, 1)
    assert stage_moment(MESSAGE_AT, entered, None) == (entered, 0)
