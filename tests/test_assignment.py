"""Automatic assignment's choice, without services: round robin, rules by channel and area, fallbacks, configs."""

from __future__ import annotations

from collections import Counter

import polars as pl
import pytest
from pydantic import ValidationError

from leadflow.leads.assignment import (
    AGENTS_POOL,
    LEAD_SCHEMA,
    PEOPLE_SCHEMA,
    AssignmentConfig,
    Rule,
    area_key,
    choose,
    group_pool,
    next_in_turn,
)

BROKER, OTHER = 1, 2
ANA, BETO, CARLA, ADMIN = 10, 20, 30, 5


def people(*rows: tuple[int, int, str]) -> pl.DataFrame:
    return pl.DataFrame([(b, u, role, f"user {u}") for b, u, role in rows], schema=PEOPLE_SCHEMA, orient="row")


def leads(*rows: tuple[int, int, str | None, list[str]]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=LEAD_SCHEMA, orient="row")


TEAM = people((BROKER, ANA, "AGENT"), (BROKER, BETO, "AGENT"), (BROKER, CARLA, "AGENT"), (BROKER, ADMIN, "ADMIN"),
              (OTHER, 99, "AGENT"))
ROUND_ROBIN = AssignmentConfig(mode="round_robin")


def given(result_frame: pl.DataFrame) -> dict[int, int]:
    return dict(result_frame.select("lead_id", "user_id").iter_rows())


def test_round_robin_is_fair_among_agents_only_and_in_user_id_order() -> None:
    new = leads(*[(BROKER, lead, "whatsapp", []) for lead in range(100, 109)])
    result = choose(new, TEAM, {BROKER: ROUND_ROBIN}, {})
    assert given(result.assigned) == {100: ANA, 101: BETO, 102: CARLA, 103: ANA, 104: BETO, 105: CARLA,
                                      106: ANA, 107: BETO, 108: CARLA}  # the ADMIN takes no turn
    assert set(result.assigned["how"]) == {"automatic (round robin)"}
    assert result.cursors == {(BROKER, AGENTS_POOL): CARLA}


def test_round_robin_continues_from_the_stored_cursor_across_runs() -> None:
    first = choose(leads((BROKER, 1, "telegram", [])), TEAM, {BROKER: ROUND_ROBIN}, {})
    second = choose(leads((BROKER, 2, "telegram", []), (BROKER, 3, "telegram", [])), TEAM, {BROKER: ROUND_ROBIN},
                    first.cursors)
    assert given(first.assigned) | given(second.assigned) == {1: ANA, 2: BETO, 3: CARLA}
    # Over many runs of one lead each, everyone gets the same share.
    cursors: dict[tuple[int, str], int] = {}
    counts: Counter[int] = Counter()
    for lead in range(300):
        run = choose(leads((BROKER, lead, "form", [])), TEAM, {BROKER: ROUND_ROBIN}, cursors)
        cursors = {**cursors, **run.cursors}
        counts.update(given(run.assigned).values())
    assert counts == {ANA: 100, BETO: 100, CARLA: 100}


def test_a_person_who_leaves_does_not_reset_the_others_turns() -> None:
    without_beto = people((BROKER, ANA, "AGENT"), (BROKER, CARLA, "AGENT"))
    result = choose(leads((BROKER, 1, "form", []), (BROKER, 2, "form", [])), without_beto,
                    {BROKER: ROUND_ROBIN}, {(BROKER, AGENTS_POOL): BETO})
    assert given(result.assigned) == {1: CARLA, 2: ANA}
    assert next_in_turn([30, 10, 20], None) == 10 and next_in_turn([10, 20], 20) == 10


def test_rules_by_channel_and_area_go_to_a_person_or_take_turns_in_a_group() -> None:
    config = AssignmentConfig(mode="rules", rules=[
        Rule(channels=["vapi"], assign_to=[ADMIN]),
        Rule(areas=["Ñuñoa", "La Reina"], assign_to=[BETO, CARLA]),
        Rule(channels=["whatsapp"], areas=["providencia"], assign_to=[ANA]),
    ])
    new = leads((BROKER, 1, "vapi", ["ñuñoa"]),  # the first matching rule decides
                (BROKER, 2, "whatsapp", ["nunoa"]),  # accents and case do not matter
                (BROKER, 3, "telegram", ["la reina"]),
                (BROKER, 4, "whatsapp", ["providencia"]),
                (BROKER, 5, "telegram", ["providencia"]),  # channel does not match rule 3: fallback
                (BROKER, 6, None, []))
    result = choose(new, TEAM, {BROKER: config}, {})
    assert given(result.assigned) == {1: ADMIN, 2: BETO, 3: CARLA, 4: ANA, 5: ANA, 6: BETO}
    how = dict(result.assigned.select("lead_id", "how").iter_rows())
    assert how[1] == "automatic (rule 1: channel vapi)"
    assert how[2] == "automatic (rule 2: area Ñuñoa/La Reina, round robin in its group)"
    assert how[5] == "automatic (round robin)"
    assert result.cursors == {(BROKER, group_pool([BETO, CARLA])): CARLA, (BROKER, AGENTS_POOL): BETO}


def test_the_fallback_can_leave_a_lead_unassigned_and_a_rule_of_inactive_people_falls_back() -> None:
    config = AssignmentConfig(mode="rules", fallback="unassigned",
                              rules=[Rule(channels=["form"], assign_to=[77]),  # 77 is no longer active
                                     Rule(channels=["telegram"], assign_to=[ANA])])
    result = choose(leads((BROKER, 1, "form", []), (BROKER, 2, "whatsapp", []), (BROKER, 3, "telegram", [])),
                    TEAM, {BROKER: config}, {})
    assert given(result.assigned) == {3: ANA}
    assert result.unassigned == [1, 2]


def test_brokers_never_share_people_and_off_assigns_nothing() -> None:
    new = leads((BROKER, 1, "form", []), (OTHER, 2, "form", []), (3, 4, "form", []))
    result = choose(new, TEAM, {BROKER: AssignmentConfig(mode="off"), OTHER: ROUND_ROBIN}, {})
    assert given(result.assigned) == {2: 99}
    # A broker with round robin but no agents leaves its leads for a person.
    lonely = choose(leads((BROKER, 1, "form", [])), people((BROKER, ADMIN, "ADMIN")), {BROKER: ROUND_ROBIN}, {})
    assert lonely.assigned.is_empty() and lonely.unassigned == [1]


def test_configs_are_validated() -> None:
    assert AssignmentConfig().mode == "off" and AssignmentConfig().fallback == "round_robin"
    with pytest.raises(ValidationError, match="at least one rule"):
        AssignmentConfig(mode="rules")
    with pytest.raises(ValidationError, match="names channels, areas or both"):
        Rule(assign_to=[ANA])
    with pytest.raises(ValidationError):
        Rule(channels=["whatsapp"], assign_to=[])
    with pytest.raises(ValidationError):
        AssignmentConfig.model_validate({"mode": "random"})
    with pytest.raises(ValidationError):
        AssignmentConfig.model_validate({"mode": "round_robin", "surprise": 1})
    with pytest.raises(ValidationError):
        Rule(channels=["WhatsApp; DROP"], assign_to=[ANA])
    rule = Rule(areas=["  La   Reina ", "La Reina"], assign_to=[ANA, ANA, BETO])
    assert rule.areas == ["La Reina"] and rule.assign_to == [ANA, BETO]
    assert AssignmentConfig(mode="rules", rules=[rule]).people() == {ANA, BETO}
    assert area_key(" ÑUÑOA ") == area_key("nunoa") == "nunoa"


def test_the_assignment_runs_in_the_landing_job_after_the_qualification() -> None:
    from dagster import AssetKey

    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    assert graph.get(AssetKey("lead_assignments")).parent_keys == {AssetKey("lead_qualifications")}
    job = defs.resolve_job_def("landing_job")
    assert "lead_assignments" in {node.name for node in job.graph.nodes}
