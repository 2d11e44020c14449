"""Scores, temperatures and the DICOM rule (pure)."""

from __future__ import annotations

import pytest

from leadflow.qualification.contract import qualify_conversation
from leadflow.qualification.schema import Qualification
from leadflow.qualification.scoring import Engagement, ScoringConfig, score
from tests.qualification_eval import evaluate_all, load

READY = Qualification(operation="buy", property_type="apartment", budget_max=5200, budget_currency="UF",
                      locations=["ñuñoa"], financing="mortgage_preapproved", name="Camila", phone="+56987654321")


def test_clear_search_with_financing_in_place_is_hot() -> None:
    result = score(READY, Engagement(lead_messages=2))
    assert result.temperature == "hot" and result.financing_ready


def test_breakdown_explains_the_score() -> None:
    result = score(READY, Engagement(lead_messages=4))
    assert sum(result.breakdown.values()) == result.score
    assert result.breakdown["financing"] == 18 and result.breakdown["location"] == 6


def test_opted_out_lead_is_cold_and_penalised() -> None:
    result = score(READY.model_copy(update={"opted_out": True}), Engagement(lead_messages=8))
    assert result.temperature == "cold" and result.breakdown["opted_out"] == -30


def test_dirty_dicom_is_never_financing_ready_and_the_reason_is_recorded() -> None:
    result = score(READY.model_copy(update={"dicom_status": "dirty"}), Engagement(lead_messages=8))
    assert not result.financing_ready
    assert "financing" not in result.breakdown and "search_ready" not in result.breakdown
    assert result.reasons == ("dicom_dirty",) and result.temperature != "hot"


def test_arrears_above_the_brokers_threshold_block_financing_readiness() -> None:
    lead = READY.model_copy(update={"arrears_amount": 900_000.0})
    assert not score(lead, config=ScoringConfig(max_arrears=500_000)).financing_ready
    assert score(lead, config=ScoringConfig(max_arrears=1_000_000)).financing_ready


def test_a_broker_can_move_the_thresholds() -> None:
    lead = Qualification(operation="rent", locations=["providencia"])
    assert score(lead, config=ScoringConfig(warm=10)).temperature == "warm"
    assert score(lead).temperature == "cold"


def test_inactivity_and_fast_replies_count() -> None:
    slow = score(READY, Engagement(lead_messages=3, days_since_last_message=90)).breakdown
    fast = score(READY, Engagement(lead_messages=3, median_reply_minutes=5)).breakdown
    assert slow["inactive"] == -10 and fast["fast_replies"] == 3


@pytest.mark.parametrize("case", load(), ids=lambda c: c["id"])
def test_every_labelled_conversation_scores_in_range(case: dict[str, object]) -> None:
    row = qualify_conversation(case, case.get("country"))  # type: ignore[arg-type]
    assert 0 <= row["score"] <= 100 and row["temperature"] in ("cold", "warm", "hot")


def test_income_scores_by_the_brokers_market_brackets() -> None:
    def income_points(amount: float, country: str) -> int:
        return score(Qualification(monthly_income=amount), country=country).breakdown.get("income", 0)

    assert income_points(3_500_000, "CL") > income_points(1_200_000, "CL") > income_points(500_000, "CL") > 0
    assert income_points(90_000, "MX") == income_points(3_500_000, "CL")  # each market in its own currency
    custom = ScoringConfig(income_brackets=((10_000_000, 20), (0, 1)))
    assert score(Qualification(monthly_income=3_500_000), config=custom, country="CL").breakdown["income"] == 1


def test_a_renter_earning_three_times_the_rent_is_affordable() -> None:
    renter = Qualification(operation="rent", budget_max=600_000, budget_currency="CLP", budget_period="month",
                           monthly_income=2_000_000)
    assert score(renter, country="CL").breakdown["affordable_rent"] == 5
    stretched = renter.model_copy(update={"monthly_income": 1_200_000})
    assert "affordable_rent" not in score(stretched, country="CL").breakdown
    in_uf = renter.model_copy(update={"budget_currency": "UF", "budget_max": 15})  # no exchange rate: no claim
    assert "affordable_rent" not in score(in_uf, country="CL").breakdown


FINANCED = Qualification(operation="buy", property_type="apartment", budget_max=4800, budget_currency="UF",
                         locations=["ñuñoa"], financing="mortgage_preapproved")


def test_a_financed_lead_who_accepted_a_visit_is_hot_and_the_visit_counts() -> None:
    committed = score(FINANCED.model_copy(update={"commitment": "visit", "budget_max": None}),
                      Engagement(lead_messages=3))
    assert committed.temperature == "hot" and committed.breakdown["commitment"] == 15


def test_an_urgent_renter_who_accepted_a_visit_is_hot_without_a_budget() -> None:
    renter = Qualification(operation="rent", property_type="house", locations=["del valle"], timeline_months=0,
                           urgency_reason="moving", commitment="visit")
    assert score(renter, Engagement(lead_messages=1)).temperature == "hot"
    assert score(renter.model_copy(update={"commitment": None}), Engagement(lead_messages=1)).temperature != "hot"


def test_a_clear_near_lead_who_postpones_or_declines_is_warm_not_hot() -> None:
    near = Qualification(operation="buy", property_type="house", bedrooms_min=3, budget_max=5500,
                         budget_currency="UF", locations=["la florida"], timeline_months=2)
    assert score(near, Engagement(lead_messages=3)).temperature == "hot"
    for hesitation in ("postponed", "declined"):
        result = score(near.model_copy(update={"hesitation": hesitation}), Engagement(lead_messages=3))
        assert result.temperature == "warm" and result.breakdown["hesitation"] < 0, hesitation


def test_a_seller_scores_on_price_deadline_and_valuation_not_on_a_budget() -> None:
    seller = Qualification(operation="sell", property_type="house", locations=["zapopan"], asking_price=11_000_000,
                           asking_currency="MXN", timeline_months=2)
    browsing = score(seller, Engagement(lead_messages=2), country="MX")
    assert browsing.temperature == "warm" and "budget" not in browsing.breakdown
    assert browsing.breakdown["asking_price"] == 9
    committed = score(seller.model_copy(update={"commitment": "valuation"}), Engagement(lead_messages=2), country="MX")
    assert committed.temperature == "hot"
    no_deadline = seller.model_copy(update={"commitment": "valuation", "timeline_months": None})
    assert score(no_deadline, Engagement(lead_messages=2), country="MX").temperature == "warm"


def test_a_clear_search_is_at_least_warm() -> None:
    clear = Qualification(operation="rent", budget_max=600_000, budget_currency="CLP", budget_period="month",
                          locations=["providencia"])
    result = score(clear, Engagement(lead_messages=2))
    assert result.temperature == "warm" and result.breakdown["clear_search"] > 0
    assert score(clear.model_copy(update={"locations": []})).temperature == "cold"
    assert score(clear.model_copy(update={"opted_out": True})).temperature == "cold"


def test_a_broker_can_weigh_commitment_and_hesitation() -> None:
    lead = FINANCED.model_copy(update={"commitment": "call"})
    custom = ScoringConfig(commitment={"visit": 30, "valuation": 30, "call": 25}, hesitation={"declined": -40})
    assert score(lead, config=custom).breakdown["commitment"] == 25
    declined = FINANCED.model_copy(update={"hesitation": "declined"})
    assert score(declined, config=custom).breakdown["hesitation"] == -40


def test_temperature_accuracy_on_the_labelled_set() -> None:
    _, temperature, misses = evaluate_all()
    assert temperature >= 0.85, [m for m in misses if "temperature" in m]
