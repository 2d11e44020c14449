"""The broker workspace's JSON API: inbox, lead, board, notes, tags, assignment, stage moves, a person's replies and
taking a lead over, audit, live events.

Reads go through ``deps.broker_cursor`` (read-only, row security); writes through
``reports_api.workspace.db.write_cursor`` (read-write, the same scope plus the acting person, every write
audited). A bearer token needs no CSRF token; the dashboard's forms post to ``workspace_pages``.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import psycopg2.errors
import psycopg2.extensions
from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import StreamingResponse
from fastapi.security.utils import get_authorization_scheme_param
from starlette.concurrency import run_in_threadpool

from leadflow.agent import person
from reports_api import queries
from reports_api.dashboard import COOKIE
from reports_api.deps import ERRORS, Caller, Id, Pool, Tokens, broker_cursor
from reports_api.schemas import Problem
from reports_api.scope import ScopedPool
from reports_api.security import InvalidToken, Principal, read_token
from reports_api.workspace import db, reads
from reports_api.workspace.render import item_html
from reports_api.workspace.schemas import (
    Assignment,
    AssignmentIn,
    AuditEntry,
    BoardColumn,
    HandlerIn,
    HandlerOut,
    InboxCounts,
    InboxPage,
    LeadWorkspace,
    Note,
    NoteIn,
    Person,
    ReplyIn,
    ReplyOut,
    StageMove,
    StageMoveIn,
    Tag,
    TagIn,
    lead_workspace_json,
)

_T = TypeVar("_T")
router = APIRouter(tags=["workspace"], responses=ERRORS)

StageCode = Annotated[str | None, Query(max_length=40, pattern=r"^[a-z0-9_]+$")]
TemperatureQ = Annotated[reads.Temperature | None, Query()]
ChannelQ = Annotated[str | None, Query(max_length=20, pattern="^[a-z]+$")]
AssignedQ = Annotated[reads.Assigned, Query(description="me, unassigned or anyone")]
HandlerQ = Annotated[reads.Handler | None, Query(description="who answers the lead now: bot or person")]
Search = Annotated[str | None, Query(min_length=1, max_length=100,
                                     description="name, phone, email, or words a lead wrote")]
AfterQ = Annotated[str | None, Query(max_length=40, pattern=reads.CURSOR_PATTERN,
                                    description="`next` of the previous page")]
Limit = Annotated[int, Query(ge=1, le=200)]

POLL_SECONDS = 1.0
STREAM_SECONDS = 300.0  # then the browser's EventSource reconnects (Last-Event-ID), re-checking the session
KEEPALIVE_SECONDS = 15.0


def inbox_filter(stage: str | None, temperature: reads.Temperature | None, channel: str | None,
                 assigned: reads.Assigned, handler: reads.Handler | None, stalled: bool | None, q: str | None,
                 after: str | None, limit: int) -> reads.InboxFilter:
    """The filter of a request; a 422 for a cursor this API did not hand out."""
    try:
        cursor = reads.Cursor.decode(after) if after else None
    except reads.BadCursor as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    # PostgreSQL rejects NUL in text parameters; a search for it would otherwise be a 500.
    search = q.replace("\x00", "").strip() if q else None
    return reads.InboxFilter(stage, temperature, channel, assigned, handler, stalled, search or None, cursor, limit)


@router.get("/brokers/{broker_id}/inbox", response_model=InboxPage)
def inbox(pool: Pool, who: Caller, broker_id: Id, stage: StageCode = None, temperature: TemperatureQ = None,
          channel: ChannelQ = None, assigned: AssignedQ = "anyone", handler: HandlerQ = None,
          stalled: bool | None = None, q: Search = None, after: AfterQ = None, limit: Limit = 50) -> dict[str, Any]:
    """Leads with the newest message first (an AGENT: its own), filtered; keyset-paged: pass `next` as `after`."""
    f = inbox_filter(stage, temperature, channel, assigned, handler, stalled, q, after, limit)
    with broker_cursor(pool, who, broker_id) as cur:
        return reads.inbox(cur, broker_id, who.user_id, f)


@router.get("/brokers/{broker_id}/inbox/counts", response_model=InboxCounts)
def inbox_counts(pool: Pool, who: Caller, broker_id: Id, stage: StageCode = None, temperature: TemperatureQ = None,
                 channel: ChannelQ = None, assigned: AssignedQ = "anyone", handler: HandlerQ = None,
                 stalled: bool | None = None, q: Search = None) -> dict[str, Any]:
    """How many leads each filter value shows with the other filters applied, and the total."""
    f = inbox_filter(stage, temperature, channel, assigned, handler, stalled, q, None, 1)
    with broker_cursor(pool, who, broker_id) as cur:
        return reads.inbox_counts(cur, broker_id, who.user_id, reads.pipeline_of(cur, broker_id), f)


def lead_workspace(cur: psycopg2.extensions.cursor, broker_id: int, lead_id: int, limit: int) -> dict[str, Any]:
    found = reads.lead_page(cur, broker_id, lead_id, limit)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"broker {broker_id} has no lead {lead_id} you may read")
    found["stages"] = reads.stage_names(reads.pipeline_of(cur, broker_id))
    return found


@router.get("/brokers/{broker_id}/leads/{lead_id}/workspace", response_model=LeadWorkspace)
def lead(pool: Pool, who: Caller, broker_id: Id, lead_id: Id,
         limit: Annotated[int, Query(ge=1, le=2000, description="newest conversation items")] = 500) -> Response:
    """The lead page: the conversation across channels in time order (lead, bot, person, voice assistant,
    campaign sends with their delivery state), qualification, score breakdown, stage history, identities and
    merges, notes, tags, assignment, who answers it, and the audited activity.

    Live: `GET /brokers/{broker_id}/leads/{lead_id}/events` is a `text/event-stream` (not in this schema:
    OpenAPI cannot describe a stream). It checks PostgreSQL every second and sends each new message
    (`event: message`) and each new or changed campaign send (`event: send`) as JSON, the item's fields
    plus `html`; `id` is the newest message id, which `Last-Event-ID` resumes from.
    """
    with broker_cursor(pool, who, broker_id) as cur:
        page = lead_workspace(cur, broker_id, lead_id, limit)
    # Returned as bytes: FastAPI would validate the 500 conversation items again (see lead_workspace_json).
    return Response(lead_workspace_json(page), media_type="application/json")


_write = db.write


@router.post("/brokers/{broker_id}/leads/{lead_id}/notes", response_model=Note, status_code=201)
def add_note(pool: Pool, who: Caller, broker_id: Id, lead_id: Id, body: NoteIn) -> dict[str, Any]:
    """A note on the lead, signed by the caller (audited)."""
    return _write(pool, who, broker_id, lambda cur: db.add_note(cur, broker_id, lead_id, body.body))


@router.post("/brokers/{broker_id}/leads/{lead_id}/tags", response_model=Tag, status_code=201,
             responses={200: {"model": Tag, "description": "the lead already had the tag"}})
def add_tag(pool: Pool, who: Caller, broker_id: Id, lead_id: Id, body: TagIn, response: Response) -> dict[str, Any]:
    """Tag the lead (trimmed, lower case; campaigns' conditions see it). 200 when it was already there."""
    tag, added = _write(pool, who, broker_id, lambda cur: db.add_tag(cur, broker_id, lead_id, body.tag))
    if not added:
        response.status_code = status.HTTP_200_OK
    return tag


@router.delete("/brokers/{broker_id}/leads/{lead_id}/tags/{tag}", status_code=204, response_class=Response)
def remove_tag(pool: Pool, who: Caller, broker_id: Id, lead_id: Id, tag: str) -> Response:
    """Take a tag off the lead (audited); 404 when the lead does not have it."""
    if not 1 <= len(tag) <= 40:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"lead {lead_id} has no such tag")
    _write(pool, who, broker_id, lambda cur: db.remove_tag(cur, broker_id, lead_id, tag))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/brokers/{broker_id}/leads/{lead_id}/assignment", response_model=Assignment)
def assign(pool: Pool, who: Caller, broker_id: Id, lead_id: Id, body: AssignmentIn) -> dict[str, Any]:
    """Assign the lead to an active ADMIN or AGENT of the broker, or to nobody (ADMIN and SUPERADMIN only)."""
    if who.role == "AGENT":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "an agent cannot assign leads; ask an admin")
    return _write(pool, who, broker_id, lambda cur: db.assign(cur, broker_id, lead_id, body.user_id))


@router.post("/brokers/{broker_id}/leads/{lead_id}/stage", response_model=StageMove,
             responses={409: {"model": Problem, "description": "the lead is already in that stage"}})
def move_stage(pool: Pool, who: Caller, broker_id: Id, lead_id: Id, body: StageMoveIn) -> dict[str, Any]:
    """Move the lead to any stage of the broker's pipeline, forward or back, or to perdido (with a reason):
    a person's decision, recorded as a stage event signed by the caller."""

    def move(cur: psycopg2.extensions.cursor) -> dict[str, Any]:
        return db.move_stage(cur, broker_id, lead_id, body.stage, body.reason, reads.pipeline_of(cur, broker_id), who)

    return _write(pool, who, broker_id, move)


def _person_call(pool: ScopedPool, who: Principal, broker_id: int, action: Callable[[person.Tx, str], _T]) -> _T:
    """Run a reply or a switch (``leadflow.agent.person``), each of its transactions a scoped write cursor; its
    refusals as HTTP answers."""
    if not who.may_read(broker_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this account may not read that broker")
    with pool.cursor(who, broker_id) as cur:
        found = queries.broker(cur, broker_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"there is no broker {broker_id}")

    def tx() -> Any:
        # the same write cursor as every other workspace write (it forgets the broker's inbox counts)
        return db.write_cursor(pool, who, broker_id)

    try:
        return action(tx, str(found["slug"]))
    except person.NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except (person.Refused, person.InProgress) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except person.Invalid as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    except person.SendFailed as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from exc
    except psycopg2.errors.InsufficientPrivilege as exc:
        # Row security refused what the checks let through: not this caller's lead.
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not a lead you may change") from exc


def send_reply(request: Request, pool: ScopedPool, who: Principal, broker_id: int, lead_id: int,
               body: ReplyIn) -> person.PersonReply:
    """Shared by the JSON route and the lead page's form."""
    template = None if body.template is None else person.Template(
        body.template.name, body.template.language, tuple(body.template.parameters))
    state = request.app.state

    def act(tx: person.Tx, slug: str) -> person.PersonReply:
        return person.send_person_reply(tx, state.senders, state.publisher.publish, db.audit, broker_id=broker_id,
                                        broker_slug=slug, lead_id=lead_id, user_id=who.user_id, text=body.text,
                                        idempotency_key=body.idempotency_key, template=template)

    return _person_call(pool, who, broker_id, act)


def switch_handler(pool: ScopedPool, who: Principal, broker_id: int, lead_id: int, body: HandlerIn) -> bool:
    def act(tx: person.Tx, _slug: str) -> bool:
        return person.set_handler(tx, db.audit, broker_id=broker_id, lead_id=lead_id, user_id=who.user_id,
                                  handler="person" if body.handler == "person" else "bot", reason=body.reason)

    return _person_call(pool, who, broker_id, act)


@router.post("/brokers/{broker_id}/leads/{lead_id}/reply", response_model=ReplyOut,
             responses={409: {"model": Problem, "description": "no chat channel, opted out, outside the "
                                                                "WhatsApp window without a template, or the same key "
                                                                "is being sent"},
                        502: {"model": Problem, "description": "the provider refused or failed: nothing sent"}})
def reply(request: Request, pool: Pool, who: Caller, broker_id: Id, lead_id: Id, body: ReplyIn) -> dict[str, Any]:
    """A person's reply to the lead, on the chat it last wrote from (Telegram, WhatsApp), through the lead agent's
    senders. Outside WhatsApp's 24-hour window only an approved `template` can be sent. Sending takes the lead
    over from the bot. Sent once per `idempotency_key`: repeating the POST answers the same reply
    (`repeated`); after a provider failure (502) the same key tries again."""
    sent = send_reply(request, pool, who, broker_id, lead_id, body)
    return {**sent.__dict__}


@router.post("/brokers/{broker_id}/leads/{lead_id}/handler", response_model=HandlerOut)
def handler(pool: Pool, who: Caller, broker_id: Id, lead_id: Id, body: HandlerIn) -> dict[str, Any]:
    """Take the lead over (`person`: the bot stays silent) or hand it back to the bot (`bot`), with a reason;
    audited. `changed` is false when it already was so."""
    changed = switch_handler(pool, who, broker_id, lead_id, body)
    return {"lead_id": lead_id, "handler": body.handler, "changed": changed}


@router.get("/brokers/{broker_id}/board", response_model=list[BoardColumn])
def board(pool: Pool, who: Caller, broker_id: Id, assigned: AssignedQ = "anyone",
          per_column: Annotated[int, Query(ge=1, le=200)] = 30) -> list[dict[str, Any]]:
    """The pipeline as columns: each stage's count and its most recently entered leads."""
    with broker_cursor(pool, who, broker_id) as cur:
        return reads.board(cur, broker_id, who.user_id, reads.pipeline_of(cur, broker_id), assigned, per_column)


@router.get("/brokers/{broker_id}/people", response_model=list[Person])
def people(pool: Pool, who: Caller, broker_id: Id) -> list[dict[str, Any]]:
    """The broker's active ADMINs and AGENTs: who a lead can be assigned to."""
    with broker_cursor(pool, who, broker_id) as cur:
        return reads.people(cur, broker_id)


@router.get("/brokers/{broker_id}/audit", response_model=list[AuditEntry])
def audit(pool: Pool, who: Caller, broker_id: Id, lead_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
          before: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="audit_id to page back from")] = None,
          limit: Limit = 50) -> list[dict[str, Any]]:
    """Every write people made in the workspace, newest first: who, what, when, before and after
    (an AGENT: the entries of its own leads)."""
    with broker_cursor(pool, who, broker_id) as cur:
        return reads.audit(cur, broker_id, lead_id, limit, before)


# --- live events -------------------------------------------------------------------------------------

def _bearer_or_session(request: Request, tokens: Any) -> Principal:
    """The bearer token's principal, else the dashboard session's (EventSource cannot send headers)."""
    scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
    token = credentials if scheme.lower() == "bearer" else request.cookies.get(COOKIE, "")
    if not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "log in at POST /auth/token or /dashboard/login",
                            headers={"WWW-Authenticate": "Bearer"})
    try:
        return read_token(tokens, token)
    except InvalidToken as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc


def _event(kind: str, mark: int, data: dict[str, Any]) -> str:
    return f"event: {kind}\nid: {mark}\ndata: {json.dumps(jsonable_encoder(data))}\n\n"


@router.get("/brokers/{broker_id}/leads/{lead_id}/events", include_in_schema=False)
async def events(request: Request, pool: Pool, tokens: Tokens, broker_id: Id, lead_id: Id,
                 last_event_id: Annotated[str | None, Header()] = None) -> StreamingResponse:
    """New messages and campaign sends of the lead, as server-sent events (see the lead endpoint)."""
    who = _bearer_or_session(request, tokens)

    def start() -> tuple[str, int, datetime]:
        with broker_cursor(pool, who, broker_id) as cur:
            broker = queries.broker(cur, broker_id)
            if broker is None or not reads.lead_visible(cur, broker_id, lead_id):
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"broker {broker_id} has no lead {lead_id} you may read")
            newest, now = reads.live_marks(cur, lead_id)
            return str(broker["timezone"]), newest, now

    timezone, newest, since = await run_in_threadpool(start)
    if last_event_id and last_event_id.isdigit() and len(last_event_id) < 19:
        newest = min(newest, int(last_event_id))

    def poll(after: int, sends_since: datetime) -> tuple[list[dict[str, Any]], int, datetime]:
        # A pooled connection per poll, not per stream: open pages must not hold the pool's few connections.
        with broker_cursor(pool, who, broker_id) as cur:
            return reads.items_since(cur, lead_id, after, sends_since)

    async def stream() -> AsyncIterator[str]:
        nonlocal newest, since
        yield "retry: 2000\n\n"
        ends = time.monotonic() + STREAM_SECONDS
        quiet_since = time.monotonic()
        while time.monotonic() < ends and not await request.is_disconnected():
            await asyncio.sleep(POLL_SECONDS)
            items, newest, since = await run_in_threadpool(poll, newest, since)
            for item in items:
                yield _event(item["kind"], newest, {**item, "html": item_html(item, timezone)})
            if items:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
