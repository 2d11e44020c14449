"""Scores, temperatures and the DICOM rule (pure)."""

from __future__ import annotations

import pytest

from leadflow.qualification.contract import qualify_conversation
from leadflow.qualification.schema import Qualification
from leadflow.qualification.scoring import Engagement, ScoringConfig, score
from tests.qualification_eval import load

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
