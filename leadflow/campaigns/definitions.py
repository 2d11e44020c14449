"""What a campaign is: a trigger that enrolls leads and ordered steps, stored as JSON and validated here.

Example (warm renters silent for a week get a reminder, then a call two days later)::

    {"trigger": {"type": "inactivity", "days": 7, "segment": "warm renters"},
     "steps": [{"action": "message", "template": "Hola {{name}}, ¿sigues buscando en {{location}}?",
                "whatsapp_template": {"name": "seguimiento", "language": "es"}},
               {"action": "call", "provider": "vapi", "delay_hours": 48,
                "conditions": {"score_min": 40, "excluded_tags": ["no_calls"]}}]}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CampaignStatus = Literal["draft", "active", "paused", "completed"]


class Trigger(BaseModel):
    """Who is enrolled: ``manual`` (only leads enrolled by hand), ``score_threshold`` (score ≥
    score_min), ``stage_change`` (entered ``stage``), ``inactivity`` (silent ≥ days) or ``segment``
    (member of ``segment``). A ``segment`` on any other type narrows it."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["manual", "score_threshold", "stage_change", "inactivity", "segment"]
    score_min: int | None = Field(default=None, ge=0, le=100)
    stage: str | None = None
    days: float | None = Field(default=None, gt=0)
    segment: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Trigger:
        needs = {"score_threshold": "score_min", "stage_change": "stage", "inactivity": "days", "segment": "segment"}
        field = needs.get(self.type)
        if field and getattr(self, field) is None:
            raise ValueError(f"a {self.type} trigger needs {field!r}")
        return self


class StepConditions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    score_min: int | None = None
    score_max: int | None = None
    required_fields: list[str] = []
    excluded_tags: list[str] = []


class WhatsAppTemplate(BaseModel):
    """An approved WhatsApp template, used outside the 24-hour customer-service window."""

    model_config = ConfigDict(extra="forbid")

    name: str
    language: str = "es"
    parameters: list[str] = []  # each rendered like a message ("{{name}}")


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["message", "call", "visit", "move_stage"]
    delay_hours: float = Field(default=0, ge=0)
    template: str | None = None
    whatsapp_template: WhatsAppTemplate | None = None
    channel: Literal["auto", "whatsapp", "telegram"] = "auto"
    provider: Literal["vapi", "bland"] = "vapi"
    stage: str | None = None
    visit_minutes: int = Field(default=60, gt=0)
    conditions: StepConditions = StepConditions()

    @model_validator(mode="after")
    def _complete(self) -> Step:
        if self.action in ("message", "visit") and not self.template:
            raise ValueError(f"a {self.action} step needs a 'template'")
        if self.action == "move_stage" and not self.stage:
            raise ValueError("a move_stage step needs a 'stage'")
        return self


class CampaignDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trigger: Trigger
    steps: list[Step] = Field(min_length=1)
