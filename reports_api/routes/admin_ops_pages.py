"""The operations pages under /dashboard/brokers/{id}/admin/: health, dead letters (a list; one with its redacted
body in a textarea and the replay form) and LLM usage — for the broker's ADMINs and a SUPERADMIN.

The same checks and work as the JSON API (``reports_api.routes.admin_ops``, ``reports_api.admin``). The replay form
carries the session's CSRF token; a payload that still does not parse comes back in the textarea as typed, with
the parser's reason and a 422. Left out of the OpenAPI document.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

from datetime import date
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ingest_api.intake import MAX_BODY_BYTES
from reports_api.admin import dead_letters, health, people, usage
from reports_api.admin.access import AdminError
from reports_api.deps import MAX_ID, Id, Tokens
from reports_api.routes.admin import Owner
from reports_api.routes.admin_forms import EXPIRED_FORM
from reports_api.routes.admin_forms import owner_run as _owner_run
from reports_api.routes.admin_forms import to_login as _to_login
from reports_api.routes.workspace_pages import Session, SessionDep
from reports_api.sessions import OwnerConnections
from reports_api.workspace import csrf
from reports_api.workspace.render import page

router = APIRouter(prefix="/dashboard/brokers/{broker_id}/admin", tags=["admin pages"], include_in_schema=False)
# A payload may be as large as a webhook (512 KiB), and URL-encoding can triple it: the other forms' 64 KiB
# (workspace_settings.form_lists) would refuse a VAPI report.
MAX_REPLAY_FORM = 3 * MAX_BODY_BYTES + 4096




def _refused(session: Session, exc: AdminError) -> Response:
    return page("error.html", exc.status, who=session.principal, message=str(exc))


@router.get("/health")
async def health_page(request: Request, owner: Owner, session: SessionDep, broker_id: Id) -> Response:
    if session is None:
        return _to_login()
    who = session.principal
    try:
        broker = await run_in_threadpool(_owner_run, owner, lambda cur: people.broker(cur, who, broker_id))
        found = await run_in_threadpool(health.read, request.app.state.ops, owner, who, broker_id)
    except AdminError as exc:
        return _refused(session, exc)
    return page("admin_health.html", who=who, broker=broker, health=found)


@router.get("/usage")
async def usage_page(owner: Owner, session: SessionDep, broker_id: Id,
                     start: Annotated[str | None, Query(max_length=10)] = None,
                     end: Annotated[str | None, Query(max_length=10)] = None) -> Response:
    if session is None:
        return _to_login()
    who = session.principal
    try:
        broker = await run_in_threadpool(_owner_run, owner, lambda cur: people.broker(cur, who, broker_id))
    except AdminError as exc:
        return _refused(session, exc)
    try:
        # Typed by hand in a date field, which an old browser shows as text: a bad date is said, not a 422 page.
        first, last = usage.date_range(date.fromisoformat(start) if start else None,
                                       date.fromisoformat(end) if end else None)
    except (ValueError, AdminError) as exc:
        return page("admin_usage.html", status.HTTP_422_UNPROCESSABLE_CONTENT, who=who, broker=broker, usage=None,
                    start=start or "", end=end or "", error=f"Fechas: {exc}")
    found = await run_in_threadpool(_owner_run, owner, lambda cur: usage.read(cur, who, broker_id, first, last))
    return page("admin_usage.html", who=who, broker=broker, usage=found, start=first, end=last, error=None)


@router.get("/dead-letters")
async def dead_letters_page(request: Request, owner: Owner, session: SessionDep, broker_id: Id,
                            before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None) -> Response:
    if session is None:
        return _to_login()
    who = session.principal
    try:
        broker, letters, next_id = await run_in_threadpool(_owner_run, owner, lambda cur: dead_letters.list_page(
            cur, who, broker_id, request.app.state.master_keys, before_id, 50))
    except AdminError as exc:
        return _refused(session, exc)
    return page("admin_dead_letters.html", who=who, broker=broker, letters=letters, next_before_id=next_id)


async def _letter_page(request: Request, owner: OwnerConnections, tokens: Tokens, session: Session, broker_id: int,
                       dead_letter_id: int, status_code: int = 200, body: str | None = None,
                       **context: Any) -> Response:
    who = session.principal
    try:
        broker, letter = await run_in_threadpool(_owner_run, owner, lambda cur: dead_letters.read(
            cur, who, broker_id, dead_letter_id, request.app.state.master_keys))
    except AdminError as exc:
        return _refused(session, exc)
    return page("admin_dead_letter.html", status_code, who=who, broker=broker, letter=letter,
                body=letter["body"] if body is None else body, csrf=csrf.token_for(tokens.secret, session.token),
                **{"error": None, "replayed": None, **context})


@router.get("/dead-letters/{dead_letter_id}")
async def dead_letter_page(request: Request, owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id,
                           dead_letter_id: Id) -> Response:
    if session is None:
        return _to_login()
    return await _letter_page(request, owner, tokens, session, broker_id, dead_letter_id)


async def _replay_form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_REPLAY_FORM:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "form too large")
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


@router.post("/dead-letters/{dead_letter_id}/replay")
async def replay_form(request: Request, owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id,
                      dead_letter_id: Id) -> Response:
    if session is None:
        return _to_login()
    form = await _replay_form(request)
    if not csrf.valid(tokens.secret, session.token, form.get(csrf.FIELD)):
        return page("error.html", status.HTTP_403_FORBIDDEN, who=session.principal, message=EXPIRED_FORM)
    # A textarea sends CRLF line breaks; the payload is JSON, where they are whitespace all the same.
    typed = form.get("body", "")
    try:
        done = await run_in_threadpool(dead_letters.replay, owner, request.app.state.publisher, session.principal,
                                       broker_id, dead_letter_id, typed)
    except AdminError as exc:
        if exc.status in (status.HTTP_403_FORBIDDEN, status.HTTP_404_NOT_FOUND):
            return _refused(session, exc)
        return await _letter_page(request, owner, tokens, session, broker_id, dead_letter_id, exc.status,
                                  body=typed, error=str(exc))
    return await _letter_page(request, owner, tokens, session, broker_id, dead_letter_id, replayed=done)
