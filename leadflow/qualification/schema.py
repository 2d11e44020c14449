"""The qualification of a lead: one versioned schema, whoever fills it (rules or an LLM).

Amounts are plain numbers in the stated currency ("5.200 UF" → 5200 with currency UF). A field
stays None when the conversation does not state it: nothing is guessed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

QUALIFICATION_VERSION = 2  # 2: commitment, hesitation, urgency and asking price

Operation = Literal["buy", "rent", "sell", "invest"]
PropertyType = Literal["apartment", "house", "land", "office", "commercial"]
Currency = Literal["UF", "CLP", "USD", "MXN", "ARS", "EUR"]
BudgetPeriod = Literal["total", "month"]
Financing = Literal["cash", "mortgage_preapproved", "mortgage_needed", "subsidy"]
DicomStatus = Literal["clean", "dirty", "has_debt", "unknown"]
Commitment = Literal["visit", "valuation", "call"]
Hesitation = Literal["declined", "postponed"]
UrgencyReason = Literal["contract_ending", "moving"]


class Qualification(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = QUALIFICATION_VERSION
    name: str | None = None
    phone: str | None = Field(default=None, description="E.164")
    email: str | None = None
    operation: Operation | None = None
    property_type: PropertyType | None = None
    bedrooms_min: int | None = Field(default=None, ge=0, le=20)
    budget_min: float | None = Field(default=None, ge=0)
    budget_max: float | None = Field(default=None, ge=0)
    budget_currency: Currency | None = None
    budget_period: BudgetPeriod | None = None
    locations: list[str] = Field(default_factory=list, description="lowercase place names")
    timeline_months: int | None = Field(default=None, ge=0, le=120)
    financing: Financing | None = None
    down_payment: float | None = Field(default=None, ge=0)
    monthly_income: float | None = Field(default=None, ge=0)
    dicom_status: DicomStatus | None = None
    arrears_amount: float | None = Field(default=None, ge=0)
    opted_out: bool = False
    # What the lead said yes or no to: the latest stance wins ("dale" then "al final no puedo" is postponed).
    commitment: Commitment | None = Field(default=None, description="a visit, valuation or call the lead accepted")
    commitment_at: datetime | None = Field(
        default=None, description="when, in the lead's local time, resolved against the message's own timestamp")
    commitment_when: str | None = Field(default=None, description="the proposed time in the conversation's words")
    hesitation: Hesitation | None = None
    urgency_reason: UrgencyReason | None = None
    # A seller's price is not a budget: what they ask for their property.
    asking_price: float | None = Field(default=None, ge=0)
    asking_currency: Currency | None = None
    summary: str | None = None


# The `leadflow qualify` output contract: these keys, in this order (plus score and temperature).
CONTRACT_KEYS = (
    "id", "name", "phone", "email", "operation", "property_type", "bedrooms_min", "budget_min", "budget_max",
    "budget_currency", "budget_period", "locations", "timeline_months", "financing", "down_payment",
    "monthly_income", "dicom_status", "arrears_amount", "opted_out", "commitment", "commitment_at",
    "commitment_when", "hesitation", "urgency_reason", "asking_price", "asking_currency", "summary", "score",
    "temperature",
)

# The schema's fields as polars columns (what the vectorised qualifier and scorer read and write).
QUALIFICATION_SCHEMA: dict[str, pl.DataType] = {
    "name": pl.String(), "phone": pl.String(), "email": pl.String(), "operation": pl.String(),
    "property_type": pl.String(), "bedrooms_min": pl.Int64(), "budget_min": pl.Float64(), "budget_max": pl.Float64(),
    "budget_currency": pl.String(), "budget_period": pl.String(), "locations": pl.List(pl.String()),
    "timeline_months": pl.Int64(), "financing": pl.String(), "down_payment": pl.Float64(),
    "monthly_income": pl.Float64(), "dicom_status": pl.String(), "arrears_amount": pl.Float64(),
    "opted_out": pl.Boolean(), "commitment": pl.String(), "commitment_at": pl.Datetime("us"),
    "commitment_when": pl.String(), "hesitation": pl.String(), "urgency_reason": pl.String(),
    "asking_price": pl.Float64(), "asking_currency": pl.String(), "summary": pl.String(),
}
