"""Request and response bodies of the workspace's JSON API, as /docs shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field, field_validator

from reports_api.schemas import LeadDetail, StageEvent


class InboxItem(BaseModel):
    lead_id: int
    display_name: str | None
    phone_e164: str | None
    email: str | None
    channels: list[str]
    message_count: int
    last_message_at: datetime | None
    assigned_user_id: int | None
    assigned_name: str | None
    score: int | None
    temperature: str | None
    stage: str | None
    stage_entered_at: datetime | None
    stalled: bool
    handler: str = Field(description="who answers the lead now: bot or person")
    last_body: str | None = Field(description="the newest message, cut at 160 characters")
    last_direction: str | None
    last_channel: str | None


class InboxPage(BaseModel):
    items: list[InboxItem]
    next: str | None = Field(description="pass as `after` for the next page; null on the last page")
    limit: int


class InboxCounts(BaseModel):
    total: int = Field(description="leads matching every active filter")
    stage: dict[str, int] = Field(description="per stage, the other filters applied (likewise below)")
    temperature: dict[str, int]
    channel: dict[str, int]
    assigned: dict[str, int]
    handler: dict[str, int]
    stalled: dict[str, int]


class ConversationItem(BaseModel):
    kind: str = Field(description="message (landed from a channel) or send (a campaign's step)")
    item_id: int = Field(description="message_id of a message, send_id of a send")
    channel: str | None
    direction: str
    message_type: str
    body: str | None
    at: datetime
    conversation_id: str | None = Field(description="the call of a call transcript's turn")
    author: str = Field(description="lead, bot, person, assistant (a voice call's AI) or campaign")
    delivery: str | None = Field(description="latest delivery state of what was sent")
    campaign: str | None
    detail: str | None


class Person(BaseModel):
    user_id: int
    email: str
    display_name: str
    role: str


class Assigned(BaseModel):
    user_id: int
    display_name: str
    email: str


class Handler(BaseModel):
    handler: str
    reason: str | None
    switched_at: datetime | None
    by_name: str | None


class WorkspaceStageEvent(StageEvent):
    moved_by: str | None = Field(description="the person who moved the lead by hand")


class Identity(BaseModel):
    kind: str
    value: str
    reason: str
    linked_at: datetime


class Merge(BaseModel):
    merge_id: int
    merged_lead_id: int
    into_lead_id: int
    reason: str
    merged_at: datetime
    undone_at: datetime | None
    moved_messages: int


class Note(BaseModel):
    note_id: int
    body: str
    created_at: datetime
    author_id: int | None
    author: str | None


class Tag(BaseModel):
    tag: str
    added_at: datetime | None
    added_by_id: int | None
    added_by: str | None


class AuditEntry(BaseModel):
    audit_id: int
    action: str
    lead_id: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    at: datetime
    user_id: int | None = Field(description="None: done automatically (an automatic assignment)")
    by_name: str | None


class StageName(BaseModel):
    code: str
    name: str


class FactSource(BaseModel):
    field: str = Field(description="a qualification column; budget stands for its four columns, locations has one "
                                   "entry per place")
    value: str = Field(description="the fact as stored, as text")
    kind: Literal["message", "answer", "conversation"] = Field(
        description="message: a lead's message states it; answer: a bare reply read as the answer to the bot's "
                    "question; conversation: no single message states it")
    message_id: int | None = Field(description="the message (a conversation item_id), null for kind conversation")
    index: int | None = Field(description="the message's position in the conversation as the qualifier read it")
    excerpt: str | None = Field(description="the lead's words that state it, at most 160 characters")
    question: str | None = Field(description="kind answer: the bot's question the reply answers")
    model: str | None = Field(description="the LLM qualifier that gave the value (provider:model), null for the rules")
    channel: str | None
    at: datetime | None = Field(description="when the message was sent")


class LeadWorkspace(LeadDetail):
    stage_history: list[WorkspaceStageEvent]  # type: ignore[assignment]
    assigned: Assigned | None
    handler: Handler
    identities: list[Identity]
    merges: list[Merge]
    notes: list[Note]
    tags: list[Tag]
    conversation: list[ConversationItem] = Field(description="oldest first; the newest `limit` items")
    older_left_out: bool
    activity: list[AuditEntry] = Field(description="the newest 50 audited writes on the lead")
    provenance: list[FactSource] = Field(default_factory=list,
                                         description="where each non-empty qualification fact came from")
    stages: list[StageName] = Field(description="the broker's pipeline, the stages a person may move it to")


def lead_workspace_json(page: dict[str, Any]) -> bytes:
    """``page`` as ``LeadWorkspace`` JSON: every part validated except the conversation's items.

    Validating 500 items was 3-4 ms of a ~7 ms request (pydantic, measured; building them unvalidated
    still cost 2 ms), and they come from one query of ours with fixed column types: they are written
    straight to JSON, their fields only, UTC times with "Z" as pydantic writes them.
    ``tests/test_workspace.py`` compares both ways on real pages.
    """
    out = LeadWorkspace.model_validate({**page, "conversation": []}).model_dump(mode="json")
    fields = tuple(ConversationItem.model_fields)
    out["conversation"] = [{k: item.get(k) for k in fields} for item in page["conversation"]]
    return orjson.dumps(out, option=orjson.OPT_UTC_Z)


class BoardCard(BaseModel):
    lead_id: int
    display_name: str | None
    phone_e164: str | None
    email: str | None
    channels: list[str]
    last_message_at: datetime | None
    entered_at: datetime
    stalled: bool
    score: int | None
    temperature: str | None
    assigned_user_id: int | None
    assigned_name: str | None


class BoardColumn(BaseModel):
    code: str
    name: str
    count: int
    cards: list[BoardCard] = Field(description="the stage's most recently entered leads")


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold NUL, nor UTF-8 a lone surrogate (JSON "\ud800"): a 422, not a 500.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


class NoteIn(BaseModel):
    body: str = Field(min_length=1, max_length=5000)

    @field_validator("body")
    @classmethod
    def storable_body(cls, value: str) -> str:
        return _storable(value)


class TagIn(BaseModel):
    tag: str = Field(min_length=1, max_length=40)

    @field_validator("tag")
    @classmethod
    def storable_tag(cls, value: str) -> str:
        return _storable(value)


class AssignmentIn(BaseModel):
    user_id: int | None = Field(ge=1, le=2**63 - 1, description="an active ADMIN or AGENT of the broker; "
                                                                 "null: nobody")


class Assignment(BaseModel):
    lead_id: int
    assigned: Assigned | None


class StageMoveIn(BaseModel):
    stage: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9_]+$")
    reason: str | None = Field(default=None, max_length=500, description="required to move a lead to perdido")

    @field_validator("reason")
    @classmethod
    def storable_reason(cls, value: str | None) -> str | None:
        return None if value is None else _storable(value)


class StageMove(BaseModel):
    lead_id: int
    from_stage: str | None
    to_stage: str
    occurred_at: datetime
    reason: str
    direction: str = Field(description="forward or back")


class TemplateIn(BaseModel):
    name: str = Field(min_length=1, max_length=512, description="an approved WhatsApp template's name")
    language: str = Field(min_length=2, max_length=15, pattern=r"^[A-Za-z_-]+$", description="e.g. es or es_CL")
    parameters: list[str] = Field(default_factory=list, max_length=20,
                                  description="the template body's {{1}}, {{2}}… in order")


class ReplyIn(BaseModel):
    text: str = Field(default="", max_length=4096, description="the reply; optional with a template")
    template: TemplateIn | None = Field(default=None, description="WhatsApp only: required outside the 24-hour window")
    idempotency_key: str = Field(min_length=8, max_length=100,
                                 description="new for each reply; a retried or repeated POST with it sends once")

    @field_validator("text")
    @classmethod
    def storable_text(cls, value: str) -> str:
        return _storable(value)


class ReplyOut(BaseModel):
    reply_id: int
    lead_id: int
    channel: str
    body: str
    status: str
    provider_message_id: str
    sent_at: datetime
    produced: bool = Field(description="on the messages topic; otherwise produced again with the next reply")
    repeated: bool = Field(description="the key had already sent this reply: nothing was sent again")
    took_over: bool = Field(description="this reply took the lead from the bot")


class HandlerIn(BaseModel):
    handler: str = Field(pattern="^(bot|person)$", description="person: take the lead over; bot: hand it back")
    reason: str = Field(min_length=1, max_length=500)

    @field_validator("reason")
    @classmethod
    def storable_reason(cls, value: str) -> str:
        return _storable(value)


class HandlerOut(BaseModel):
    lead_id: int
    handler: str
    changed: bool
