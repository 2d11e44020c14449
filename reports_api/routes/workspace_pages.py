"""The workspace's pages under /dashboard: inbox, lead page and board, and the forms that write.

Server-rendered (``reports_api.workspace.render``); the session is the dashboard's cookie, and every
form carries a CSRF token derived from it (``reports_api.workspace.csrf``). A form's refusal (a lost
lead without a reason, a stage it is already in) comes back to the page as a message. Left out of the
OpenAPI document, like the dashboard: the JSON API is ``reports_api.routes.workspace``.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

import re
import uuid
from collections.abc import Callable, Iterable
from typing import Annotated, Any, cast
from urllib.parse import parse_qs, urlencode

import psycopg2.errors
import psycopg2.extensions
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from leadflow.agent import person
from leadflow.appointments import store
from reports_api import queries
from reports_api.dashboard import COOKIE
from reports_api.deps import Id, Pool, Tokens, broker_cursor
from reports_api.routes.workspace import AssignedQ, inbox_filter, lead_workspace, send_reply, switch_handler
from reports_api.security import InvalidToken, Principal, read_token
from reports_api.workspace import appointments, csrf, db, reads
from reports_api.workspace.render import page
from reports_api.workspace.schemas import HandlerIn, ReplyIn, TemplateIn

router = APIRouter(prefix="/dashboard/brokers/{broker_id}", tags=["workspace pages"], include_in_schema=False)

# What a form's refusal says on the page (the query string carries only the code).
ERRORS = {
    "lost_reason": "Para marcar un lead como perdido, escribe el motivo.",
    "same_stage": "El lead ya está en esa etapa.",
    "invalid": "No se pudo guardar: revisa lo escrito (vacío, demasiado largo o no permitido).",
    "not_found": "Ese lead no existe o no lo puedes modificar.",
    "agent_assign": "Solo un administrador asigna leads.",
    "csrf": "El formulario venció. Vuelve a intentarlo.",
    "no_chat": "Este lead no tiene un chat de Telegram o WhatsApp al que responder.",
    "opted_out": "Este lead pidió no ser contactado: no se envió nada.",
    "window": "Pasaron más de 24 horas desde el último mensaje del lead por WhatsApp: solo se puede enviar una "
              "plantilla aprobada.",
    "in_progress": "Esa respuesta ya se está enviando (o su envío quedó sin confirmar): no se envió de nuevo.",
    "send_failed": "El canal no aceptó la respuesta: no se envió. Vuelve a intentarlo.",
    "same_handler": "El lead ya estaba así.",
}


class Session:
    def __init__(self, principal: Principal, token: str) -> None:
        self.principal = principal
        self.token = token


# async: decoding a JWT is quicker than a hop to the thread pool.
async def _session(request: Request, tokens: Tokens) -> Session | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        return Session(read_token(tokens, token), token)
    except InvalidToken:
        return None


SessionDep = Annotated[Session | None, Depends(_session)]


def _to_login() -> RedirectResponse:
    return RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER)


def _error_page(who: Principal, exc: HTTPException) -> Response:
    # A page, not the API's JSON problem: the 403/404 is read by a person in a browser.
    return page("error.html", exc.status_code, who=who, message=exc.detail)


def _common(cur: psycopg2.extensions.cursor, broker_id: int) -> dict[str, Any]:
    broker = queries.broker(cur, broker_id)
    if broker is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"there is no broker {broker_id}")
    pipeline = reads.pipeline_of(cur, broker_id)
    stages = reads.stage_names(pipeline)
    return {"broker": broker, "pipeline": pipeline, "stages": stages,
            "stage_label": {s["code"]: s["name"] for s in stages}}


Field = Annotated[str | None, Query(max_length=100)]


def _page_filter(stage: str | None, temperature: str | None, channel: str | None, assigned: str | None,
                 handler: str | None, stalled: str | None, q: str | None, after: str | None) -> reads.InboxFilter:
    """The inbox form's filter: an empty field is no filter (the form sends every field); a value no option
    of the form has is a 422."""

    def pick(value: str | None, allowed: Iterable[str] | None = None, pattern: str | None = None) -> str | None:
        if not value:
            return None
        if (allowed is not None and value not in allowed) or (pattern and not re.fullmatch(pattern, value)):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "not a filter of this page")
        return value

    return inbox_filter(pick(stage, pattern=r"[a-z0-9_]{1,40}"),
                        cast(reads.Temperature | None, pick(temperature, reads.TEMPERATURES)),
                        pick(channel, reads.CHANNELS),
                        cast(reads.Assigned, pick(assigned, ("me", "unassigned", "anyone")) or "anyone"),
                        cast(reads.Handler | None, pick(handler, ("bot", "person"))),
                        None if not stalled else pick(stalled, ("true", "false")) == "true",
                        q, pick(after, pattern=reads.CURSOR_PATTERN), 50)


@router.get("/inbox")
def inbox_page(pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id, stage: Field = None,
               temperature: Field = None, channel: Field = None, assigned: Field = None, handler: Field = None,
               stalled: Field = None, q: Field = None, after: Field = None, error: Field = None) -> Response:
    if session is None:
        return _to_login()
    who = session.principal
    try:
        f = _page_filter(stage, temperature, channel, assigned, handler, stalled, q, after)
        with broker_cursor(pool, who, broker_id) as cur:
            common = _common(cur, broker_id)
            found = reads.inbox(cur, broker_id, who.user_id, f)
            counts = reads.inbox_counts(cur, broker_id, who.user_id, common["pipeline"], f)
            people = reads.people(cur, broker_id) if who.role != "AGENT" else []
            manual = _manual_campaigns(cur, broker_id) if who.role != "AGENT" else []
    except HTTPException as exc:
        return _error_page(who, exc)
    filters = {"stage": f.stage, "temperature": f.temperature, "channel": f.channel, "assigned": f.assigned,
               "handler": f.handler, "stalled": None if f.stalled is None else str(f.stalled).lower(), "q": f.search}
    kept = {k: v for k, v in filters.items() if v not in (None, "", "anyone")}
    base = f"/dashboard/brokers/{broker_id}/inbox"
    return page("ws_inbox.html", who=who, items=found["items"], counts=counts, selected=filters,
                next_url=f"{base}?{urlencode({**kept, 'after': found['next']})}" if found["next"] else None,
                first_url=f"{base}?{urlencode(kept)}" if after else None, people=people,
                can_assign=who.role != "AGENT", csrf=csrf.token_for(tokens.secret, session.token),
                error=ERRORS.get(error or ""), manual_campaigns=manual, **common)


def _manual_campaigns(cur: psycopg2.extensions.cursor, broker_id: int) -> list[dict[str, Any]]:
    """The broker's active manual campaigns, which an admin applies to leads chosen in the inbox."""
    cur.execute("""SELECT campaign_id, name FROM leadflow.campaigns WHERE broker_id = %s AND status = 'active'
                   AND definition -> 'trigger' ->> 'type' = 'manual' ORDER BY name""", (broker_id,))
    return [{"campaign_id": int(r[0]), "name": str(r[1])} for r in cur.fetchall()]


@router.get("/leads/{lead_id}")
def lead_page(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id, lead_id: Id,
              error: Field = None, saved: Field = None) -> Response:
    if session is None:
        return _to_login()
    who = session.principal
    now = appointments.now_of(request)
    try:
        with broker_cursor(pool, who, broker_id) as cur:
            common = _common(cur, broker_id)
            found = lead_workspace(cur, broker_id, lead_id, 500)
            people = reads.people(cur, broker_id) if who.role != "AGENT" else []
            target = person.reply_target(cur, lead_id)
            visits = appointments.of_lead(cur, broker_id, lead_id)
            rules, _ = store.broker_rules(cur, broker_id)
            slot_days = appointments.days_of(cur, broker_id, now, rules.horizon_days)
            takers = [p for p in store.schedules(cur, broker_id) if p.agent_id is not None]
    except HTTPException as exc:
        return _error_page(who, exc)
    # A new key per page view: a double click or a resent form sends once; a new reply needs a new page.
    return page("ws_lead.html", who=who, lead=found, people=people, can_assign=who.role != "AGENT", limit=500,
                reply_target=target, reply_key=uuid.uuid4().hex,
                csrf=csrf.token_for(tokens.secret, session.token),
                error=ERRORS.get(error or "") or appointments.MESSAGES.get(error or ""),
                visits=visits, slot_days=slot_days, visit_rules=rules, takers=takers, now=now,
                visit_saved=saved in ("booked", "status", "moved"), **appointments.LABELS, **common)


@router.get("/board")
def board_page(pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id, assigned: AssignedQ = "anyone",
               error: Field = None) -> Response:
    if session is None:
        return _to_login()
    who = session.principal
    try:
        with broker_cursor(pool, who, broker_id) as cur:
            common = _common(cur, broker_id)
            columns = reads.board(cur, broker_id, who.user_id, common["pipeline"], assigned, 30)
    except HTTPException as exc:
        return _error_page(who, exc)
    return page("ws_board.html", who=who, columns=columns, assigned=assigned,
                csrf=csrf.token_for(tokens.secret, session.token), error=ERRORS.get(error or ""), **common)


# --- forms -------------------------------------------------------------------------------------------

async def _form(request: Request) -> dict[str, str]:
    # Parsed by hand, as the login form is: FastAPI's Form() would need python-multipart.
    body = await request.body()
    if len(body) > 64 * 1024:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "form too large")
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0].replace("\x00", "") for key, values in parsed.items()}


def _back(broker_id: int, lead_id: int, form: dict[str, str], error: str | None = None) -> RedirectResponse:
    """Where a form returns: the page it was sent from (one of ours, never a URL from the form)."""
    base = f"/dashboard/brokers/{broker_id}"
    url = {"inbox": f"{base}/inbox", "board": f"{base}/board"}.get(form.get("back", "lead"), f"{base}/leads/{lead_id}")
    return RedirectResponse(f"{url}?error={error}" if error else url, status_code=status.HTTP_303_SEE_OTHER)


async def _submit(request: Request, pool: Any, tokens: Any, session: Session | None, broker_id: int, lead_id: int,
                  action: Callable[[psycopg2.extensions.cursor, dict[str, str], Principal], object]) -> Response:
    """Check the session and the CSRF token, run the write, and go back to the page with its outcome."""
    if session is None:
        return _to_login()
    form = await _form(request)
    if not csrf.valid(tokens.secret, session.token, form.get(csrf.FIELD)):
        return page("error.html", status.HTTP_403_FORBIDDEN, who=session.principal, message=ERRORS["csrf"])
    who = session.principal

    def write() -> str | None:
        try:
            with db.write_cursor(pool, who, broker_id) as cur:
                action(cur, form, who)
        except db.NotFound:
            return "not_found"
        except db.Conflict:
            return "same_stage"
        except db.Invalid as exc:
            return "lost_reason" if "lost" in str(exc) else "invalid"
        except psycopg2.errors.InsufficientPrivilege:
            return "not_found"
        return None

    try:
        error = await run_in_threadpool(write)
    except HTTPException as exc:
        return _error_page(who, exc)
    if error == "not_found":
        return page("error.html", status.HTTP_404_NOT_FOUND, who=who, message=ERRORS[error])
    return _back(broker_id, lead_id, form, error)


@router.post("/leads/{lead_id}/notes")
async def note_form(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id,
                    lead_id: Id) -> Response:
    return await _submit(request, pool, tokens, session, broker_id, lead_id,
                         lambda cur, form, _: db.add_note(cur, broker_id, lead_id, form.get("body", "")))


@router.post("/leads/{lead_id}/tags")
async def tag_form(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id,
                   lead_id: Id) -> Response:
    return await _submit(request, pool, tokens, session, broker_id, lead_id,
                         lambda cur, form, _: db.add_tag(cur, broker_id, lead_id, form.get("tag", "")))


@router.post("/leads/{lead_id}/tags/remove")
async def untag_form(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id,
                     lead_id: Id) -> Response:
    return await _submit(request, pool, tokens, session, broker_id, lead_id,
                         lambda cur, form, _: db.remove_tag(cur, broker_id, lead_id, form.get("tag", "")))


@router.post("/leads/{lead_id}/assignment")
async def assignment_form(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id,
                          lead_id: Id) -> Response:
    if session is not None and session.principal.role == "AGENT":
        return page("error.html", status.HTTP_403_FORBIDDEN, who=session.principal, message=ERRORS["agent_assign"])

    def assign(cur: psycopg2.extensions.cursor, form: dict[str, str], _: Principal) -> object:
        raw = form.get("user_id", "").strip()
        if raw and not (raw.isdigit() and len(raw) < 19):
            raise db.Invalid("not a person")
        return db.assign(cur, broker_id, lead_id, int(raw) if raw else None)

    return await _submit(request, pool, tokens, session, broker_id, lead_id, assign)


@router.post("/leads/{lead_id}/stage")
async def stage_form(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id,
                     lead_id: Id) -> Response:
    def move(cur: psycopg2.extensions.cursor, form: dict[str, str], who: Principal) -> object:
        return db.move_stage(cur, broker_id, lead_id, form.get("stage", ""), form.get("reason"),
                             reads.pipeline_of(cur, broker_id), who)

    return await _submit(request, pool, tokens, session, broker_id, lead_id, move)


def _reply_error(exc: HTTPException) -> str:
    """The page's message code for a refused reply or switch (the JSON API's detail says the same in English)."""
    detail = str(exc.detail)
    if detail in ERRORS:
        return detail
    if exc.status_code == status.HTTP_409_CONFLICT:
        for needle, code in (("opted out", "opted_out"), ("24 hours", "window"), ("no Telegram", "no_chat")):
            if needle in detail:
                return code
        return "in_progress"
    return "send_failed" if exc.status_code == status.HTTP_502_BAD_GATEWAY else "invalid"


async def _person_form(request: Request, tokens: Any, session: Session | None, broker_id: int, lead_id: int,
                       action: Callable[[Principal, dict[str, str]], object]) -> Response:
    """Session, CSRF, then a reply or a switch; refusals back on the lead page as a message."""
    if session is None:
        return _to_login()
    form = await _form(request)
    if not csrf.valid(tokens.secret, session.token, form.get(csrf.FIELD)):
        return page("error.html", status.HTTP_403_FORBIDDEN, who=session.principal, message=ERRORS["csrf"])
    who = session.principal
    try:
        await run_in_threadpool(action, who, form)
    except HTTPException as exc:
        if exc.status_code in (status.HTTP_403_FORBIDDEN, status.HTTP_404_NOT_FOUND):
            return _error_page(who, exc)
        return _back(broker_id, lead_id, {}, _reply_error(exc))
    except ValueError:  # the form's fields do not make a valid request (pydantic)
        return _back(broker_id, lead_id, {}, "invalid")
    return _back(broker_id, lead_id, {})


@router.post("/leads/{lead_id}/reply")
async def reply_form(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id,
                     lead_id: Id) -> Response:
    def send(who: Principal, form: dict[str, str]) -> object:
        name = form.get("template_name", "").strip()
        template = None if not name else TemplateIn(
            name=name, language=form.get("template_language", "").strip() or "es",
            parameters=[line.strip() for line in form.get("template_params", "").splitlines() if line.strip()])
        body = ReplyIn(text=form.get("text", ""), template=template, idempotency_key=form.get("idempotency_key", ""))
        return send_reply(request, pool, who, broker_id, lead_id, body)

    return await _person_form(request, tokens, session, broker_id, lead_id, send)


@router.post("/leads/{lead_id}/handler")
async def handler_form(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id,
                       lead_id: Id) -> Response:
    def switch(who: Principal, form: dict[str, str]) -> object:
        changed = switch_handler(pool, who, broker_id, lead_id,
                                 HandlerIn(handler=form.get("handler", ""), reason=form.get("reason", "")))
        if not changed:
            raise HTTPException(status.HTTP_409_CONFLICT, "same_handler")
        return changed

    return await _person_form(request, tokens, session, broker_id, lead_id, switch)
