"""Segments, enrollment and the eligibility of every step, pure (no services)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from leadflow.campaigns.definitions import CampaignDefinition
from leadflow.campaigns.eligibility import ContactRules, opts_out, quiet_until
from leadflow.campaigns.segments import SegmentRules, members
from leadflow.campaigns.targeting import Broker, Campaign, decide, enroll, manual_outcomes
from leadflow.campaigns.templates import render_expr, template_columns, unknown_variables

NOON_SANTIAGO = datetime(2026, 11, 26, 15, tzinfo=UTC)  # 12:00 in Santiago (UTC-3)


def profiles(*rows: dict[str, Any]) -> pl.DataFrame:
    base = {"lead_id": 1, "broker_id": 1, "broker_slug": "acme", "name": "Camila Rojas", "phone_e164": "+56987654321",
            "score": 80, "temperature": "hot", "stage": "potencial", "stage_entered_at": NOON_SANTIAGO,
            "operation": "buy", "budget_max": 5200.0, "budget_currency": "UF", "locations": ["ñuñoa"],
            "bedrooms_min": 2, "tags": [], "channels": ["whatsapp"], "opted_out": False, "days_silent": 1.0,
            "wa_id": "56987654321", "last_whatsapp_at": NOON_SANTIAGO - timedelta(hours=2), "telegram_chat_id": None,
            "summary": None}
    return pl.DataFrame([{**base, **row} for row in rows], schema_overrides={
        "stage_entered_at": pl.Datetime("us", "UTC"), "last_whatsapp_at": pl.Datetime("us", "UTC"),
        "telegram_chat_id": pl.String, "summary": pl.String, "tags": pl.List(pl.String)})


HOT_BUYERS = {"all": [{"field": "temperature", "op": "eq", "value": "hot"},
                      {"field": "operation", "op": "eq", "value": "buy"},
                      {"field": "locations", "op": "any_of", "value": ["Providencia", "Ñuñoa"]},
                      {"field": "budget_currency", "op": "eq", "value": "UF"},
                      {"field": "budget_max", "op": "gte", "value": 4000}]}


def test_a_segment_is_data_and_reads_the_lead_profile() -> None:
    leads = profiles({"lead_id": 1}, {"lead_id": 2, "locations": ["macul"]}, {"lead_id": 3, "budget_max": 3000.0},
                     {"lead_id": 4, "broker_id": 2})
    found = members(leads, pl.DataFrame({"segment_id": [7], "broker_id": [1], "rules": [json.dumps(HOT_BUYERS)]}))
    assert found["lead_id"].to_list() == [1]  # lead 4 is another broker's


@pytest.mark.parametrize(("rules", "message"), [
    ({"all": [{"field": "salary", "op": "eq", "value": 1}]}, "unknown field 'salary'"),
    ({"all": [{"field": "locations", "op": "gte", "value": 1}]}, "locations is a list field"),
    ({"all": []}, "at least one condition"),
    ({"all": [{"field": "score", "op": "gte", "value": "alto"}]}, "score is a number field: its value must be"),
    ({"all": [{"field": "stalled", "op": "eq", "value": 1}]}, "its value must be true or false"),
    ({"all": [{"field": "tags", "op": "any_of", "value": []}]}, "at least one value"),
    ({"all": [{"field": "score", "op": "eq", "value": [1, 2]}]}, "takes one value, not a list"),
])
def test_a_bad_segment_is_refused_with_the_reason(rules: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegmentRules.model_validate(rules)


def campaign(steps: list[dict[str, Any]], trigger: dict[str, Any] | None = None, campaign_id: int = 10) -> Campaign:
    definition = CampaignDefinition.model_validate({"trigger": trigger or {"type": "score_threshold", "score_min": 70},
                                                    "steps": steps})
    return Campaign(campaign_id, 1, "visita", definition, NOON_SANTIAGO - timedelta(days=1))


HELLO = {"action": "message", "template": "Hola {{first_name}}, ¿vemos un depto en {{location}} hasta {{budget}}?",
         "whatsapp_template": {"name": "visita_propuesta", "language": "es", "parameters": ["{{first_name}}"]}}
SANTIAGO = {1: Broker(1, "Acme", "America/Santiago")}


class Decided(dict[str, Any]):
    """One decision row, read as attributes (``payload`` parsed)."""

    def __getattr__(self, name: str) -> Any:
        return self[name]


def decide_one(leads: pl.DataFrame, c: Campaign, now: datetime = NOON_SANTIAGO, sends: int = 0,
               brokers: dict[int, Broker] | None = None) -> Decided:
    due = pl.DataFrame({"campaign_id": [c.campaign_id], "lead_id": [1], "next_step": [0]})
    recent = pl.DataFrame({"lead_id": [1], "sends": [sends]})
    [row] = decide(due, leads, {c.campaign_id: c}, brokers or SANTIAGO, recent, now).iter_rows(named=True)
    return Decided(row, payload=json.loads(row["payload"]) if row["payload"] else None)


def test_triggered_leads_are_enrolled_once_and_opted_out_leads_never() -> None:
    leads = profiles({"lead_id": 1}, {"lead_id": 2, "score": 20}, {"lead_id": 3, "opted_out": True})
    c = campaign([HELLO])
    first = enroll([c], leads, pl.DataFrame(), pl.DataFrame(schema={"campaign_id": pl.Int64, "lead_id": pl.Int64}),
                   NOON_SANTIAGO)
    assert first["lead_id"].to_list() == [1]
    again = enroll([c], leads, pl.DataFrame(), first.select("campaign_id", "lead_id"), NOON_SANTIAGO)
    assert again.is_empty()


def test_a_manual_campaign_enrolls_the_leads_applied_to_it_and_says_why_it_refused_the_others() -> None:
    leads = profiles({"lead_id": 1}, {"lead_id": 2}, {"lead_id": 3, "opted_out": True}, {"lead_id": 4},
                     {"lead_id": 5, "broker_id": 2})
    by_hand = campaign([HELLO], {"type": "manual", "segment": "vip"})
    members = pl.DataFrame({"broker_id": [1, 1, 1], "segment": ["vip"] * 3, "lead_id": [1, 2, 3]})
    none = pl.DataFrame(schema={"campaign_id": pl.Int64, "lead_id": pl.Int64})
    assert enroll([by_hand], leads, members, none, NOON_SANTIAGO).is_empty()  # nobody applied it yet
    requested = pl.DataFrame({"campaign_id": [10] * 5, "lead_id": [1, 3, 4, 5, 9]})
    new = enroll([by_hand], leads, members, none, NOON_SANTIAGO, requested)
    assert new["lead_id"].to_list() == [1]  # lead 2 is in the segment, but nobody applied the campaign to it
    outcomes = manual_outcomes([by_hand], requested, leads, members, new.select("campaign_id", "lead_id"))
    assert sorted(outcomes.select("lead_id", "status", "reason").iter_rows()) == [
        (1, "enrolled", None), (3, "refused", "opted out"), (4, "refused", "not in the campaign's segment 'vip'"),
        (5, "refused", "no longer a live lead of this broker (merged into another lead)"),
        (9, "refused", "no longer a live lead of this broker (merged into another lead)")]


def test_an_opted_out_lead_is_stopped_not_contacted() -> None:
    decision = decide_one(profiles({"opted_out": True}), campaign([HELLO]))
    assert (decision.decision, decision.reason, decision.payload) == ("stop", "opted out", None)


def test_inside_the_window_a_text_is_rendered_for_whatsapp() -> None:
    decision = decide_one(profiles({}), campaign([HELLO]))
    assert decision.decision == "send" and decision.channel == "whatsapp"
    assert decision.payload["text"] == "Hola Camila, ¿vemos un depto en Ñuñoa hasta 5.200 UF?"


def test_outside_the_window_without_a_template_the_step_is_skipped() -> None:
    stale = profiles({"last_whatsapp_at": NOON_SANTIAGO - timedelta(days=3)})
    plain = {k: v for k, v in HELLO.items() if k != "whatsapp_template"}
    decision = decide_one(stale, campaign([plain]))
    assert decision.decision == "skip" and "24-hour window" in decision.reason
    assert decide_one(stale, campaign([HELLO])).payload["template"]["name"] == "visita_propuesta"


def test_quiet_hours_hold_in_each_brokers_timezone() -> None:
    late_in_madrid = datetime(2026, 11, 26, 22, 30, tzinfo=UTC)  # 23:30 in Madrid, 19:30 in Santiago
    both = {1: Broker(1, "Acme", "America/Santiago")}
    assert decide_one(profiles({}), campaign([HELLO]), late_in_madrid, brokers=both).decision == "send"
    madrid = {1: Broker(1, "Acme", "Europe/Madrid")}
    deferred = decide_one(profiles({}), campaign([HELLO]), late_in_madrid, brokers=madrid)
    assert deferred.decision == "defer" and deferred.reason == "quiet hours"
    assert deferred.next_due_at == datetime(2026, 11, 27, 8, tzinfo=UTC)  # 09:00 in Madrid
    assert quiet_until(datetime(2026, 11, 26, 18, tzinfo=UTC), "America/Mexico_City", ContactRules()) is None
    assert quiet_until(datetime(2026, 11, 26, 13, tzinfo=UTC), "America/Mexico_City", ContactRules()) == \
        datetime(2026, 11, 26, 15, tzinfo=UTC)  # 07:00 there: wait until 09:00


def test_the_frequency_cap_defers_and_conditions_skip() -> None:
    assert decide_one(profiles({}), campaign([HELLO]), sends=3).reason == "frequency cap"
    picky = {**HELLO, "conditions": {"score_min": 90, "excluded_tags": ["no_whatsapp"]}}
    assert decide_one(profiles({}), campaign([picky])).reason == "score 80 below 90"
    tagged = {**HELLO, "conditions": {"excluded_tags": ["vip"]}}
    assert decide_one(profiles({"tags": ["vip"]}), campaign([tagged])).reason == "tagged vip"


def test_a_call_needs_a_phone_and_a_stage_move_ignores_quiet_hours() -> None:
    call = {"action": "call", "provider": "bland"}
    assert decide_one(profiles({"phone_e164": None}), campaign([call])).reason == "no phone number to call"
    at_night = datetime(2026, 11, 27, 4, tzinfo=UTC)  # 01:00 in Santiago
    move = decide_one(profiles({}), campaign([{"action": "move_stage", "stage": "seguimiento"}]), at_night)
    assert (move.decision, move.channel) == ("send", "pipeline")


def test_opt_out_words_as_leads_write_them() -> None:
    said: list[str | None] = ["BAJA", "Stop", "no me escriban más", "por favor no llamar", "don't text me again"]
    not_said: list[str | None] = ["¿hay parada de bus cerca?", "quiero bajar el pie", "stopover in Miami", None]
    found = pl.DataFrame({"text": said + not_said}).select(opts_out(pl.col("text")))["text"].to_list()
    assert found == [True] * len(said) + [False] * len(not_said)


def test_templates_fill_what_is_known_and_name_unknown_variables() -> None:
    known = profiles({}).with_columns(visit_time=pl.lit("mañana"), visit_options=pl.lit(""), broker_name=pl.lit("Acme"),
                                      budget_min=pl.lit(None, pl.Float64), property_type=pl.lit(None, pl.String))
    unknown = known.with_columns(name=pl.lit(None, pl.String), locations=pl.lit([], pl.List(pl.String)),
                                 budget_max=pl.lit(None, pl.Float64))
    template = "Hola {{first_name}} , ¿sigues buscando en {{location}} hasta {{budget}}?"
    rendered = [frame.with_columns(**template_columns()).select(render_expr(template)).item()
                for frame in (known, unknown)]
    assert rendered == ["Hola Camila, ¿sigues buscando en Ñuñoa hasta 5.200 UF?",
                        "Hola, ¿sigues buscando en la zona que buscas hasta tu presupuesto?"]
    words = known.with_columns(**template_columns()).select(render_expr("quieres {{operation}} {{property_type}}"))
    assert words.item() == "quieres comprar propiedad"  # codes read as Spanish words; unknown type: a neutral one
    assert unknown_variables("Hola {{nombre}}") == ["nombre"]
