"""Lead score 0–100 with a breakdown of which facts gave how many points; temperature from thresholds.

Built on the seed product's scheme (financial health, profile, engagement, penalties) and tuned
for property search as agents judge it:

- hot: a lead who accepted a visit, valuation or call and can go through with it (financing in
  place, renting against a lease end or a move, or a seller with a price and a deadline), or a
  clear search (what, where, how much) whose timeline is near or whose financing is in place
  — unless they declined or put off the agent's proposal;
- warm at least: a clear search (operation or property; location; budget, down payment or a
  seller's asking price), even when they are only looking;
- a lead who declines or postpones loses points, and never reaches hot by clarity alone.

Weights and thresholds are per broker (``ScoringConfig``). Pure: the same qualification and
engagement always give the same score.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

from leadflow.qualification.schema import QUALIFICATION_SCHEMA, Qualification

Temperature = Literal["cold", "warm", "hot"]


@dataclass(frozen=True)
class ScoringConfig:
    """Points per fact and the thresholds; a broker overrides any of them."""

    # search clarity (what they want)
    operation: int = 8
    property_type: int = 4
    bedrooms: int = 3
    budget: int = 9
    asking_price: int = 9  # a seller's price: as clear a "how much" as a buyer's budget
    location: int = 6
    # financial readiness
    financing: dict[str, int] = field(default_factory=lambda: {
        "cash": 20, "mortgage_preapproved": 18, "subsidy": 10, "mortgage_needed": 6})
    down_payment: int = 5
    # Monthly income (in the broker's currency): (at least, points), first match wins. Empty: the
    # broker country's brackets (INCOME_BRACKETS); a broker without either gets ``income`` flat.
    income_brackets: tuple[tuple[float, int], ...] = ()
    income: int = 5
    affordable_rent: int = 5  # a renter whose income is at least rent_income_ratio × the rent
    rent_income_ratio: float = 3.0
    dicom_clean: int = 3
    # urgency: (max months, points), first match wins
    timeline: tuple[tuple[int, int], ...] = ((3, 12), (6, 8), (12, 4), (120, 1))
    urgency_reason: int = 6  # a lease ending or a moving date behind the timeline
    # what the lead said yes or no to
    commitment: dict[str, int] = field(default_factory=lambda: {"visit": 15, "valuation": 15, "call": 8})
    hesitation: dict[str, int] = field(default_factory=lambda: {"postponed": -8, "declined": -12})
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

    @classmethod
    def from_settings(cls, overrides: Mapping[str, Any] | None) -> ScoringConfig:
        """The defaults with a broker's overrides (``broker_settings.scoring``, JSON: steps as lists); keys
        that are not fields are ignored (``leadflow.settings_schema`` refuses them when saved)."""
        known = {k: v for k, v in (overrides or {}).items() if k in cls.__dataclass_fields__}
        converted: dict[str, Any] = {k: tuple(map(tuple, v)) if isinstance(v, list) else v for k, v in known.items()}
        return dataclasses.replace(cls(), **converted)


# Net monthly income brackets per market, in its currency: what a household earns that banks and
# landlords lend or rent to comfortably (a starting point; each broker overrides income_brackets).
INCOME_BRACKETS: dict[str, tuple[tuple[float, int], ...]] = {
    "CL": ((3_000_000, 15), (1_800_000, 11), (1_000_000, 7), (0, 3)),
    "MX": ((80_000, 15), (45_000, 11), (20_000, 7), (0, 3)),
    "AR": ((4_000_000, 15), (2_000_000, 11), (1_000_000, 7), (0, 3)),
    "ES": ((4_500, 15), (3_000, 11), (1_800, 7), (0, 3)),
    "US": ((12_000, 15), (7_000, 11), (4_000, 7), (0, 3)),
}
LOCAL_CURRENCY = {"CL": "CLP", "MX": "MXN", "AR": "ARS", "ES": "EUR", "US": "USD"}


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


COMPONENTS = ("operation", "property_type", "bedrooms", "budget", "asking_price", "location", "financing",
              "down_payment", "income", "affordable_rent", "dicom_clean", "timeline", "urgency_reason", "commitment",
              "hesitation", "name", "phone", "email", "engagement", "fast_replies", "opted_out", "dicom_dirty",
              "has_debt", "inactive", "invalid_phone")


def _first(value: pl.Expr, steps: tuple[tuple[float, int], ...], compare: str) -> pl.Expr:
    """Points of the first (limit, points) step the value reaches (``<=`` or ``>=`` the limit), else 0."""
    expr: pl.Expr = pl.lit(0)
    for limit, points in reversed(steps):
        hit = value <= limit if compare == "<=" else value >= limit
        expr = pl.when(hit).then(pl.lit(points)).otherwise(expr)
    return expr


def score_frame(frame: pl.DataFrame, config: ScoringConfig | None = None, country: str | None = None) -> pl.DataFrame:
    """Score every row of a frame of qualifications (the schema's columns).

    Optional engagement columns: lead_messages, median_reply_minutes, days_since_last_message,
    phone_given_but_invalid. ``country`` (the broker's) picks the income brackets and the currency
    incomes are read in. Adds score, temperature, financing_ready, reasons (list) and one
    ``points_<component>`` column per ``COMPONENTS`` entry plus ``points_search_ready`` (what lifts a
    ready lead to the hot threshold) and ``points_clear_search`` (what lifts a clear one to warm).
    Qualifications from before the commitment fields (no such columns) score as if none was said.
    """
    c = config or ScoringConfig()
    col = pl.col

    def optional(name: str, dtype: pl.DataType, default: object) -> pl.Expr:
        return col(name).cast(dtype) if name in frame.columns else pl.lit(default, dtype)

    lead_messages = optional("lead_messages", pl.Int64(), 0).fill_null(0)
    reply = optional("median_reply_minutes", pl.Float64(), None)
    idle = optional("days_since_last_message", pl.Float64(), None)
    invalid_phone = optional("phone_given_but_invalid", pl.Boolean(), False).fill_null(False)
    commitment = optional("commitment", pl.String(), None)
    hesitation = optional("hesitation", pl.String(), None)
    urgency_reason = optional("urgency_reason", pl.String(), None)
    asking_price = optional("asking_price", pl.Float64(), None)
    has_budget = col("budget_max").is_not_null() | col("budget_min").is_not_null()
    has_location = col("locations").list.len().fill_null(0) > 0
    opted_out = col("opted_out").fill_null(False)
    dirty = (col("dicom_status") == "dirty").fill_null(False)
    over_arrears = (col("arrears_amount") > c.max_arrears).fill_null(False)
    blocked = dirty | over_arrears
    financing_points = col("financing").replace_strict(c.financing, default=0, return_dtype=pl.Int64)
    market = (country or "").upper()
    brackets = c.income_brackets or INCOME_BRACKETS.get(market, ())
    income = col("monthly_income")
    income_points = (_first(income, brackets, ">=") if brackets
                     else pl.lit(c.income))
    # Rent and income in the same (local) currency: comparable without exchange rates.
    local_rent = ((col("operation") == "rent") & (col("budget_currency") == LOCAL_CURRENCY.get(market, ""))
                  & (col("budget_period") == "month"))
    affordable = local_rent & (income >= col("budget_max") * c.rent_income_ratio)

    def points(value: int, when: pl.Expr) -> pl.Expr:
        return pl.when(when.fill_null(False)).then(pl.lit(value)).otherwise(pl.lit(0))

    components = {
        "operation": points(c.operation, col("operation").is_not_null()),
        "property_type": points(c.property_type, col("property_type").is_not_null()),
        "bedrooms": points(c.bedrooms, col("bedrooms_min").is_not_null()),
        "budget": points(c.budget, has_budget),
        "asking_price": points(c.asking_price, asking_price.is_not_null()),
        "location": points(c.location, has_location),
        "financing": pl.when(col("financing").is_not_null() & ~(blocked & (col("financing") != "cash")))
        .then(financing_points).otherwise(pl.lit(0)),
        "down_payment": points(c.down_payment, col("down_payment").is_not_null()),
        "income": pl.when(income.is_not_null()).then(income_points).otherwise(pl.lit(0)),
        "affordable_rent": points(c.affordable_rent, affordable),
        "dicom_clean": points(c.dicom_clean, col("dicom_status") == "clean"),
        "timeline": pl.when(col("timeline_months").is_not_null())
        .then(_first(col("timeline_months"), c.timeline, "<=")).otherwise(pl.lit(0)),
        # A reason makes a date urgent only when the date is near (or unsaid): "para mudarnos en unos 6 meses"
        # names a move, and is a timeline like any other.
        "urgency_reason": points(c.urgency_reason, urgency_reason.is_not_null()
                                 & (col("timeline_months").is_null() | (col("timeline_months") <= 3))),
        "commitment": commitment.replace_strict(c.commitment, default=0, return_dtype=pl.Int64).fill_null(0),
        "hesitation": hesitation.replace_strict(c.hesitation, default=0, return_dtype=pl.Int64).fill_null(0),
        "name": points(c.name, col("name").is_not_null()),
        "phone": points(c.phone, col("phone").is_not_null()),
        "email": points(c.email, col("email").is_not_null()),
        "engagement": _first(lead_messages, c.engagement, ">="),
        "fast_replies": points(c.fast_reply_bonus, reply <= c.fast_reply_minutes),
        "opted_out": points(c.opted_out, opted_out),
        "dicom_dirty": points(c.dicom_dirty, dirty),
        "has_debt": points(c.has_debt, col("dicom_status") == "has_debt"),
        "inactive": points(c.inactive, idle > c.inactive_days),
        "invalid_phone": points(c.invalid_phone, invalid_phone),
    }
    financing_ready = col("financing").is_in(["cash", "mortgage_preapproved"]).fill_null(False) & ~blocked
    soon = (col("timeline_months") <= 3).fill_null(False)
    hesitant = hesitation.is_not_null()
    # Clear on what (the operation, or the property: "busco depto" is a search), where and how much (a
    # budget, a down payment that says what they can put in, or a seller's asking price).
    clear = ((col("operation").is_not_null() | col("property_type").is_not_null())
             & (has_budget | col("down_payment").is_not_null() | asking_price.is_not_null()) & has_location)
    # Able to go through with what they accepted: paying, renting against a date, or selling by one.
    able = (financing_ready
            | ((col("operation") == "rent") & (soon | urgency_reason.is_not_null()))
            | ((col("operation") == "sell") & asking_price.is_not_null() & (soon | urgency_reason.is_not_null())))
    # A seller is ready when they let the agent in (a valuation, a visit), not by stating a price alone.
    seller = (col("operation") == "sell").fill_null(False)
    search_ready = (((clear & ~seller & (soon | financing_ready)) | (commitment.is_not_null() & able.fill_null(False)))
                    & ~hesitant & ~opted_out & ~blocked)
    clear_search = clear & ~opted_out & ~dirty
    total = pl.sum_horizontal(*(col(f"points_{name}") for name in COMPONENTS)).clip(0, 100)
    scored = frame.lazy().with_columns(
        **{f"points_{name}": expr.cast(pl.Int64) for name, expr in components.items()},
        financing_ready=financing_ready,
        _search_ready=search_ready,
        reasons=pl.concat_list(
            pl.when(dirty).then(pl.lit("dicom_dirty"))
            .when(over_arrears).then(pl.lit("arrears ") + _g(col("arrears_amount")) + pl.lit(" above ")
                                     + pl.lit(_plain(c.max_arrears)))).list.drop_nulls(),
        _clear_search=clear_search.fill_null(False),
    ).with_columns(_total=total).with_columns(
        points_search_ready=pl.when(col("_search_ready") & (col("_total") < c.hot))
        .then(pl.lit(c.hot) - col("_total")).otherwise(pl.lit(0)).cast(pl.Int64),
        points_clear_search=pl.when(~col("_search_ready") & col("_clear_search") & (col("_total") < c.warm))
        .then(pl.lit(c.warm) - col("_total")).otherwise(pl.lit(0)).cast(pl.Int64),
    ).with_columns(score=(col("_total") + col("points_search_ready") + col("points_clear_search")).cast(pl.Int32)
    ).with_columns(
        temperature=pl.when(opted_out).then(pl.lit("cold"))  # never pursued, whatever else they said
        .when(col("score") >= c.hot).then(pl.lit("hot"))
        .when(col("score") >= c.warm).then(pl.lit("warm")).otherwise(pl.lit("cold")),
    ).drop("_total", "_search_ready", "_clear_search")
    return scored.collect()


def _g(value: pl.Expr) -> pl.Expr:
    """Python's ``format(x, "g")`` for the amounts we print: whole numbers without ".0"."""
    return pl.when(value == value.floor()).then(value.cast(pl.Int64).cast(pl.String)).otherwise(value.cast(pl.String))


def _plain(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def breakdown(row: dict[str, object]) -> dict[str, int]:
    """The non-zero points of one scored row, by component (what the lead's score is made of)."""
    out = {}
    for name in (*COMPONENTS, "search_ready", "clear_search"):
        value = row.get(f"points_{name}")
        if isinstance(value, int) and value:
            out[name] = value
    return out


def score(q: Qualification, engagement: Engagement | None = None, config: ScoringConfig | None = None,
          country: str | None = None) -> Score:
    """One lead's score (a convenience; bulk scoring uses ``score_frame``)."""
    e = engagement or Engagement()
    row = {**q.model_dump(), "lead_messages": e.lead_messages, "median_reply_minutes": e.median_reply_minutes,
           "days_since_last_message": e.days_since_last_message,
           "phone_given_but_invalid": e.phone_given_but_invalid}
    frame = pl.DataFrame([row], schema_overrides=QUALIFICATION_SCHEMA | ENGAGEMENT_SCHEMA)
    out = score_frame(frame, config, country).row(0, named=True)
    return Score(out["score"], out["temperature"], breakdown(out), out["financing_ready"], tuple(out["reasons"]))


ENGAGEMENT_SCHEMA: dict[str, pl.DataType] = {
    "lead_messages": pl.Int64(), "median_reply_minutes": pl.Float64(), "days_since_last_message": pl.Float64(),
    "phone_given_but_invalid": pl.Boolean(),
}
