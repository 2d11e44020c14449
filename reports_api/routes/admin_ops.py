"""Operations for a broker's admins (tag "admin"): dead letters (read redacted, replayed once fixed), LLM usage and
cost, and the health of the flow (landing lag, Dagster's last runs, dead letters and the agent's stuck replies).

Like the other admin routes these read as the database owner, so ``reports_api.admin.access`` is the guard: the
broker's ADMINs, or a SUPERADMIN (who also gets the system-wide figures). Tested in tests/test_admin_ops.py.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from ingest_api.intake import MAX_BODY_BYTES
from reports_api.admin import dead_letters, health, usage
from reports_api.deps import ERRORS, MAX_ID, Caller, Id
from reports_api.routes.admin import REFUSALS, Owner, refusals, run
from reports_api.schemas import Problem

router = APIRouter(prefix="/admin/brokers/{broker_id}", tags=["admin"], responses=ERRORS)


class DeadLetter(BaseModel):
    dead_letter_id: int
    channel: str
    reason: str = Field(description="why it could not be parsed (secrets redacted)")
    content_type: str | None
    size_bytes: int
    received_at: datetime = Field(description="when the ingest API received it")
    landed_at: datetime
    replayable: bool = Field(description="its channel has a webhook parser (a record the landing could not decode "
                                         "has none)")
    replayed_at: datetime | None = Field(description="its latest replay")
    replays: int
    replay_event_ids: list[str] = Field(description="the events its latest replay produced")
    replayed_by: str | None
    replayed_by_email: str | None


class DeadLetterListed(DeadLetter):
    preview: str = Field(description="the start of the body, secrets redacted")


class DeadLetterPage(BaseModel):
    dead_letters: list[DeadLetterListed]
    next_before_id: int | None = Field(description="pass as `before_id` for the next (older) page; null on the last")


class DeadLetterRead(DeadLetter):
    body: str | None = Field(description="the whole body, secrets redacted (the broker's credentials, keys named "
                                         "like token/secret/password/api_key, bot tokens, Bearer …); JSON indented. "
                                         "Null when the broker's stored credentials cannot be opened")
    body_withheld: str | None = Field(description="why the body is not shown, when it is not")


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str | None = Field(default=None, max_length=MAX_BODY_BYTES,
                             description="the fixed payload; omitted: the body as it was kept")


class Replayed(BaseModel):
    dead_letter_id: int
    channel: str
    events: int = Field(description="events produced onto the messages topic")
    event_ids: list[str] = Field(description="derived from the provider's ids: a second replay lands nothing new")
    replayed_at: datetime
    edited: bool = Field(description="the payload differs from the body that was kept")


class UsageRow(BaseModel):
    day: date | None = Field(description="null in the per-model totals")
    provider: str | None
    model: str | None
    calls: int
    fallbacks: int = Field(description="calls answered by the rules qualifier because the LLM failed")
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal


class Usage(BaseModel):
    start: date
    end: date
    days: list[UsageRow] = Field(description="per day, provider and model, newest first")
    models: list[UsageRow] = Field(description="per provider and model over the range")
    totals: UsageRow


class PartitionLag(BaseModel):
    reader: str = Field(description="landing, agent, dispatcher…")
    topic: str
    partition: int
    next_offset: int = Field(description="stored in PostgreSQL (kafka_offsets)")
    end_offset: int | None = Field(description="Kafka's high watermark; null when Kafka did not answer. The "
                                               "embedded broker (Tansu) reports wrong ones")
    lag: int | None
    committed_at: datetime = Field(description="when the reader last moved this offset")


class SensorState(BaseModel):
    name: str
    kind: str = Field(description="sensor or schedule")
    status: str = Field(description="RUNNING or STOPPED")
    last_tick_at: datetime | None
    last_tick_status: str | None = Field(description="SUCCESS, SKIPPED, FAILURE…")
    last_tick_note: str | None = Field(description="the skip reason or the error's first line")


class JobRun(BaseModel):
    job: str
    status: str = Field(description="SUCCESS, FAILURE, STARTED, QUEUED, CANCELED…")
    started_at: datetime | None
    ended_at: datetime | None
    run_id: str


class Dagster(BaseModel):
    available: bool
    note: str | None = Field(description="why it is unknown, when it is")
    sensors: list[SensorState]
    runs: list[JobRun] = Field(description="the latest run of each job")
    read_at: datetime = Field(description="cached for a few seconds")


class Figures(BaseModel):
    newest_landed_at: datetime | None = Field(description="when the newest message landed in PostgreSQL")
    newest_landed_age_s: float | None
    dead_letters_24h: int
    agent_pending: int = Field(description="replies decided and waiting to be sent (claimed or retry)")
    agent_unknown: int = Field(description="replies left 'sending' by a crash over a minute ago: whether the lead "
                                           "got them is unknown, so they are not resent")
    calendars_broken: int = Field(0, description="Google Calendar connections Google refused even after a refresh: "
                                                 "someone must connect them again (page Google Calendar)")
    visits_not_in_calendar: int = Field(0, description="appointments the calendar sync could not write yet, or "
                                                       "at all, with the reason kept on each")


class Landing(BaseModel):
    last_commit_at: datetime | None = Field(description="the landing's last committed batch that moved an offset "
                                                        "(what to trust: it comes from PostgreSQL)")
    last_commit_age_s: float | None
    behind: bool | None = Field(description="Kafka holds records past the landing's offsets; null when Kafka did "
                                            "not answer. Unreliable on the embedded broker")
    kafka_note: str | None


class Health(BaseModel):
    broker: Figures
    landing: Landing
    dagster: Dagster
    system: Figures | None = Field(description="every broker together (SUPERADMIN only)")
    partitions: list[PartitionLag] | None = Field(description="every reader's offsets (SUPERADMIN only: partitions "
                                                              "are shared by all brokers)")


@router.get("/dead-letters", response_model=DeadLetterPage)
def list_dead_letters(request: Request, owner: Owner, who: Caller, broker_id: Id,
                      before_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="older than this")] = None,
                      limit: Annotated[int, Query(ge=1, le=dead_letters.MAX_PAGE)] = 50) -> DeadLetterPage:
    """The broker's dead letters, newest first (its ADMINs, or a SUPERADMIN): the reason, the channel, when it
    arrived, a redacted preview and whether it was replayed."""
    _broker, found, next_id = run(owner, lambda cur: dead_letters.list_page(
        cur, who, broker_id, request.app.state.master_keys, before_id, limit))
    return DeadLetterPage(dead_letters=[DeadLetterListed.model_validate(d) for d in found], next_before_id=next_id)


@router.get("/dead-letters/{dead_letter_id}", response_model=DeadLetterRead)
def read_dead_letter(request: Request, owner: Owner, who: Caller, broker_id: Id, dead_letter_id: Id) -> DeadLetterRead:
    """One dead letter with its whole body, secrets redacted."""
    _broker, found = run(owner, lambda cur: dead_letters.read(cur, who, broker_id, dead_letter_id,
                                                              request.app.state.master_keys))
    return DeadLetterRead.model_validate(found)


@router.post("/dead-letters/{dead_letter_id}/replay", response_model=Replayed,
             responses={**REFUSALS, 503: {"model": Problem, "description": "Kafka did not acknowledge the events"}})
def replay_dead_letter(request: Request, owner: Owner, who: Caller, broker_id: Id, dead_letter_id: Id,
                       body: ReplayIn) -> dict[str, Any]:
    """Re-submit the payload (fixed, or as kept) through its channel's parser, exactly as a webhook: its events go
    onto the messages topic with the ids the ingest API would give them, so replaying twice lands once. Audited
    as `dead_letter.replay`; the dead letter is marked with who, when and the event ids. A payload that still
    does not parse is a 422 with the parser's reason, and nothing is produced."""
    with refusals():
        return dead_letters.replay(owner, request.app.state.publisher, who, broker_id, dead_letter_id, body.body)


@router.get("/usage", response_model=Usage)
def read_usage(owner: Owner, who: Caller, broker_id: Id,
               start: Annotated[date | None, Query(description="first day (default: 29 days before end)")] = None,
               end: Annotated[date | None, Query(description="last day, included (default: today)")] = None) -> Usage:
    """The broker's LLM calls, tokens and cost per day, provider and model (qualification and the agent), with the
    range's totals per model and overall."""
    with refusals():
        first, last = usage.date_range(start, end)
    return Usage.model_validate(run(owner, lambda cur: usage.read(cur, who, broker_id, first, last)))


@router.get("/health", response_model=Health)
def read_health(request: Request, owner: Owner, who: Caller, broker_id: Id) -> dict[str, Any]:
    """Is the flow healthy, without the Dagster UI: the broker's newest landed message, dead letters of the last
    24 h and the agent's pending and unknown replies; the landing's last commit and whether Kafka holds more; the
    last tick of each sensor and the last run of each job (Dagster's instance, "unknown" when unreachable). A
    SUPERADMIN also gets every broker's figures and each partition's offsets."""
    with refusals():
        return health.read(request.app.state.ops, owner, who, broker_id)
