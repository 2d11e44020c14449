"""A broker's settings (tag "admin"): scoring, pipeline, the qualifier's LLM, contact rules, the agent, visits.

Each section is validated (a 422 lists every bad field), versioned (who, when, what changed, revert) and read by
the next run of the leads job, campaign or agent message, without a restart. Its ADMINs and a SUPERADMIN only:
these write as the database owner, so ``reports_api.admin.access`` is what keeps another broker out (tests in
tests/test_admin_settings.py).
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import psycopg2.extensions
from fastapi import APIRouter, HTTPException
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from reports_api.admin import settings
from reports_api.admin.access import AdminError
from reports_api.deps import ERRORS, Caller, Id
from reports_api.routes.admin import Owner
from reports_api.schemas import Problem
from reports_api.sessions import OwnerConnections

T = TypeVar("T")
router = APIRouter(prefix="/admin", tags=["admin"], responses=ERRORS)
SectionName = Annotated[Literal["scoring", "pipeline", "llm", "campaigns", "agent", "appointments"],
                        PathParam(description="scoring, pipeline, llm (the qualifier), campaigns (contact rules), "
                                              "agent, appointments (visiting rules)")]
INVALID: dict[int | str, dict[str, Any]] = {
    422: {"description": "the value is not valid: `detail` is a list of {field, message}, one per bad field "
                         "(\"hot\", \"stages[2].code\", \"facts.commission\")"}}
STALE: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "another version was saved after the one this change started from"}}


def run(owner: OwnerConnections, action: Callable[[psycopg2.extensions.cursor], T]) -> T:
    """``action`` in one owner transaction (rolled back on a refusal); refusals as HTTP answers."""
    try:
        with owner.cursor() as cur:
            return action(cur)
    except settings.SettingsInvalid as exc:
        raise HTTPException(422, settings.problems_of(exc)) from exc
    except AdminError as exc:
        raise HTTPException(exc.status, str(exc)) from exc


class FieldChange(BaseModel):
    field: str
    before: Any
    after: Any


class SectionState(BaseModel):
    section: str
    version: int = Field(description="the current version; a save names it as `based_on`")
    value: dict[str, Any] = Field(description="what the runs use: the stored overrides over the defaults")
    stored: dict[str, Any] = Field(description="what is stored: only what differs from the defaults")
    changed_at: datetime | None = Field(description="when the current version was saved (null: never changed here)")
    changed_by: int | None
    changed_by_name: str | None
    changed_by_email: str | None
    reverted_from: int | None = Field(description="the version this one brought back, when it is a revert")


class Version(BaseModel):
    version: int
    value: dict[str, Any]
    stored: dict[str, Any]
    changed_at: datetime | None = Field(description="null: version 1 before anything was recorded")
    changed_by: int | None = Field(description="null: version 1, the value before the first change made here")
    changed_by_name: str | None
    changed_by_email: str | None
    reverted_from: int | None
    changes: list[FieldChange] = Field(description="each field that differs from the version before")


class SaveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    based_on: int = Field(ge=1, le=2**31 - 1, description="the `version` the change started from")
    value: dict[str, Any] = Field(description="the whole section; fields left out take the defaults")


class RevertIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, le=2**31 - 1, description="the version whose value becomes current again")
    based_on: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                 description="optional: the version the revert started from (409 if stale)")


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: dict[str, Any] = Field(description="a candidate scoring section")


class Temperatures(BaseModel):
    hot: int
    warm: int
    cold: int


class Preview(BaseModel):
    now: Temperatures = Field(description="the broker's live qualified leads under the saved scoring, scored now")
    proposed: Temperatures = Field(description="the same leads under the candidate")
    changed: int = Field(description="leads whose temperature differs between the two")
    leads: int


@router.get("/brokers/{broker_id}/settings", response_model=list[SectionState])
def read_all(owner: Owner, who: Caller, broker_id: Id) -> list[dict[str, Any]]:
    """Every section of the broker's settings with its current version (its ADMINs, or a SUPERADMIN)."""
    return run(owner, lambda cur: settings.read_all(cur, who, broker_id))


@router.get("/brokers/{broker_id}/settings/{section}", response_model=SectionState)
def read(owner: Owner, who: Caller, broker_id: Id, section: SectionName) -> dict[str, Any]:
    """One section: the value the runs use (defaults filled), what is stored, and the current version."""
    return run(owner, lambda cur: settings.read(cur, who, broker_id, section))


@router.put("/brokers/{broker_id}/settings/{section}", response_model=SectionState,
            responses={**INVALID, **STALE})
def save(owner: Owner, who: Caller, broker_id: Id, section: SectionName, body: SaveIn) -> dict[str, Any]:
    """Replace a section (audited, a new version). Validated against its schema: scoring thresholds must not
    cross, steps must be in the order they are read, and a pipeline may not remove a stage that has leads or put
    a stage after one whose leads already passed it. The next run of the leads job uses it (a scoring change
    rescores every lead of the broker; a pipeline change re-evaluates their stages), campaigns their next batch,
    the agent its next message. The same value again saves nothing."""
    return run(owner, lambda cur: settings.save(cur, who, broker_id, section, body.value, body.based_on))


@router.get("/brokers/{broker_id}/settings/{section}/versions", response_model=list[Version])
def versions(owner: Owner, who: Caller, broker_id: Id, section: SectionName) -> list[dict[str, Any]]:
    """The section's versions, newest first: who and when, and each field's value before and after."""
    return run(owner, lambda cur: settings.versions(cur, who, broker_id, section))


@router.post("/brokers/{broker_id}/settings/{section}/revert", response_model=SectionState,
             responses={**INVALID, **STALE})
def revert(owner: Owner, who: Caller, broker_id: Id, section: SectionName, body: RevertIn) -> dict[str, Any]:
    """Bring back an earlier version's value, as a new version (audited), validated again: a pipeline that would
    now send leads back is refused. 404 when the version does not exist."""
    return run(owner, lambda cur: settings.revert(cur, who, broker_id, section, body.version, body.based_on))


@router.post("/brokers/{broker_id}/settings/scoring/preview", response_model=Preview, responses=INVALID)
def preview(owner: Owner, who: Caller, broker_id: Id, body: PreviewIn) -> dict[str, Any]:
    """How many of the broker's leads are hot, warm and cold now and would be under a candidate scoring, both
    computed by the scoring run's own code on their current qualifications; nothing is saved."""
    return run(owner, lambda cur: settings.preview(cur, who, broker_id, body.value))
