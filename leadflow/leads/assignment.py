"""Automatic assignment of new leads to a broker's people: the rules as data and the choice, pure.

A broker's ADMIN sets ``AssignmentConfig`` (stored per broker in ``leadflow.assignment_settings``):
``off`` (the default), ``round_robin`` among the broker's active AGENTs, or ``rules``: the first rule whose
channels and areas match a lead names one person (that person) or several (round robin within them);
a lead no rule places, or whose rule names nobody active any more, falls back to the agents' round robin
or stays unassigned, as the config says.

Round robin is a cursor per broker and pool (the agents, or one rule's group): the last person given a lead.
The next lead goes to the first active person with a larger user id, wrapping to the smallest. Persisted
(``leadflow.assignment_cursors``), it survives restarts, and a person added or disabled changes nothing for
the others' turns. Pure: polars frames and pydantic models in, frames and cursors out.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Annotated, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

Mode = Literal["off", "round_robin", "rules"]
Fallback = Literal["round_robin", "unassigned"]
CHANNELS = ("whatsapp", "telegram", "vapi", "bland", "form", "import", "manual")
AGENTS_POOL = "agents"

LEAD_SCHEMA = pl.Schema([("broker_id", pl.Int64), ("lead_id", pl.Int64), ("channel", pl.String),
                         ("locations", pl.List(pl.String))])
PEOPLE_SCHEMA = pl.Schema({"broker_id": pl.Int64, "user_id": pl.Int64, "role": pl.String,
                           "display_name": pl.String})
ASSIGNMENT_SCHEMA = pl.Schema({"broker_id": pl.Int64, "lead_id": pl.Int64, "user_id": pl.Int64,
                               "how": pl.String})


def area_key(text: str) -> str:
    """How an area is compared: case, accents and spacing ignored ("Ñuñoa", "nunoa " and "ÑUÑOA" are one)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(ch for ch in decomposed if not unicodedata.combining(ch)).split())


class Rule(BaseModel):
    """Leads from any of ``channels`` (all channels when empty) in any of ``areas`` (anywhere when empty)
    go to ``assign_to``: one person, or several in turn."""

    model_config = ConfigDict(extra="forbid")

    channels: list[Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,20}$")]] = Field(
        default=[], max_length=10, description=f"channels the lead first wrote from: {', '.join(CHANNELS)}…")
    areas: list[str] = Field(default=[], max_length=200, description="comunas or places, as the lead names them")
    assign_to: list[int] = Field(min_length=1, max_length=100, description="user ids of the broker's people")

    @field_validator("areas")
    @classmethod
    def _areas(cls, areas: list[str]) -> list[str]:
        cleaned = [" ".join(a.split()) for a in areas]
        if any(not a or len(a) > 80 for a in cleaned):
            raise ValueError("an area is 1 to 80 characters")
        return list(dict.fromkeys(cleaned))

    @field_validator("assign_to")
    @classmethod
    def _people(cls, people: list[int]) -> list[int]:
        if any(p <= 0 or p >= 2**63 for p in people):
            raise ValueError("a person is a positive user id")
        return list(dict.fromkeys(people))

    @model_validator(mode="after")
    def _narrows(self) -> Rule:
        if not self.channels and not self.areas:
            raise ValueError("a rule names channels, areas or both (the fallback covers every other lead)")
        return self

    def matches(self, channel: str | None, areas: set[str]) -> bool:
        if self.channels and channel not in self.channels:
            return False
        return not self.areas or any(area_key(a) in areas for a in self.areas)

    def describe(self) -> str:
        parts = ([f"channel {'/'.join(self.channels)}"] if self.channels else []) + \
            ([f"area {'/'.join(self.areas)}"] if self.areas else [])
        return ", ".join(parts)


class AssignmentConfig(BaseModel):
    """A broker's automatic assignment (validated on save and again when the job reads it)."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode = "off"
    rules: list[Rule] = Field(default=[], max_length=100)
    fallback: Fallback = Field(default="round_robin",
                               description="for a lead no rule places: the agents' round robin, or nobody")

    @model_validator(mode="after")
    def _rules_when_rules(self) -> AssignmentConfig:
        if self.mode == "rules" and not self.rules:
            raise ValueError("mode 'rules' needs at least one rule")
        return self

    def people(self) -> set[int]:
        """Everyone the rules name (each must be an active person of the broker: checked on save)."""
        return {p for rule in self.rules for p in rule.assign_to}


def next_in_turn(people: list[int], last: int | None) -> int:
    """The first of ``people`` after ``last`` in user-id order, wrapping; the first when there is no last."""
    ordered = sorted(people)
    return next((p for p in ordered if last is None or p > last), ordered[0])


@dataclass(frozen=True)
class Assignments:
    assigned: pl.DataFrame  # ASSIGNMENT_SCHEMA: one row per lead given to someone
    unassigned: list[int]  # lead ids left for a person to assign
    cursors: dict[tuple[int, str], int]  # (broker, pool) → last person given a lead, only the pools that moved


def group_pool(people: list[int]) -> str:
    """The cursor of a group: keyed by its members, so reordering or renumbering rules keeps each group's turn."""
    return "group:" + ",".join(str(p) for p in sorted(people))


def choose(leads: pl.DataFrame, people: pl.DataFrame, configs: dict[int, AssignmentConfig],
           cursors: dict[tuple[int, str], int]) -> Assignments:
    """Who gets each of ``leads`` (new, unassigned; LEAD_SCHEMA), in lead-id order.

    ``people``: the brokers' active ADMINs and AGENTs (PEOPLE_SCHEMA); only AGENTs take part in the
    plain round robin, while a rule may name an ADMIN too. ``cursors``: the last person each pool gave a lead to.
    """
    active: dict[int, dict[int, str]] = {}
    for broker_id, user_id, role, _name in people.cast(PEOPLE_SCHEMA).iter_rows():
        active.setdefault(broker_id, {})[user_id] = role
    moved: dict[tuple[int, str], int] = {}
    rows: list[tuple[int, int, int, str]] = []
    unassigned: list[int] = []

    def turn(broker_id: int, pool: str, members: list[int]) -> int:
        key = (broker_id, pool)
        person = next_in_turn(members, moved.get(key, cursors.get(key)))
        moved[key] = person
        return person

    for broker_id, lead_id, channel, locations in leads.cast(LEAD_SCHEMA).sort("lead_id").iter_rows():
        config = configs.get(broker_id)
        if config is None or config.mode == "off":
            continue
        mine = active.get(broker_id, {})
        areas = {area_key(a) for a in locations or []}
        chosen: tuple[int, str] | None = None
        if config.mode == "rules":
            for number, rule in enumerate(config.rules, start=1):
                if not rule.matches(channel, areas):
                    continue
                members = [p for p in rule.assign_to if p in mine]
                if len(members) == 1:
                    chosen = members[0], f"automatic (rule {number}: {rule.describe()})"
                elif members:
                    chosen = (turn(broker_id, group_pool(rule.assign_to), members),
                              f"automatic (rule {number}: {rule.describe()}, round robin in its group)")
                break  # the first matching rule decides, even when nobody it names is active: then the fallback
        if chosen is None and (config.mode == "round_robin" or config.fallback == "round_robin"):
            agents = [p for p, role in mine.items() if role == "AGENT"]
            if agents:
                chosen = turn(broker_id, AGENTS_POOL, agents), "automatic (round robin)"
        if chosen is None:
            unassigned.append(lead_id)
        else:
            rows.append((broker_id, lead_id, chosen[0], chosen[1]))
    return Assignments(pl.DataFrame(rows, schema=ASSIGNMENT_SCHEMA, orient="row"), unassigned, moved)
