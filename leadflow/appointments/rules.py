"""When a broker's people take visits: working hours per weekday, days off, visit length and buffer.

``ScheduleRules`` is the broker's section ``appointments`` of ``leadflow.broker_settings`` (validated by
``settings_schema``); ``AgentSchedule`` is one person's row of ``leadflow.agent_schedules``, whose own hours,
when set, replace the broker's. Times are wall-clock times in the broker's timezone (``brokers.timezone``):
"09:00" stays nine in the morning on both sides of a daylight-saving change.
Pure: no database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Kind = Literal["in_person", "virtual"]


class RulesError(ValueError):
    """Invalid schedule rules; the message names each wrong field and why."""


class Window(BaseModel):
    """One stretch of working time in a day, wall clock: ``start`` inclusive, ``end`` exclusive."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end <= self.start:
            raise ValueError(f"ends ({self.end:%H:%M}) before it starts ({self.start:%H:%M})")
        return self

    def label(self) -> str:
        return f"{self.start:%H:%M}–{self.end:%H:%M}"


Hours = dict[Weekday, tuple[Window, ...]]


def _no_overlaps(hours: Hours) -> Hours:
    for day, windows in hours.items():
        ordered = sorted(windows, key=lambda w: w.start)
        for before, after in pairwise(ordered):
            if after.start < before.end:
                raise ValueError(f"{day}: {before.label()} and {after.label()} overlap")
        hours[day] = tuple(ordered)
    return hours


def _weekdays(value: Any) -> Any:
    return {str(k).lower()[:3]: v for k, v in value.items()} if isinstance(value, dict) else value


DEFAULT_HOURS: Hours = {
    **{d: (Window(start=time(9), end=time(19)),) for d in WEEKDAYS[:5]},
    "sat": (Window(start=time(10), end=time(14)),),
}


class ScheduleRules(BaseModel):
    """A broker's visiting rules. Everything has a default a Chilean office would recognise."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    hours: Hours = Field(default_factory=lambda: dict(DEFAULT_HOURS))
    visit_minutes: int = Field(default=60, ge=15, le=480)
    # Time kept free after each visit (travel between properties): two visits are at least this far apart.
    buffer_minutes: int = Field(default=30, ge=0, le=240)
    # Slots start on this grid (09:00, 09:30, …).
    step_minutes: Literal[15, 20, 30, 60] = 30
    # Nothing is offered sooner than this from now: a person needs time to get there.
    min_notice_minutes: int = Field(default=120, ge=0, le=7 * 24 * 60)
    horizon_days: int = Field(default=14, ge=1, le=90)
    offer_count: int = Field(default=3, ge=1, le=5)
    # Days nobody takes visits (national holidays, the office's days off).
    holidays: tuple[date, ...] = ()
    default_kind: Kind = "in_person"
    virtual_allowed: bool = True
    # Where in-person visits meet when the lead's property is not known (the office, a showroom).
    address: str | None = Field(default=None, min_length=1, max_length=300)
    # Reminders before the visit, in hours (the scheduled batch sends them on the lead's channel).
    reminder_hours: tuple[Annotated[int, Field(ge=1, le=168)], ...] = (24, 1)
    # Outside WhatsApp's 24-hour window a reminder can only be this approved template, with four body
    # parameters: the lead's first name, the date, the time and the place (address or Meet link).
    reminder_template: str = Field(default="recordatorio_visita", pattern=r"^[a-z0-9_]{1,512}$")
    # The template's language as approved in WhatsApp ("es", "es_MX", "en_US"); unset: the broker's language.
    reminder_template_language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")

    _weekday_keys = field_validator("hours", mode="before")(_weekdays)

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: Hours) -> Hours:
        return _no_overlaps(dict(value))

    @model_validator(mode="after")
    def _fits(self) -> ScheduleRules:
        if self.hours and all(
                (w.end.hour * 60 + w.end.minute) - (w.start.hour * 60 + w.start.minute) < self.visit_minutes
                for ws in self.hours.values() for w in ws):
            raise ValueError(f"no working window is long enough for a {self.visit_minutes}-minute visit")
        return self

    @classmethod
    def from_settings(cls, settings: dict[str, Any] | None) -> ScheduleRules:
        try:
            return cls.model_validate(settings or {})
        except ValidationError as exc:
            raise RulesError("; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'appointments'}: {e['msg']}"
                                       for e in exc.errors())) from exc


@dataclass(frozen=True)
class AgentSchedule:
    """Who takes visits. ``agent_id`` None: the broker's own calendar (a broker with nobody set up yet)."""

    agent_id: int | None
    name: str = ""
    hours: Hours | None = None  # None: the broker's
    blocked: frozenset[date] = field(default_factory=frozenset)  # the person's days off

    def hours_in(self, rules: ScheduleRules) -> Hours:
        return self.hours if self.hours is not None else rules.hours


def parse_hours(value: Any) -> Hours:
    """A person's own hours as stored (``{"mon": [{"start": "09:00", "end": "13:00"}], …}``)."""
    try:
        return ScheduleRules.model_validate({"hours": value, "visit_minutes": 15}).hours
    except ValidationError as exc:
        raise RulesError("; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                                   for e in exc.errors())) from exc


def hours_json(hours: Hours) -> dict[str, list[dict[str, str]]]:
    return {day: [{"start": f"{w.start:%H:%M}", "end": f"{w.end:%H:%M}"} for w in hours[day]]
            for day in WEEKDAYS if day in hours}
