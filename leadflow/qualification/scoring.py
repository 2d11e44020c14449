"""Lead score 0–100 with a breakdown of which facts gave how many points; temperature from thresholds.

Built on the seed product's scheme (financial health, profile, engagement, penalties) and tuned
for property search: a lead with a clear operation, budget and location whose timeline is near
or whose financing is in place is hot. Weights and thresholds are per broker (``ScoringConfig``).
Pure: the same qualification and engagement always give the same score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from leadflow.qualification.schema import Qualification

Temperature = Literal["cold", "warm", "hot"]


@dataclass(frozen=True)
class ScoringConfig:
    """Points per fact and the thresholds; a broker overrides any of them."""

    # search clarity (what they want)
    operation: int = 8
    property_type: int = 4
    bedrooms: int = 3
    budget: int = 9
    location: int = 6
    # financial readiness
    financing: dict[str, int] = field(default_factory=lambda: {
        "cash": 20, "mortgage_preapproved": 18, "subsidy": 10, "mortgage_needed": 6})
    down_payment: int = 5
    income: int = 5
    dicom_clean: int = 3
    # urgency: (max months, points), first match wins
    timeline: tuple[tuple[int, int], ...] = ((3, 12), (6, 8), (12, 4), (120, 1))
    # contactability
    name: int = 3
    phone: int = 4
    email: int = 3
    # engagement: (min lead messages, points), first match wins
    engagement: tuple[tuple[int, int], ...] = ((6, 12), (3, 7), (1, 2))
    fast_reply_bonus: int = 3  # lead answered within fast_reply_minutes (median)
    fast_reply_minutes: float = 30
    # penalties
    opted_out: int = -30
    dicom_dirty: int = -15
    has_debt: int = -5
    inactive: int = -10
    inactive_days: int = 60
    invalid_phone: int = -5
    # DICOM rule: arrears above this (in the arrears' currency) block financing readiness
    max_arrears: float = 0.0
    # temperature thresholds
    hot: int = 70
    warm: int = 40


@dataclass(frozen=True)
class Engagement:
    """What the conversation's shape says, beyond its content (all optional)."""

    lead_messages: int = 0
    median_reply_minutes: float | None = None
    days_since_last_message: float | None = None
    phone_given_but_invalid: bool = False


@dataclass(frozen=True)
class Score:
    score: int
    temperature: Temperature
    breakdown: dict[str, int]
    financing_ready: bool
    reasons: tuple[str, ...] = ()


def score(q: Qualification, engagement: Engagement | None = None, config: ScoringConfig | None = None) -> Score:
    c = config or ScoringConfig()
    e = engagement or Engagement()
    points: dict[str, int] = {}
    reasons: list[str] = []

    def add(name: str, value: int, when: bool = True) -> None:
        if when and value:
            points[name] = value

    add("operation", c.operation, q.operation is not None)
    add("property_type", c.property_type, q.property_type is not None)
    add("bedrooms", c.bedrooms, q.bedrooms_min is not None)
    has_budget = q.budget_max is not None or q.budget_min is not None
    add("budget", c.budget, has_budget)
    add("location", c.location, bool(q.locations))

    blocked = q.dicom_status == "dirty" or (q.arrears_amount is not None and q.arrears_amount > c.max_arrears)
    if blocked:
        reasons.append("dicom_dirty" if q.dicom_status == "dirty" else f"arrears {q.arrears_amount:g} above "
                                                                       f"{c.max_arrears:g}")
    financing_ready = q.financing in ("cash", "mortgage_preapproved") and not blocked
    if q.financing and not (blocked and q.financing != "cash"):
        add("financing", c.financing.get(q.financing, 0))
    add("down_payment", c.down_payment, q.down_payment is not None)
    add("income", c.income, q.monthly_income is not None)
    add("dicom_clean", c.dicom_clean, q.dicom_status == "clean")
    if q.timeline_months is not None:
        add("timeline", next((p for months, p in c.timeline if q.timeline_months <= months), 0))
    add("name", c.name, q.name is not None)
    add("phone", c.phone, q.phone is not None)
    add("email", c.email, q.email is not None)
    add("engagement", next((p for n, p in c.engagement if e.lead_messages >= n), 0))
    add("fast_replies", c.fast_reply_bonus,
        e.median_reply_minutes is not None and e.median_reply_minutes <= c.fast_reply_minutes)

    add("opted_out", c.opted_out, q.opted_out)
    add("dicom_dirty", c.dicom_dirty, q.dicom_status == "dirty")
    add("has_debt", c.has_debt, q.dicom_status == "has_debt")
    add("inactive", c.inactive, e.days_since_last_message is not None and e.days_since_last_message > c.inactive_days)
    add("invalid_phone", c.invalid_phone, e.phone_given_but_invalid)

    total = max(0, min(100, sum(points.values())))
    # Property-search readiness: clear on what, where and how much, and either soon or able to pay.
    search_ready = (q.operation is not None and has_budget and bool(q.locations)
                    and ((q.timeline_months is not None and q.timeline_months <= 3) or financing_ready)
                    and not q.opted_out and not blocked)
    if search_ready and total < c.hot:
        points["search_ready"] = c.hot - total
        total = c.hot
    temperature: Temperature = "hot" if total >= c.hot else "warm" if total >= c.warm else "cold"
    if q.opted_out:
        temperature = "cold"  # never pursued, whatever else they said
    return Score(total, temperature, points, financing_ready, tuple(reasons))
