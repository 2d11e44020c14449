"""Request and response bodies of the reports API, as /docs shows them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator


class LoginRequest(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)

    @field_validator("email", "password")
    @classmethod
    def storable_text(cls, value: str) -> str:
        # PostgreSQL text cannot hold NUL, nor UTF-8 a lone surrogate (JSON "\ud800"): refuse them here
        # rather than fail in the query or in bcrypt.
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text") from None
        return value


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="seconds")
    role: str
    broker_id: int | None


class Me(BaseModel):
    user_id: int
    email: str
    role: str
    broker_id: int | None


class Broker(BaseModel):
    broker_id: int
    slug: str
    name: str
    country: str
    timezone: str


class StageTotal(BaseModel):
    stage: str
    stage_name: str
    stage_position: int
    leads_entered: int
    leads_advanced: int
    leads_won: int
    leads_stalled: int
    conversion_to_next: float | None = Field(description="leads that went beyond the stage / leads that entered it")
    conversion_to_won: float | None = Field(description="leads that were won / leads that entered the stage")
    share_of_entries: float | None = Field(description="leads that entered the stage / leads that entered entrada")


class FunnelPeriod(BaseModel):
    period_start: date
    stage: str
    stage_name: str
    stage_position: int
    leads_entered: int
    leads_advanced: int
    leads_won: int
    leads_now: int
    leads_stalled: int
    median_days_in_stage: float | None
    conversion_to_next: float
    conversion_to_won: float


class Funnel(BaseModel):
    broker_id: int
    start: date
    end: date
    grain: str
    channel: str
    source: str
    campaign: str
    stages: list[StageTotal]
    periods: list[FunnelPeriod]


class Conversion(BaseModel):
    value: str
    label: str
    leads_entered: int
    leads_won: int
    conversion_to_won: float | None
    stages: list[StageTotal]


class CohortStage(BaseModel):
    stage: str
    stage_name: str
    leads_reached: int
    share_reached: float


class Cohort(BaseModel):
    cohort_week: date
    leads_in_cohort: int
    stages: list[CohortStage]


class SendStats(BaseModel):
    sent: int
    delivered: int
    read: int
    replied: int
    failed: int
    skipped: int
    pending: int
    advanced_after_touch: int
    success_rate: float | None
    reply_rate: float | None


class Campaign(BaseModel):
    campaign_id: int
    name: str
    status: str
    trigger: str | None
    activated_at: datetime | None
    leads_touched: int
    leads_advanced_after_touch: int
    leads_won_after_touch: int
    advance_rate: float | None
    sends: SendStats


class LeadBase(BaseModel):
    lead_id: int
    display_name: str | None
    phone_e164: str | None
    email: str | None
    channels: list[str]
    message_count: int
    first_message_at: datetime | None
    last_message_at: datetime | None
    assigned_user_id: int | None


class LeadRow(LeadBase):
    score: int | None
    temperature: str | None
    financing_ready: bool | None
    stage: str | None
    stage_entered_at: datetime | None
    stalled: bool
    operation: str | None
    property_type: str | None
    bedrooms_min: int | None
    budget_min: float | None
    budget_max: float | None
    budget_currency: str | None
    budget_period: str | None
    locations: list[str] | None
    timeline_months: int | None
    financing: str | None


class LeadPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[LeadRow]


class StageEvent(BaseModel):
    from_stage: str | None
    to_stage: str
    occurred_at: datetime
    reason: str
    automatic: bool


class LeadDetail(LeadBase):
    broker_id: int
    merged_into: int | None
    qualification: dict[str, Any] | None
    score: dict[str, Any] | None = Field(description="score, temperature, financing_ready, breakdown per component, "
                                                     "reasons, scored_at")
    stage: dict[str, Any] | None
    stage_history: list[StageEvent]


class Problem(BaseModel):
    detail: str


class AppointmentCounts(BaseModel):
    leads: int = Field(description="leads whose first contact fell in the periods")
    leads_with_appointment: int = Field(description="of those, the leads that got an appointment")
    appointments_set: int = Field(description="visits of the periods (a rescheduled one counts once)")
    appointments_due: int = Field(description="visits that came due: started, not cancelled")
    appointments_held: int
    appointments_no_show: int
    appointments_cancelled: int
    appointments_unmarked: int = Field(description="came due, not yet marked held or missed")
    appointment_set_rate: float | None = Field(description="leads_with_appointment / leads")
    held_rate: float | None = Field(description="appointments_held / appointments_due")
    no_show_rate: float | None = Field(description="appointments_no_show / appointments_due")


class AppointmentPeriodRates(AppointmentCounts):
    period_start: date


class AppointmentAgentRates(AppointmentCounts):
    agent: str = Field(description="a user id, or 'none': the broker's calendar, an unassigned lead")
    agent_name: str


class AppointmentChannelRates(AppointmentCounts):
    channel: str


class AppointmentRates(BaseModel):
    period: str
    start: date
    end: date
    totals: AppointmentCounts
    periods: list[AppointmentPeriodRates]
    by_agent: list[AppointmentAgentRates]
    by_channel: list[AppointmentChannelRates]
