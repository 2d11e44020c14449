"""Leads brought in by a broker: CSV import (upload → preview with each row's errors → import in the background
→ report) and a lead typed in by hand, as JSON routes (in /docs) and as pages under /dashboard.

Both enter through Kafka like every channel (``reports_api.workspace.imports``): rows become channel messages
that the landing stores and identity resolution merges into the leads they match. Only an ADMIN (or a
SUPERADMIN) imports: an AGENT sees only the leads given to it, so it could not see what it brought in.
A file over LEADFLOW_IMPORT_MAX_MB is refused with 413 from its Content-Length, before its body is read (and,
without one, as soon as the body read passes the limit).
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

import psycopg2.errors
from fastapi import APIRouter, Body, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from leadflow.config import Settings
from leadflow.leads import imports as parsing
from reports_api import queries
from reports_api.deps import ERRORS, Caller, Id, Pool, Tokens, broker_cursor
from reports_api.routes.workspace_pages import Session, SessionDep
from reports_api.security import Principal
from reports_api.workspace import csrf, db, imports
from reports_api.workspace.render import page

log = logging.getLogger(__name__)
MB = 1024 * 1024
MULTIPART_SLACK = 64 * 1024  # the form's other fields and part headers around the file


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The import jobs of this app, on its pool and its publisher's topic; imports left running resume."""
    app.state.import_max_bytes = Settings.from_environment().import_max_mb * MB
    publisher = app.state.publisher
    jobs = imports.ImportJobs(app.state.pool, publisher.bootstrap, publisher.topic)
    app.state.import_jobs = jobs
    try:
        resumed = await run_in_threadpool(jobs.resume_all, app.state.database_url)
        if resumed:
            log.info("resuming %s lead import(s)", resumed)
    except psycopg2.Error as exc:  # the API serves anyway; an import's page resumes it later
        log.warning("lead imports not resumed at start-up: %s", exc)
    try:
        yield
    finally:
        await run_in_threadpool(jobs.close)


router = APIRouter(tags=["workspace imports"], responses=ERRORS, lifespan=lifespan)


# --- models (/docs) ----------------------------------------------------------------------------------------

class ImportOut(BaseModel):
    import_id: int
    kind: Literal["csv", "manual"]
    status: str = Field(description="preview, queued, producing, waiting (for the landing and identity resolution), "
                                    "done, failed")
    filename: str | None
    encoding: str | None
    delimiter: str | None
    columns: dict[str, str] = Field(description="field → the file's header that fed it")
    ignored_columns: list[str]
    total_rows: int
    valid_rows: int
    rejected_rows: int
    produced_upto: int = Field(description="the last row produced onto the messages topic")
    produced_rows: int = Field(description="how many valid rows are on the messages topic")
    landed_rows: int = Field(description="rows landed and resolved to a lead (new + merged)")
    waiting_rows: int = Field(description="valid rows not yet landed and resolved")
    new_leads: int
    merged_leads: int = Field(description="rows merged into a lead the broker already had")
    error: str | None
    created_by: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    lead_id: int | None = Field(description="a lead typed in by hand: its lead once it exists")


class ImportRowOut(BaseModel):
    row: int = Field(description="its row in the spreadsheet (the header is row 1)")
    status: Literal["pending", "produced", "new", "merged", "rejected"]
    reason: str | None
    existing_lead_id: int | None = Field(description="at preview: the lead this row's phone or email belongs to")
    lead_id: int | None
    name: str | None
    phone_e164: str | None
    email: str | None
    source: str | None
    tags: list[str]
    notes: str | None
    qualification: dict[str, str]
    raw: dict[str, str]


class LeadIn(BaseModel):
    name: str = Field(min_length=1, max_length=parsing.MAX_NAME)
    phone: str | None = Field(None, max_length=40)
    email: str | None = Field(None, max_length=254)
    source: str | None = Field(None, max_length=parsing.MAX_SOURCE)
    notes: str | None = Field(None, max_length=parsing.MAX_NOTES)
    tags: list[str] = Field(default_factory=list, max_length=parsing.MAX_TAGS)
    operation: str | None = Field(None, max_length=40, description="comprar, arrendar, vender, invertir")
    property_type: str | None = Field(None, max_length=60)
    bedrooms: str | None = Field(None, max_length=20)
    budget: str | None = Field(None, max_length=60, description="e.g. 4.500 UF")
    location: str | None = Field(None, max_length=120)
    timeline: str | None = Field(None, max_length=60)
    financing: str | None = Field(None, max_length=60)


def _view(found: dict[str, Any]) -> dict[str, Any]:
    columns = dict(found.get("columns") or {})
    ignored = columns.pop("_ignored", [])
    return {**found, "columns": columns, "ignored_columns": ignored}


# --- shared steps --------------------------------------------------------------------------------------------

def _may_import(who: Principal, broker_id: int) -> None:
    if not who.may_read(broker_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this account may not read that broker")
    if who.role == "AGENT":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only an administrator imports or creates leads")


def _too_large(request: Request) -> HTTPException:
    limit = request.app.state.import_max_bytes // MB
    return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                         f"the file is larger than {limit} MB (LEADFLOW_IMPORT_MAX_MB); split it in parts")


async def _read_limited(request: Request, slack: int = 0) -> bytes:
    """The body, refused (413) from its declared length before reading, or as soon as it passes the limit."""
    limit = request.app.state.import_max_bytes + slack
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(request)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(request)
        chunks.append(chunk)
    return b"".join(chunks)


def _country(pool: Any, who: Principal, broker_id: int) -> str:
    with broker_cursor(pool, who, broker_id) as cur:
        broker = queries.broker(cur, broker_id)
    if broker is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"there is no broker {broker_id}")
    return str(broker["country"])


def _store(pool: Any, who: Principal, broker_id: int, kind: imports.Kind, filename: str | None,
           data: bytes) -> int:
    """Parse and store as a preview (422 with the file's problem); the import id."""
    country = _country(pool, who, broker_id)
    try:
        parsed = parsing.parse(data, country)
    except parsing.FileError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    with db.write_cursor(pool, who, broker_id) as cur:
        return imports.create(cur, broker_id, kind, filename, parsed)


def _get(pool: Any, who: Principal, broker_id: int, import_id: int, request: Request | None = None) -> dict[str, Any]:
    with broker_cursor(pool, who, broker_id) as cur:
        try:
            found = imports.get(cur, broker_id, import_id)
        except db.NotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    if request is not None and found["status"] in imports.ACTIVE:
        # Resumes an import whose process stopped (the lease decides who runs it).
        request.app.state.import_jobs.kick(broker_id, import_id, found["created_by"])
    return found


def _start(request: Request, pool: Any, who: Principal, broker_id: int, import_id: int) -> dict[str, Any]:
    try:
        with db.write_cursor(pool, who, broker_id) as cur:
            found = imports.start(cur, broker_id, import_id)
    except db.NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except ValueError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    if found["status"] in imports.ACTIVE:
        request.app.state.import_jobs.kick(broker_id, import_id, found["created_by"])
    return found


def _manual(pool: Any, who: Principal, broker_id: int, lead: LeadIn) -> tuple[int | None, list[str]]:
    """A lead typed in: stored as a one-row import (the same path as a CSV's rows); its id, or the errors."""
    country = _country(pool, who, broker_id)
    values = {k: v for k, v in lead.model_dump().items() if isinstance(v, str)}
    values["tags"] = ",".join(lead.tags)
    row = parsing.check(values, 1, country)
    if not row.ok:
        return None, row.errors
    parsed = parsing.Parsed("utf-8", ",", {}, [], [row])
    with db.write_cursor(pool, who, broker_id) as cur:
        return imports.create(cur, broker_id, "manual", None, parsed), []


def _csv_response(pool: Any, who: Principal, broker_id: int, import_id: int, only: str | None) -> Response:
    with broker_cursor(pool, who, broker_id) as cur:
        try:
            imports.get(cur, broker_id, import_id)
        except db.NotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
        lines = list(imports.report_rows(cur, broker_id, import_id, only))  # type: ignore[arg-type]
    body = parsing.to_csv(["row", "outcome", "lead_id", "reason", "name", "phone", "email", "as given"], lines)
    name = f"import-{import_id}-{only or 'all'}.csv"
    # The BOM makes Excel read it as UTF-8; every cell that looks like a formula is prefixed with '.
    return Response("\ufeff" + body, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


OnlyQ = Annotated[Literal["pending", "produced", "new", "merged", "rejected"] | None,
                  Query(alias="status", description="only rows with this outcome")]


# --- JSON API ----------------------------------------------------------------------------------------------

CSV_BODY = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string", "format": "binary"}}}}}


@router.post("/brokers/{broker_id}/imports", response_model=ImportOut, status_code=201, openapi_extra=CSV_BODY,
             responses={413: {"description": "larger than LEADFLOW_IMPORT_MAX_MB"}})
async def upload(request: Request, pool: Pool, who: Caller, broker_id: Id,
                 filename: Annotated[str | None, Query(max_length=255)] = None) -> dict[str, Any]:
    """Upload a CSV as the request body (UTF-8 or Latin-1, `,` or `;`; headers in Spanish or English: nombre/name,
    telefono/phone/celular, correo/email, fuente/source/canal/channel, notas/notes, etiquetas/tags, and any of
    operacion, tipo de propiedad, dormitorios, presupuesto, comuna, plazo, financiamiento). Answers the preview:
    nothing is imported until `POST …/imports/{import_id}/start`. Each row's errors: `GET …/rows`."""
    _may_import(who, broker_id)
    data = await _read_limited(request)
    import_id = await run_in_threadpool(_store, pool, who, broker_id, "csv", filename, data)
    return _view(await run_in_threadpool(_get, pool, who, broker_id, import_id))


@router.get("/brokers/{broker_id}/imports", response_model=list[ImportOut])
def list_imports(pool: Pool, who: Caller, broker_id: Id) -> list[dict[str, Any]]:
    """The broker's latest imports, newest first."""
    _may_import(who, broker_id)
    with broker_cursor(pool, who, broker_id) as cur:
        found = imports.recent(cur, broker_id, 50)
    return [_view({**f, "lead_id": None}) for f in found]


@router.get("/brokers/{broker_id}/imports/{import_id}", response_model=ImportOut)
def import_status(request: Request, pool: Pool, who: Caller, broker_id: Id, import_id: Id) -> dict[str, Any]:
    """The import's status and counts: poll it while `status` is queued, producing or waiting."""
    _may_import(who, broker_id)
    return _view(_get(pool, who, broker_id, import_id, request))


@router.get("/brokers/{broker_id}/imports/{import_id}/rows", response_model=list[ImportRowOut])
def import_rows(pool: Pool, who: Caller, broker_id: Id, import_id: Id, status_: OnlyQ = None,
                after: Annotated[int, Query(ge=0, le=10_000_000, description="the last `row` seen")] = 0,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    """The rows in file order with their outcome and reason (`status_`: only one outcome)."""
    _may_import(who, broker_id)
    _get(pool, who, broker_id, import_id)
    with broker_cursor(pool, who, broker_id) as cur:
        return imports.rows(cur, broker_id, import_id, status_, after, limit)


@router.get("/brokers/{broker_id}/imports/{import_id}/rows.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}}})
def import_rows_csv(pool: Pool, who: Caller, broker_id: Id, import_id: Id, status_: OnlyQ = None) -> Response:
    """The report as CSV (e.g. `status_=rejected` for the rows to fix); cells that a spreadsheet would read as a
    formula are prefixed with `'`."""
    _may_import(who, broker_id)
    return _csv_response(pool, who, broker_id, import_id, status_)


@router.post("/brokers/{broker_id}/imports/{import_id}/start", response_model=ImportOut, status_code=202)
def start_import(request: Request, pool: Pool, who: Caller, broker_id: Id, import_id: Id) -> dict[str, Any]:
    """Import the previewed file's valid rows in the background (starting twice starts once)."""
    _may_import(who, broker_id)
    found = _start(request, pool, who, broker_id, import_id)
    return _view(found)


@router.delete("/brokers/{broker_id}/imports/{import_id}", status_code=204)
def discard_import(pool: Pool, who: Caller, broker_id: Id, import_id: Id) -> Response:
    """Drop an import still in preview."""
    _may_import(who, broker_id)
    try:
        with db.write_cursor(pool, who, broker_id) as cur:
            imports.discard(cur, broker_id, import_id)
    except db.NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except ValueError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return Response(status_code=204)


@router.post("/brokers/{broker_id}/leads", response_model=ImportOut, status_code=202)
def create_lead(request: Request, pool: Pool, who: Caller, broker_id: Id,
                lead: Annotated[LeadIn, Body()]) -> dict[str, Any]:
    """A lead typed in by a person: it enters as a message of channel `manual` and exists once landed and
    resolved (a phone or email the broker already has merges into that lead). Poll
    `GET …/imports/{import_id}` until `lead_id` is set."""
    _may_import(who, broker_id)
    import_id, errors = _manual(pool, who, broker_id, lead)
    if import_id is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "; ".join(errors))
    return _view(_start(request, pool, who, broker_id, import_id))


# --- pages -------------------------------------------------------------------------------------------------

PAGE_ERRORS = {
    "csrf": "El formulario venció. Vuelve a intentarlo.",
    "nothing_valid": "Ninguna fila de este archivo se puede importar: revisa el motivo de cada una.",
    "started": "Esta importación ya comenzó; no se puede descartar.",
}
STATUS = {"preview": "vista previa", "queued": "en cola", "producing": "enviando filas",
          "waiting": "esperando que se registren", "done": "terminada", "cancelled": "descartada", "failed": "falló"}
ROW_STATUS = {"pending": "por importar", "produced": "enviada", "new": "lead nuevo", "merged": "unida a lead existente",
              "rejected": "rechazada"}


def _login() -> RedirectResponse:
    return RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER)


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)


def _problem(who: Principal, exc: HTTPException) -> Response:
    return page("error.html", exc.status_code, who=who, message=exc.detail)


def _broker(pool: Any, who: Principal, broker_id: int) -> dict[str, Any]:
    with broker_cursor(pool, who, broker_id) as cur:
        broker = queries.broker(cur, broker_id)
    if broker is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"there is no broker {broker_id}")
    return broker


def _upload_page(request: Request, pool: Any, tokens: Any, session: Session, broker_id: int, status_code: int = 200,
                 error: str | None = None) -> Response:
    who = session.principal
    _may_import(who, broker_id)
    broker = _broker(pool, who, broker_id)
    with broker_cursor(pool, who, broker_id) as cur:
        found = imports.recent(cur, broker_id)
    return page("ws_import.html", status_code, who=who, broker=broker, imports=found, STATUS=STATUS, error=error,
                max_mb=request.app.state.import_max_bytes // MB, headers=parsing.HEADERS,
                csrf=csrf.token_for(tokens.secret, session.token))


def _multipart(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """name → (filename, content) of a multipart/form-data body (python-multipart is not a dependency)."""
    boundary = next((p.split("=", 1)[1].strip().strip('"') for p in content_type.split(";")
                     if p.strip().lower().startswith("boundary=")), "")
    if not boundary:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "not a multipart/form-data upload")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(b"--" + boundary.encode())[1:]:
        if part.startswith(b"--"):
            break
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        disposition = next((line for line in head.decode("utf-8", "replace").split("\r\n")
                            if line.lower().startswith("content-disposition:")), "")
        params = {}
        for item in disposition.split(";")[1:]:
            key, _, value = item.strip().partition("=")
            params[key.lower()] = value.strip().strip('"')
        if "name" in params and params["name"] not in fields:
            fields[params["name"]] = (params.get("filename"), content.removesuffix(b"\r\n"))
    return fields


@router.get("/dashboard/brokers/{broker_id}/imports", include_in_schema=False)
def upload_page(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id) -> Response:
    if session is None:
        return _login()
    try:
        return _upload_page(request, pool, tokens, session, broker_id)
    except HTTPException as exc:
        return _problem(session.principal, exc)


@router.post("/dashboard/brokers/{broker_id}/imports", include_in_schema=False)
async def upload_form(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id) -> Response:
    if session is None:
        return _login()
    who = session.principal
    try:
        _may_import(who, broker_id)
        try:
            body = await _read_limited(request, MULTIPART_SLACK)
        except HTTPException as exc:
            return await run_in_threadpool(
                _upload_page, request, pool, tokens, session, broker_id, exc.status_code,
                f"El archivo supera el máximo de {request.app.state.import_max_bytes // MB} MB: divídelo en partes.")
        fields = _multipart(body, request.headers.get("content-type", ""))
        offered = fields.get(csrf.FIELD, (None, b""))[1].decode("utf-8", "replace")
        if not csrf.valid(tokens.secret, session.token, offered):
            return page("error.html", status.HTTP_403_FORBIDDEN, who=who, message=PAGE_ERRORS["csrf"])
        filename, data = fields.get("file", (None, b""))
        try:
            import_id = await run_in_threadpool(_store, pool, who, broker_id, "csv", filename, data)
        except HTTPException as exc:
            if exc.status_code != status.HTTP_422_UNPROCESSABLE_CONTENT:
                raise
            return await run_in_threadpool(_upload_page, request, pool, tokens, session, broker_id, exc.status_code,
                                           f"No se pudo leer el archivo: {exc.detail}")
    except HTTPException as exc:
        return _problem(who, exc)
    return _see(f"/dashboard/brokers/{broker_id}/imports/{import_id}")


@router.get("/dashboard/brokers/{broker_id}/imports/{import_id}", include_in_schema=False)
def import_page(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id, import_id: Id,
                error: Annotated[str | None, Query(max_length=40)] = None) -> Response:
    if session is None:
        return _login()
    who = session.principal
    try:
        _may_import(who, broker_id)
        found = _get(pool, who, broker_id, import_id, request)
        if found["kind"] == "manual" and found["status"] == "done" and found["lead_id"]:
            return _see(f"/dashboard/brokers/{broker_id}/leads/{found['lead_id']}")
        broker = _broker(pool, who, broker_id)
        with broker_cursor(pool, who, broker_id) as cur:
            rejected = imports.rows(cur, broker_id, import_id, "rejected", 0, 200)
            shown = imports.rows(cur, broker_id, import_id, None, 0, 100)
    except HTTPException as exc:
        return _problem(who, exc)
    return page("ws_import_view.html", who=who, broker=broker, imp=_view(found), rejected=rejected, rows=shown,
                STATUS=STATUS, ROW_STATUS=ROW_STATUS, active=found["status"] in imports.ACTIVE,
                error=PAGE_ERRORS.get(error or ""), csrf=csrf.token_for(tokens.secret, session.token))


@router.get("/dashboard/brokers/{broker_id}/imports/{import_id}/rows.csv", include_in_schema=False)
def import_csv_page(pool: Pool, session: SessionDep, broker_id: Id, import_id: Id, status_: OnlyQ = None) -> Response:
    if session is None:
        return _login()
    try:
        _may_import(session.principal, broker_id)
        return _csv_response(pool, session.principal, broker_id, import_id, status_)
    except HTTPException as exc:
        return _problem(session.principal, exc)


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > 64 * 1024:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "form too large")
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0].replace("\x00", "") for key, values in parsed.items()}


async def _checked_form(request: Request, tokens: Any, session: Session) -> dict[str, str] | Response:
    form = await _form(request)
    if not csrf.valid(tokens.secret, session.token, form.get(csrf.FIELD)):
        return page("error.html", status.HTTP_403_FORBIDDEN, who=session.principal, message=PAGE_ERRORS["csrf"])
    return form


@router.post("/dashboard/brokers/{broker_id}/imports/{import_id}/start", include_in_schema=False)
async def start_form(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id,
                     import_id: Id) -> Response:
    if session is None:
        return _login()
    form = await _checked_form(request, tokens, session)
    if isinstance(form, Response):
        return form
    url = f"/dashboard/brokers/{broker_id}/imports/{import_id}"
    try:
        _may_import(session.principal, broker_id)
        await run_in_threadpool(_start, request, pool, session.principal, broker_id, import_id)
    except HTTPException as exc:
        if exc.status_code == status.HTTP_409_CONFLICT:
            return _see(f"{url}?error=nothing_valid")
        return _problem(session.principal, exc)
    return _see(url)


@router.post("/dashboard/brokers/{broker_id}/imports/{import_id}/discard", include_in_schema=False)
async def discard_form(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id,
                       import_id: Id) -> Response:
    if session is None:
        return _login()
    form = await _checked_form(request, tokens, session)
    if isinstance(form, Response):
        return form
    who = session.principal

    def drop() -> None:
        _may_import(who, broker_id)
        with db.write_cursor(pool, who, broker_id) as cur:
            imports.discard(cur, broker_id, import_id)

    try:
        await run_in_threadpool(drop)
    except db.NotFound as exc:
        return _problem(who, HTTPException(status.HTTP_404_NOT_FOUND, str(exc)))
    except ValueError:
        return _see(f"/dashboard/brokers/{broker_id}/imports/{import_id}?error=started")
    except HTTPException as exc:
        return _problem(who, exc)
    return _see(f"/dashboard/brokers/{broker_id}/imports")


LEAD_FIELDS = ("name", "phone", "email", "source", "notes", "tags", "operation", "property_type", "bedrooms", "budget",
               "location", "timeline", "financing")


def _lead_page(pool: Any, tokens: Any, session: Session, broker_id: int, values: dict[str, str],
               errors: list[str], status_code: int = 200) -> Response:
    who = session.principal
    _may_import(who, broker_id)
    return page("ws_lead_new.html", status_code, who=who, broker=_broker(pool, who, broker_id), values=values,
                errors=errors, csrf=csrf.token_for(tokens.secret, session.token))


@router.get("/dashboard/brokers/{broker_id}/new-lead", include_in_schema=False)
def new_lead_page(pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id) -> Response:
    if session is None:
        return _login()
    try:
        return _lead_page(pool, tokens, session, broker_id, {}, [])
    except HTTPException as exc:
        return _problem(session.principal, exc)


@router.post("/dashboard/brokers/{broker_id}/new-lead", include_in_schema=False)
async def new_lead_form(request: Request, pool: Pool, tokens: Tokens, session: SessionDep, broker_id: Id) -> Response:
    if session is None:
        return _login()
    form = await _checked_form(request, tokens, session)
    if isinstance(form, Response):
        return form
    who = session.principal
    values = {k: form.get(k, "").strip() for k in LEAD_FIELDS}

    def create() -> tuple[int | None, list[str]]:
        _may_import(who, broker_id)
        try:
            given: dict[str, Any] = {k: v or None for k, v in values.items()}
            lead = LeadIn.model_validate({**given, "name": values["name"], "tags": parsing.split_tags(values["tags"])})
        except ValidationError as exc:
            return None, [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        import_id, errors = _manual(pool, who, broker_id, lead)
        if import_id is not None:
            _start(request, pool, who, broker_id, import_id)
        return import_id, errors

    try:
        import_id, errors = await run_in_threadpool(create)
        if import_id is None:
            return await run_in_threadpool(_lead_page, pool, tokens, session, broker_id, values, errors,
                                           status.HTTP_422_UNPROCESSABLE_CONTENT)
    except HTTPException as exc:
        return _problem(who, exc)
    return _see(f"/dashboard/brokers/{broker_id}/imports/{import_id}")
