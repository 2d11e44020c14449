"""A broker's segments and campaigns for its admins (tag "admin"): segments with a live count, campaigns checked
field by field with a preview for a real lead, their status, applying a manual campaign to leads, and each
campaign's per-lead log.

The work is in ``reports_api.admin.campaigns`` (as the database owner, the caller checked there first); here
the caller comes from the bearer token and refusals become answers: a 422 for bad input carries ``fields``,
one message per field path (``steps[0].template``, ``all[1].value``).
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import psycopg2.extensions
from fastapi import APIRouter, Query, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from reports_api.admin import campaigns
from reports_api.admin.access import AdminError
from reports_api.deps import ERRORS, MAX_ID, Caller, Id
from reports_api.routes.admin import Owner
from reports_api.sessions import OwnerConnections

T = TypeVar("T")
router = APIRouter(prefix="/admin/brokers/{broker_id}", tags=["admin"], responses=ERRORS)


class FieldProblems(BaseModel):
    detail: str | list[dict[str, Any]] = Field(description="what is wrong, naming each field; a body of the wrong "
                                                           "shape is answered by FastAPI's own list of errors")
    fields: dict[str, str] = Field(default_factory=dict, description="input path → what is wrong with it")


REFUSALS: dict[int | str, dict[str, Any]] = {409: {"model": FieldProblems}, 422: {"model": FieldProblems}}


def answer(owner: OwnerConnections, action: Callable[[psycopg2.extensions.cursor], T]) -> T | JSONResponse:
    """``action`` in one owner transaction; a refusal is answered (and nothing written) naming its fields."""
    try:
        with owner.cursor() as cur:
            return action(cur)
    except campaigns.FieldsInvalid as exc:
        return JSONResponse({"detail": str(exc), "fields": exc.problems}, status_code=exc.status)
    except AdminError as exc:
        return JSONResponse({"detail": str(exc), "fields": {exc.field: str(exc)} if exc.field else {}},
                            status_code=exc.status)


# --- models ---------------------------------------------------------------------------------------------

RULES = ("{\"all\": [{\"field\": \"temperature\", \"op\": \"eq\", \"value\": \"hot\"}, {\"field\": \"locations\", "
         "\"op\": \"any_of\", \"value\": [\"ñuñoa\"]}]} — fields and operators of leadflow.campaigns.segments")


class RulesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: dict[str, Any] = Field(description=RULES)


class SegmentIn(RulesIn):
    name: str = Field(max_length=campaigns.MAX_NAME)


class Lead(BaseModel):
    lead_id: int
    name: str | None = None
    phone_e164: str | None = None
    score: int | None = None
    temperature: str | None = None
    stage: str | None = None


class Count(BaseModel):
    count: int = Field(description="the broker's live leads the rules take now, evaluated as the batch does")
    sample: list[Lead] = Field(description=f"the newest {campaigns.SAMPLE} of them")


class Segment(BaseModel):
    segment_id: int
    name: str
    rules: dict[str, Any]
    created_at: datetime
    members: int


class SegmentDetail(Segment):
    sample: list[Lead]


DEFINITION = ("{\"trigger\": {\"type\": \"manual\"}, \"steps\": [{\"action\": \"message\", \"channel\": \"whatsapp\", "
              "\"template\": \"Hola {{first_name}}\", \"whatsapp_template\": {\"name\": \"seguimiento\", \"language\": "
              "\"es\", \"parameters\": [\"{{first_name}}\"]}}]} — see leadflow.campaigns.definitions; "
              "template variables: " + ", ".join(campaigns.VARIABLES))


class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=campaigns.MAX_NAME)
    definition: dict[str, Any] = Field(description=DEFINITION)


class Campaign(BaseModel):
    campaign_id: int
    name: str
    status: Literal["draft", "active", "paused", "completed"]
    definition: dict[str, Any]
    activated_at: datetime | None
    created_at: datetime


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["activate", "pause", "resume", "complete"] = Field(
        description="activate a draft; pause (nothing new is sent; sends owed are held); resume; complete (final)")


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    definition: dict[str, Any] = Field(description=DEFINITION)
    lead_id: int = Field(ge=1, le=MAX_ID)


class PreviewTemplate(BaseModel):
    name: str
    language: str
    parameters: list[str]


class PreviewStep(BaseModel):
    step: int
    action: str
    channel: str
    delay_hours: float
    text: str | None
    whatsapp_template: PreviewTemplate | None


class PreviewLead(BaseModel):
    lead_id: int
    name: str | None
    phone_e164: str | None
    opted_out: bool


class Preview(BaseModel):
    lead: PreviewLead
    steps: list[PreviewStep]


class EnrollIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lead_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(min_length=1, max_length=campaigns.MAX_LEADS)


class ApplySegmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    campaign_id: int = Field(ge=1, le=MAX_ID)


class Refused(BaseModel):
    lead_id: int
    reason: str


class Enrolled(BaseModel):
    enrolled: int = Field(description="leads applied now: the next campaign batch enrolls them (or says why not, "
                                      "in the log)")
    already: int = Field(description="leads applied or enrolled before: nothing changes for them")
    refused: list[Refused] = Field(description="another broker's or unknown leads, merged leads")


class LogEntry(BaseModel):
    lead_id: int
    name: str | None
    phone_e164: str | None
    step: int = Field(description="0 is the first step")
    action: str | None
    channel: str | None
    status: Literal["pending", "sent", "delivered", "read", "replied", "failed", "skipped"]
    reason: str | None = Field(description="why skipped or failed, what a pending entry waits for")
    requested_at: datetime | None = Field(description="when a person applied the campaign to the lead")
    decided_at: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    replied_at: datetime | None
    updated_at: datetime


class Log(BaseModel):
    entries: list[LogEntry]
    total: int = Field(description="entries with this filter")
    counts: dict[str, int] = Field(description="entries by status, without the filter")
    next_offset: int | None


def enrolled(applied: Any) -> Enrolled:
    return Enrolled(enrolled=len(applied.requested), already=len(applied.already),
                    refused=[Refused(lead_id=k, reason=v) for k, v in applied.refused.items()])


# --- segments -------------------------------------------------------------------------------------------

@router.get("/segments", response_model=list[Segment])
def list_segments(owner: Owner, who: Caller, broker_id: Id) -> Any:
    """The broker's segments with their members now (its ADMINs, or a SUPERADMIN)."""
    return answer(owner, lambda cur: campaigns.list_segments(cur, who, broker_id))


@router.post("/segments/count", response_model=Count, responses=REFUSALS)
def count_segment(owner: Owner, who: Caller, broker_id: Id, body: RulesIn) -> Any:
    """How many of the broker's live leads these rules take now, and the newest of them (nothing is saved): what
    the editor shows as it is typed."""
    return answer(owner, lambda cur: campaigns.count(cur, who, broker_id, body.rules))


@router.post("/segments", response_model=Segment, status_code=status.HTTP_201_CREATED, responses=REFUSALS)
def create_segment(owner: Owner, who: Caller, broker_id: Id, body: SegmentIn) -> Any:
    """Create a segment (audited); 409 when the broker has one of that name."""
    return answer(owner, lambda cur: {**campaigns.save_segment(cur, who, broker_id, None, body.name, body.rules),
                                      "members": 0})


@router.get("/segments/{segment_id}", response_model=SegmentDetail)
def get_segment(owner: Owner, who: Caller, broker_id: Id, segment_id: Id) -> Any:
    return answer(owner, lambda cur: campaigns.segment(cur, who, broker_id, segment_id))


@router.put("/segments/{segment_id}", response_model=SegmentDetail, responses=REFUSALS)
def update_segment(owner: Owner, who: Caller, broker_id: Id, segment_id: Id, body: SegmentIn) -> Any:
    """Change a segment's name or rules (audited); a segment a campaign names keeps its name (409)."""
    def save(cur: psycopg2.extensions.cursor) -> dict[str, Any]:
        campaigns.save_segment(cur, who, broker_id, segment_id, body.name, body.rules)
        return campaigns.segment(cur, who, broker_id, segment_id)

    return answer(owner, save)


@router.post("/segments/{segment_id}/enrollments", response_model=Enrolled, responses=REFUSALS)
def apply_to_segment(owner: Owner, who: Caller, broker_id: Id, segment_id: Id, body: ApplySegmentIn) -> Any:
    """Apply a manual campaign to the segment's members now (audited), as to chosen leads."""
    def apply(cur: psycopg2.extensions.cursor) -> Enrolled:
        found = campaigns.segment(cur, who, broker_id, segment_id)
        ids = campaigns.member_ids(cur, broker_id, found["rules"])
        return enrolled(campaigns.apply(cur, who, broker_id, body.campaign_id, ids))

    return answer(owner, apply)


# --- campaigns ------------------------------------------------------------------------------------------

@router.get("/campaigns", response_model=list[Campaign])
def list_campaigns(owner: Owner, who: Caller, broker_id: Id) -> Any:
    return answer(owner, lambda cur: campaigns.list_campaigns(cur, who, broker_id))


@router.post("/campaigns", response_model=Campaign, status_code=status.HTTP_201_CREATED, responses=REFUSALS)
def create_campaign(owner: Owner, who: Caller, broker_id: Id, body: CampaignIn) -> Any:
    """Create a campaign as a draft (audited). Every problem of the definition is a 422 naming its field: the
    models' own checks, unknown template variables, a segment or stage the broker lacks, a WhatsApp template
    name Meta would refuse."""
    return answer(owner, lambda cur: campaigns.save_campaign(cur, who, broker_id, None, body.name, body.definition))


@router.post("/campaigns/preview", response_model=Preview, responses=REFUSALS)
def preview_definition(owner: Owner, who: Caller, broker_id: Id, body: PreviewIn) -> Any:
    """Each step's text rendered for one of the broker's live leads, as the batch would (nothing is saved)."""
    return answer(owner, lambda cur: campaigns.preview(cur, who, broker_id, body.definition, body.lead_id))


@router.get("/campaigns/{campaign_id}", response_model=Campaign)
def get_campaign(owner: Owner, who: Caller, broker_id: Id, campaign_id: Id) -> Any:
    return answer(owner, lambda cur: campaigns.campaign(cur, who, broker_id, campaign_id))


@router.put("/campaigns/{campaign_id}", response_model=Campaign, responses=REFUSALS)
def update_campaign(owner: Owner, who: Caller, broker_id: Id, campaign_id: Id, body: CampaignIn) -> Any:
    """Change a draft or paused campaign (audited); an active one is paused first (409)."""
    return answer(owner, lambda cur: campaigns.save_campaign(cur, who, broker_id, campaign_id, body.name,
                                                             body.definition))


@router.post("/campaigns/{campaign_id}/status", response_model=Campaign, responses=REFUSALS)
def change_status(owner: Owner, who: Caller, broker_id: Id, campaign_id: Id, body: StatusIn) -> Any:
    """activate, pause, resume or complete (audited); a change that does not apply to the status is a 409."""
    return answer(owner, lambda cur: campaigns.change_status(cur, who, broker_id, campaign_id, body.action))


@router.get("/campaigns/{campaign_id}/preview", response_model=Preview, responses=REFUSALS)
def preview_campaign(owner: Owner, who: Caller, broker_id: Id, campaign_id: Id,
                     lead_id: Annotated[int, Query(ge=1, le=MAX_ID)]) -> Any:
    def show(cur: psycopg2.extensions.cursor) -> dict[str, Any]:
        found = campaigns.campaign(cur, who, broker_id, campaign_id)
        return campaigns.preview(cur, who, broker_id, found["definition"], lead_id)

    return answer(owner, show)


@router.post("/campaigns/{campaign_id}/enrollments", response_model=Enrolled, responses=REFUSALS)
def apply_to_leads(owner: Owner, who: Caller, broker_id: Id, campaign_id: Id, body: EnrollIn) -> Any:
    """Apply a manual campaign to these leads (audited): each live lead of the broker is enrolled by the next
    campaign batch, which applies consent, quiet hours, the frequency cap and the WhatsApp window to every step
    (the log says what became of each). Applying twice enrolls once; a draft or paused campaign keeps them
    until it is active."""
    return answer(owner, lambda cur: enrolled(campaigns.apply(cur, who, broker_id, campaign_id, body.lead_ids)))


@router.get("/campaigns/{campaign_id}/log", response_model=Log)
def campaign_log(owner: Owner, who: Caller, broker_id: Id, campaign_id: Id,
                 status_: Annotated[Literal["pending", "sent", "delivered", "read", "replied", "failed", "skipped"]
                                    | None, Query(alias="status")] = None,
                 offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
                 limit: Annotated[int, Query(ge=1, le=200)] = 50) -> Any:
    """Each lead the campaign touched, step by step, most recent first: pending (with what it waits for), sent,
    delivered, read, replied, failed or skipped (with the reason)."""
    def read(cur: psycopg2.extensions.cursor) -> dict[str, Any]:
        found = campaigns.log(cur, who, broker_id, campaign_id, status_, offset, limit)
        return {k: v for k, v in found.items() if k != "campaign"}

    return answer(owner, read)
