"""A broker's settings with validation, versions and a scoring preview (issue 14).

Pure first: each section refuses what its reader would misread, naming every bad field (crossing thresholds,
steps out of order, a pipeline that would send leads back). Then the JSON API on real PostgreSQL: versions with
who and when, revert, a stale save refused, another broker and an AGENT refused; the preview counts what the
next scoring run then writes; and the real landing job rescored a lead whose messages did not change.
"""

from __future__ import annotations

from typing import Any

import pytest

from leadflow.leads.stages import DEFAULT_PIPELINE, Pipeline
from leadflow.qualification.scoring import ScoringConfig
from leadflow.settings_schema import (
    SettingsError,
    diff,
    effective,
    stage_regressions,
    validate,
    validate_agent,
    validate_campaigns,
    validate_llm,
    validate_pipeline,
    validate_scoring,
)


def refused(section: str, value: Any, **context: Any) -> dict[str, str]:
    with pytest.raises(SettingsError) as caught:
        validate(section, value, **context)
    return {p.field: p.message for p in caught.value.problems}


def default_stages() -> list[dict[str, Any]]:
    stages: list[dict[str, Any]] = effective("pipeline", {})["stages"]
    return stages


# --- scoring ------------------------------------------------------------------------------------------------

def test_scoring_keeps_only_what_differs_from_the_defaults_and_reads_back_as_the_run_reads_it() -> None:
    stored = validate_scoring({**effective("scoring", {}), "budget": 20, "timeline": [[2, 15], [12, 5]]})
    assert stored == {"budget": 20, "timeline": [[2, 15], [12, 5]]}
    config = ScoringConfig.from_settings(stored)
    assert config.budget == 20 and config.timeline == ((2, 15), (12, 5)) and config.hot == ScoringConfig.hot
    assert validate_scoring({}) == {}


def test_scoring_thresholds_that_cross_are_refused_naming_the_field() -> None:
    problems = refused("scoring", {"hot": 40, "warm": 60})
    assert "hot" in problems and "above the warm one (60)" in problems["hot"]
    assert "hot" in refused("scoring", {"hot": 40})  # the default warm is 40: equal crosses too
    assert set(refused("scoring", {"hot": 150, "warm": 0})) == {"hot", "warm"}


def test_every_bad_scoring_field_is_listed_at_once() -> None:
    problems = refused("scoring", {"budget": "9", "financing": {"cash": 5, "bitcoin": 3},
                                   "engagement": [[1, 2], [6, 12]], "inactive_days": 0, "colour": "red", "name": True,
                                   "phone": 500})
    assert problems["budget"] == "Input should be a valid integer"
    assert problems["name"] == "Input should be a valid integer"  # true is not a number of points
    assert "unknown field" in problems["colour"]
    # The type errors stop the rest; once they are fixed the cross-field rules speak.
    problems = refused("scoring", {"financing": {"cash": 5, "bitcoin": 3}, "engagement": [[1, 2], [6, 12]],
                                   "inactive_days": 0, "phone": 500})
    assert "unknown" in problems["financing.bitcoin"]
    assert "largest first" in problems["engagement"]
    assert problems["inactive_days"] == "must be above 0"
    assert "between -100 and 100" in problems["phone"]


# --- pipeline -----------------------------------------------------------------------------------------------

def test_the_default_pipeline_stores_as_nothing_and_a_changed_one_stores_whole() -> None:
    assert validate_pipeline({"stages": default_stages()}) == {}
    stages = default_stages()
    stages[0]["stall_days"] = 3
    stored = validate_pipeline({"stages": stages})
    assert stored["stages"][0]["stall_days"] == 3 and len(stored["stages"]) == len(DEFAULT_PIPELINE.stages)
    assert Pipeline.from_settings(stored).stages[0].stall_days == 3


def test_bad_stages_are_named_by_position() -> None:
    stages = default_stages()
    stages[1]["code"] = "Perfil Amiento"
    stages[2]["requires"] = ["scored_warm", "tiene_credito"]
    stages[3]["stall_days"] = 0
    stages[4]["code"] = "entrada"
    problems = refused("pipeline", {"stages": [*stages, {"code": "perdido"}]})
    assert "lowercase" in problems["stages[1].code"]
    assert "tiene_credito" in problems["stages[2].requires"]
    assert "1 and 365" in problems["stages[3].stall_days"]
    assert "already a stage" in problems["stages[4].code"]
    assert "always there" in problems["stages[8].code"]
    assert "stages" in refused("pipeline", {"stages": []})


def test_a_pipeline_that_would_send_leads_back_is_refused_naming_the_stage_and_its_leads() -> None:
    occupied = {"potencial": 4, "entrada": 2}
    stages = [s for s in default_stages() if s["code"] != "potencial"]
    problems = refused("pipeline", {"stages": stages}, current={}, occupied=occupied)
    assert problems["stages"] == "stage 'potencial' has 4 lead(s): it cannot be removed (move them on first)"
    # "perfilamiento" put after "potencial": the 4 leads there passed it already.
    stages = default_stages()
    stages[1], stages[3] = stages[3], stages[1]
    problems = refused("pipeline", {"stages": stages}, current={}, occupied=occupied)
    assert "'perfilamiento' cannot go after 'potencial': its 4 lead(s) would go back" in problems["stages[3].code"]
    # The same change with nobody past those stages is fine; so is removing an empty stage.
    assert validate_pipeline({"stages": stages}, {}, {"entrada": 9})["stages"][1]["code"] == "potencial"
    empty = [s for s in default_stages() if s["code"] != "referidos"]
    assert "referidos" not in str(validate_pipeline({"stages": empty}, {}, occupied))
    assert stage_regressions(DEFAULT_PIPELINE, DEFAULT_PIPELINE, occupied) == []


# --- llm, campaigns, agent ----------------------------------------------------------------------------------

def test_llm_settings_name_the_provider_model_and_prompt() -> None:
    assert validate_llm({"provider": "openai", "model": "gpt-4.1", "prompt_additions": "  Sé breve. "}) == {
        "provider": "openai", "model": "gpt-4.1", "prompt_additions": "Sé breve."}
    assert validate_llm({"provider": "rules", "model": "", "prompt_additions": ""}) == {}
    problems = refused("llm", {"provider": "mistral", "model": "a b", "prompt_additions": "x" * 3000, "temp": 1})
    assert set(problems) == {"provider", "model", "prompt_additions", "temp"}
    assert "only with a provider" in refused("llm", {"model": "gpt-4.1"})["model"]


def test_contact_rules_and_the_brokers_own_opt_out_words() -> None:
    stored = validate_campaigns({"quiet_start": 22, "quiet_end": 8, "cap_messages": 3, "cap_days": 7,
                                 "opt_out_words": ["Ya  no más", "chao", "chao"]})
    assert stored == {"quiet_start": 22, "quiet_end": 8, "opt_out_words": ["ya no más", "chao"]}
    problems = refused("campaigns", {"quiet_start": 24, "cap_messages": 0, "cap_days": "7",
                                     "opt_out_words": ["ok", "?!", 3]})
    assert set(problems) == {"quiet_start", "cap_messages", "cap_days", "opt_out_words[1]", "opt_out_words[2]"}


def test_agent_settings_reuse_the_agents_own_model_and_name_nested_fields() -> None:
    assert validate_agent({"enabled": True, "facts": {"commission": "2% + IVA"}, "language": "es-CL"}, "CL") == {
        "enabled": True, "facts": {"commission": "2% + IVA"}}
    assert validate_agent({"language": "es-CL"}, "MX") == {"language": "es-CL"}  # not the country's: kept
    problems = refused("agent", {"tone": "gritón", "facts": {"commission": "", "pets": "sí"},
                                 "max_replies_per_hour": 0}, country="CL")
    assert set(problems) == {"tone", "facts.commission", "facts.pets", "max_replies_per_hour"}


def test_a_diff_names_each_changed_leaf() -> None:
    before, after = effective("pipeline", {}), default_stages()
    after[2]["stall_days"] = 9
    assert diff(before, {**before, "stages": after}) == [
        {"field": "stages[2].stall_days", "before": 7, "after": 9}]
    assert diff({"hot": 70, "warm": 40}, {"hot": 80, "warm": 40}) == [{"field": "hot", "before": 70, "after": 80}]
