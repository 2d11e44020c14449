"""Segments: per-broker rules over lead profiles, stored as data and evaluated as polars expressions.

A segment is ``{"all": [...], "any": [...]}`` of conditions ``{"field", "op", "value"}`` (and
nested groups), e.g. hot buyers in Providencia or Ñuñoa with a budget of at least 4.000 UF::

    {"all": [{"field": "temperature", "op": "eq", "value": "hot"},
             {"field": "operation", "op": "eq", "value": "buy"},
             {"field": "locations", "op": "any_of", "value": ["providencia", "ñuñoa"]},
             {"field": "budget_currency", "op": "eq", "value": "UF"},
             {"field": "budget_max", "op": "gte", "value": 4000}]}

Fields are the columns of the lead profile (``PROFILE_FIELDS``); a rule naming an unknown field
or an operator that does not fit it is refused with a message that says which.
"""

from __future__ import annotations

from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, model_validator

# The lead profile a segment reads: field → "text", "number", "bool" or "list" (of text).
PROFILE_FIELDS: dict[str, str] = {
    "score": "number", "temperature": "text", "stage": "text", "stalled": "bool", "operation": "text",
    "property_type": "text", "bedrooms_min": "number", "budget_min": "number", "budget_max": "number",
    "budget_currency": "text", "budget_period": "text", "locations": "list", "timeline_months": "number",
    "financing": "text", "financing_ready": "bool", "dicom_status": "text", "channels": "list", "tags": "list",
    "days_silent": "number", "days_in_stage": "number", "name": "text", "phone_e164": "text", "email": "text",
}
_OPS: dict[str, set[str]] = {
    "text": {"eq", "ne", "in", "not_in", "is_null", "not_null"},
    "number": {"eq", "ne", "gt", "gte", "lt", "lte", "is_null", "not_null"},
    "bool": {"eq", "ne", "is_null", "not_null"},
    "list": {"any_of", "all_of", "none_of", "is_null", "not_null"},
}
OPERATORS = _OPS  # field kind → its operators, for the editors
_LIST_OPS = ("in", "not_in", "any_of", "all_of", "none_of")
Op = Literal["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "any_of", "all_of", "none_of", "is_null",
             "not_null"]


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str
    op: Op
    value: Any = None

    @model_validator(mode="after")
    def _fits(self) -> Condition:
        kind = PROFILE_FIELDS.get(self.field)
        if kind is None:
            raise ValueError(f"unknown field {self.field!r}; segments read {', '.join(sorted(PROFILE_FIELDS))}")
        if self.op not in _OPS[kind]:
            raise ValueError(f"{self.field} is a {kind} field: use one of {', '.join(sorted(_OPS[kind]))}")
        if self.op in _LIST_OPS and not isinstance(self.value, list):
            raise ValueError(f"{self.op} takes a list of values")
        if self.op not in ("is_null", "not_null") and self.value is None:
            raise ValueError(f"{self.field} {self.op} needs a value")
        if self.op in ("is_null", "not_null"):
            return self
        # Checked here, not left to polars: a value of the wrong type fails every segment's evaluation in the batch.
        values = self.value if isinstance(self.value, list) else [self.value]
        if not values:
            raise ValueError(f"{self.field} {self.op} needs at least one value")
        if isinstance(self.value, list) and self.op not in _LIST_OPS:
            raise ValueError(f"{self.field} {self.op} takes one value, not a list")
        fits = {"number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
                "bool": lambda v: isinstance(v, bool)}.get(kind, lambda v: isinstance(v, str))
        if not all(fits(v) for v in values):
            wanted = {"number": "a number", "bool": "true or false"}.get(kind, "text")
            raise ValueError(f"{self.field} is a {kind} field: its value must be {wanted}")
        return self

    def expr(self) -> pl.Expr:
        col, value = pl.col(self.field), self.value
        if isinstance(value, str) and self.field in ("locations", "tags", "channels"):
            value = [value]
        if isinstance(value, list) and self.field in ("locations", "tags"):
            value = [str(v).lower() for v in value]
        match self.op:
            case "eq":
                out = col == value
            case "ne":
                out = col != value
            case "in":
                out = col.is_in(value)
            case "not_in":
                out = ~col.is_in(value)
            case "gt":
                out = col > value
            case "gte":
                out = col >= value
            case "lt":
                out = col < value
            case "lte":
                out = col <= value
            case "any_of":
                out = col.list.eval(pl.element().is_in(value)).list.any()
            case "all_of":
                out = pl.all_horizontal(*(col.list.contains(pl.lit(v)) for v in value))
            case "none_of":
                out = ~col.list.eval(pl.element().is_in(value)).list.any().fill_null(False)
            case "is_null":
                out = col.is_null() | (col.list.len() == 0 if PROFILE_FIELDS[self.field] == "list" else pl.lit(False))
            case _:  # not_null
                out = col.is_not_null() & (col.list.len() > 0 if PROFILE_FIELDS[self.field] == "list" else pl.lit(True))
        return out.fill_null(False)  # an unknown fact never qualifies a lead


class SegmentRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    all: list[Condition | SegmentRules] = []
    any: list[Condition | SegmentRules] = []

    @model_validator(mode="after")
    def _not_empty(self) -> SegmentRules:
        if not self.all and not self.any:
            raise ValueError("a segment needs at least one condition in 'all' or 'any'")
        return self

    def expr(self) -> pl.Expr:
        parts = []
        if self.all:
            parts.append(pl.all_horizontal(*(c.expr() for c in self.all)))
        if self.any:
            parts.append(pl.any_horizontal(*(c.expr() for c in self.any)))
        return pl.all_horizontal(*parts)


def members(profiles: pl.DataFrame, segments: pl.DataFrame) -> pl.DataFrame:
    """Which leads are in which segment now: (segment_id, broker_id, lead_id).

    ``segments`` has segment_id, broker_id, rules (JSON text or dict); a segment only ever sees its
    own broker's leads.
    """
    found = []
    for segment_id, broker_id, rules in segments.select("segment_id", "broker_id", "rules").iter_rows():
        parsed = SegmentRules.model_validate_json(rules) if isinstance(rules, str) else \
            SegmentRules.model_validate(rules)
        found.append(profiles.filter((pl.col("broker_id") == broker_id) & parsed.expr())
                     .select(pl.lit(segment_id, pl.Int64).alias("segment_id"), "broker_id", "lead_id"))
    if not found:
        return pl.DataFrame(schema={"segment_id": pl.Int64, "broker_id": pl.Int64, "lead_id": pl.Int64})
    return pl.concat(found)


def membership_changes(current: pl.DataFrame, previous: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(entered, exited): memberships new since ``previous`` and those no longer in ``current``."""
    keys = ["segment_id", "lead_id"]
    entered = current.join(previous.select(keys), on=keys, how="anti")
    exited = previous.join(current.select(keys), on=keys, how="anti")
    return entered, exited
