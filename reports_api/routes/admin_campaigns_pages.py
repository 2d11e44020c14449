"""The segments and campaigns pages under /dashboard, for a broker's admins: the list, the segment editor with its
live count, the campaign editor with its preview for a real lead and its status buttons, applying a manual
campaign (from the inbox's chosen leads or to a segment's members), and the campaign's per-lead log.

Same checks and writes as the JSON API (``reports_api.admin.campaigns``, as the database owner). Forms are parsed
by ``workspace_settings.form_lists`` (no multipart library) and carry the session's CSRF token; a refused form
comes back with what was typed and a message naming each field, with the refusal's status. The live count is a
few lines of JavaScript posting the form to ``…/segments/count`` as it is edited; without JavaScript, saving shows
the count. Left out of the OpenAPI document: the JSON API is ``reports_api.routes.admin_campaigns``.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

import re
from collections.abc import Callable
from typing import Annotated, Any

import psycopg2.extensions
from fastapi import APIRouter, Query, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from leadflow.campaigns.segments import OPERATORS, PROFILE_FIELDS
from leadflow.campaigns.store import TRANSITIONS
from reports_api.admin import campaigns
from reports_api.admin.access import AdminError, Invalid
from reports_api.deps import Id, Tokens
from reports_api.routes.admin import Owner
from reports_api.routes.admin_forms import EXPIRED_FORM
from reports_api.routes.admin_forms import checked_form as _form
from reports_api.routes.admin_forms import first as _one
from reports_api.routes.admin_forms import owner_run as _owner_run
from reports_api.routes.admin_forms import to_login as _to_login
from reports_api.routes.workspace_pages import Session, SessionDep
from reports_api.sessions import OwnerConnections
from reports_api.workspace import csrf
from reports_api.workspace.render import page

router = APIRouter(prefix="/dashboard/brokers/{broker_id}/admin", tags=["admin pages"], include_in_schema=False)
MAX_ROWS = 12  # condition rows of the segment form
OPS = {"eq": "es igual a", "ne": "no es", "in": "es uno de", "not_in": "no es ninguno de", "gt": "mayor que",
       "gte": "mayor o igual a", "lt": "menor que", "lte": "menor o igual a", "any_of": "incluye alguno de",
       "all_of": "incluye todos", "none_of": "no incluye ninguno de", "is_null": "no se sabe",
       "not_null": "se sabe"}
ACTIONS = {"activate": "Activar", "pause": "Pausar", "resume": "Reanudar", "complete": "Completar"}
STATUS_LABELS = {"draft": "borrador", "active": "activa", "paused": "pausada", "completed": "completada"}
LOG_LABELS = {"pending": "pendiente", "sent": "enviado", "delivered": "entregado", "read": "leído",
              "replied": "respondido", "failed": "falló", "skipped": "omitido"}
# The campaign form's inputs by the definition's paths (``steps[k].`` is the form's ``step<row>_``).
STEP_INPUTS = {"action": "action", "channel": "channel", "provider": "provider", "delay_hours": "delay_hours",
               "template": "template", "whatsapp_template.name": "wa_name",
               "whatsapp_template.language": "wa_language", "whatsapp_template.parameters": "wa_parameters",
               "stage": "stage", "conditions.score_min": "score_min", "conditions.score_max": "score_max",
               "conditions.required_fields": "required_fields", "conditions.excluded_tags": "excluded_tags"}
STEP_LABELS = {"action": "acción", "channel": "canal", "provider": "proveedor", "delay_hours": "espera (horas)",
               "template": "texto", "wa_name": "plantilla de WhatsApp", "wa_language": "idioma de la plantilla",
               "wa_parameters": "parámetros de la plantilla", "stage": "etapa", "score_min": "puntaje mínimo",
               "score_max": "puntaje máximo", "required_fields": "datos requeridos",
               "excluded_tags": "etiquetas excluidas", "": "paso"}
TOP_LABELS = {"name": "Nombre", "trigger_type": "Disparador", "trigger_score_min": "Disparador · puntaje mínimo",
              "trigger_stage": "Disparador · etapa", "trigger_days": "Disparador · días sin responder",
              "trigger_segment": "Disparador · segmento", "steps": "Pasos", "lead_id": "Lead de la vista previa",
              "status": "Estado", "match": "Coinciden", "campaign_id": "Campaña", "lead_ids": "Leads",
              "all": "Condiciones", "any": "Condiciones"}




def _error(who: Any, exc: AdminError) -> Response:
    return page("error.html", exc.status, who=who, message=str(exc))


# --- form ↔ rules -------------------------------------------------------------------------------------

def _scalar(kind: str, raw: str) -> Any:
    """A typed value as the segment reads it; what does not parse is passed on as typed, for the check to
    name it (never guessed)."""
    text = raw.strip()
    if kind == "number":
        try:
            number = float(text.replace(",", "."))
        except ValueError:
            return text
        return int(number) if number.is_integer() else number
    if kind == "bool":
        return {"true": True, "sí": True, "si": True, "1": True, "false": False, "no": False, "0": False}.get(
            text.lower(), text)
    return text


def rules_from_form(form: dict[str, list[str]]) -> tuple[dict[str, Any], list[int], list[dict[str, str]]]:
    """(rules, the form row of each condition, the rows as typed). A row without a field is no condition."""
    match = "any" if _one(form, "match") == "any" else "all"
    conditions: list[dict[str, Any]] = []
    places: list[int] = []
    typed: list[dict[str, str]] = []
    for i in range(MAX_ROWS):
        row = {k: _one(form, f"cond{i}_{k}") for k in ("field", "op", "value")}
        typed.append(row)
        if not row["field"]:
            continue
        kind = PROFILE_FIELDS.get(row["field"], "text")
        condition: dict[str, Any] = {"field": row["field"], "op": row["op"]}
        if row["op"] in ("in", "not_in", "any_of", "all_of", "none_of"):
            condition["value"] = [_scalar("text" if kind == "list" else kind, v) for v in row["value"].split(",")
                                  if v.strip()]
        elif row["op"] not in ("is_null", "not_null"):
            condition["value"] = _scalar("text" if kind == "list" else kind, row["value"]) if row["value"] else None
        conditions.append(condition)
        places.append(i)
    return {match: conditions}, places, typed


def flat(rules: dict[str, Any]) -> bool:
    """Whether the form can show the rules: one group (all or any) of plain conditions, as it writes them.
    Nested groups and both groups at once come from the JSON API; the page shows them, it does not save them."""
    groups = [g for g in ("all", "any") if rules.get(g)]
    return len(groups) <= 1 and all("field" in c for g in groups for c in rules[g])


def rules_to_rows(rules: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    """A stored segment as the form's rows (flat: the editor writes one group, all or any)."""
    match = "any" if rules.get("any") and not rules.get("all") else "all"
    rows = []
    for c in rules.get(match, []):
        if "field" not in c:
            continue
        value = c.get("value")
        shown = ", ".join(str(v) for v in value) if isinstance(value, list) else \
            ("" if value is None else str(value).lower() if isinstance(value, bool) else str(value))
        rows.append({"field": c["field"], "op": c["op"], "value": shown})
    return match, rows


def _segment_problems(exc: campaigns.FieldsInvalid, places: list[int]) -> tuple[dict[str, str], list[str]]:
    """The rules' paths as the form's inputs (``all[2].value`` → ``cond<row>_value``) and their messages."""
    inputs: dict[str, str] = {}
    messages = []
    for path, message in exc.problems.items():
        found = re.fullmatch(r"(?:rules\.)?(?:all|any)\[(\d+)\]\.(field|op|value)", path)
        if found and int(found.group(1)) < len(places):
            row = places[int(found.group(1))]
            name = f"cond{row}_{found.group(2)}"
            label = f"Condición {row + 1} · {dict(field='campo', op='operador', value='valor')[found.group(2)]}"
        else:
            name = path.removeprefix("rules.")
            label = TOP_LABELS.get(name, name)
        inputs[name] = message
        messages.append(f"{label}: {message}")
    return inputs, messages


# --- form ↔ definition --------------------------------------------------------------------------------

MAX_STEP_ROWS = campaigns.MAX_STEPS


def _list(raw: str, separator: str = ",") -> list[str]:
    return [v.strip() for v in raw.split(separator) if v.strip()]


def definition_from_form(form: dict[str, list[str]]) -> tuple[dict[str, Any], list[int], dict[str, str]]:
    """(definition, the form row of each step, the values as typed). Blank inputs are left out (the model's
    defaults apply); numbers go as typed, for the model to read or refuse by name. A row without an action is
    no step."""
    values = {k: (v[0] if v else "") for k, v in form.items() if k != csrf.FIELD}
    trigger: dict[str, Any] = {"type": _one(form, "trigger_type")}
    for key in ("score_min", "stage", "days", "segment"):
        if _one(form, f"trigger_{key}"):
            trigger[key] = _one(form, f"trigger_{key}")
    steps: list[dict[str, Any]] = []
    places: list[int] = []
    for i in range(MAX_STEP_ROWS):
        def get(name: str, row: int = i) -> str:
            return _one(form, f"step{row}_{name}")

        if not get("action"):
            continue
        step: dict[str, Any] = {"action": get("action")}
        for key in ("channel", "provider", "delay_hours", "stage"):
            if get(key):
                step[key] = get(key)
        template = (form.get(f"step{i}_template") or [""])[0].replace("\r\n", "\n").strip()
        if template:
            step["template"] = template
        if get("wa_name"):
            step["whatsapp_template"] = {"name": get("wa_name"), "language": get("wa_language") or "es",
                                         "parameters": _list(get("wa_parameters").replace("\r\n", "\n"), "\n")}
        conditions: dict[str, Any] = {}
        for key in ("score_min", "score_max"):
            if get(key):
                conditions[key] = get(key)
        for key in ("required_fields", "excluded_tags"):
            if get(key):
                conditions[key] = _list(get(key))
        if conditions:
            step["conditions"] = conditions
        steps.append(step)
        places.append(i)
    return {"trigger": trigger, "steps": steps}, places, values


def definition_to_values(definition: dict[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in definition.get("trigger", {}).items():
        if value is not None:
            values[f"trigger_{key}"] = str(value)
    for i, step in enumerate(definition.get("steps", [])):
        for key in ("action", "channel", "provider", "stage", "template"):
            if step.get(key) is not None:
                values[f"step{i}_{key}"] = str(step[key])
        delay = step.get("delay_hours", 0)
        values[f"step{i}_delay_hours"] = str(int(delay) if float(delay).is_integer() else delay)
        wa = step.get("whatsapp_template")
        if wa:
            values.update({f"step{i}_wa_name": wa["name"], f"step{i}_wa_language": wa.get("language", "es"),
                           f"step{i}_wa_parameters": "\n".join(wa.get("parameters", []))})
        conditions = step.get("conditions") or {}
        for key in ("score_min", "score_max"):
            if conditions.get(key) is not None:
                values[f"step{i}_{key}"] = str(conditions[key])
        for key in ("required_fields", "excluded_tags"):
            if conditions.get(key):
                values[f"step{i}_{key}"] = ", ".join(conditions[key])
    return values


def _campaign_problems(exc: AdminError, places: list[int]) -> tuple[dict[str, str], list[str]]:
    problems = exc.problems if isinstance(exc, campaigns.FieldsInvalid) else {exc.field or "": str(exc)}
    inputs: dict[str, str] = {}
    messages = []
    for path, message in problems.items():
        message = message.removeprefix(f"{path}: ")
        found = re.fullmatch(r"steps\[(\d+)\]\.?(.*)", path)
        if found and int(found.group(1)) < len(places):
            row = places[int(found.group(1))]
            tail = STEP_INPUTS.get(found.group(2), found.group(2).split(".")[-1] if found.group(2) else "")
            name, label = f"step{row}_{tail}" if tail else f"step{row}_action", \
                f"Paso {row + 1} · {STEP_LABELS.get(tail, tail)}"
        else:
            name = path.replace(".", "_")
            label = TOP_LABELS.get(name, name)
        inputs[name] = message
        messages.append(f"{label}: {message}" if label else message)
    return inputs, messages


# --- the list ------------------------------------------------------------------------------------------

@router.get("/campaigns")
async def campaigns_page(owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id) -> Response:
    if session is None:
        return _to_login()
    who = session.principal

    def read(cur: psycopg2.extensions.cursor) -> dict[str, Any]:
        return {"broker": campaigns.broker(cur, who, broker_id),
                "segments": campaigns.list_segments(cur, who, broker_id),
                "campaigns": campaigns.list_campaigns(cur, who, broker_id)}

    try:
        found = await run_in_threadpool(_owner_run, owner, read)
    except AdminError as exc:
        return _error(who, exc)
    return page("admin_campaigns.html", who=who, statuses=STATUS_LABELS, **found)


# --- segments ------------------------------------------------------------------------------------------

async def _segment_page(owner: OwnerConnections, tokens: Tokens, session: Session, broker_id: int,
                        segment_id: int | None, status_code: int = 200, **context: Any) -> Response:
    who = session.principal

    def read(cur: psycopg2.extensions.cursor) -> dict[str, Any]:
        found = {"broker": campaigns.broker(cur, who, broker_id),
                 "segment": campaigns.segment(cur, who, broker_id, segment_id) if segment_id else None,
                 "manual": [c for c in campaigns.list_campaigns(cur, who, broker_id)
                            if c["definition"]["trigger"]["type"] == "manual" and c["status"] != "completed"]}
        return found

    try:
        found = await run_in_threadpool(_owner_run, owner, read)
    except AdminError as exc:
        return _error(who, exc)
    segment = found["segment"]
    if "rows" not in context:
        match, rows = rules_to_rows(segment["rules"]) if segment else ("all", [])
        context |= {"match": match, "rows": rows, "segment_name": segment["name"] if segment else ""}
    rows = (context["rows"] + [{}] * MAX_ROWS)[:max(len(context["rows"]) + 2, 3)]
    editable = segment is None or flat(segment["rules"])
    return page("admin_segment.html", status_code, who=who, csrf=csrf.token_for(tokens.secret, session.token),
                editable=editable,
                fields=PROFILE_FIELDS, kinds_ops={k: sorted(v) for k, v in OPERATORS.items()}, ops=OPS,
                **{"bad": {}, "errors": [], "saved": False, "applied": None, **context, "rows": rows}, **found)


@router.get("/segments/new")
async def new_segment_page(owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id) -> Response:
    if session is None:
        return _to_login()
    return await _segment_page(owner, tokens, session, broker_id, None)


@router.get("/segments/{segment_id}")
async def segment_page(owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id, segment_id: Id,
                       saved: Annotated[str | None, Query(max_length=5)] = None) -> Response:
    if session is None:
        return _to_login()
    return await _segment_page(owner, tokens, session, broker_id, segment_id, saved=saved == "1")


async def _save_segment(request: Request, owner: OwnerConnections, tokens: Tokens, session: Session, broker_id: int,
                        segment_id: int | None) -> Response:
    who = session.principal
    form = await _form(request, tokens, session)
    if form is None:
        return page("error.html", status.HTTP_403_FORBIDDEN, who=who, message=EXPIRED_FORM)
    rules, places, typed = rules_from_form(form)
    name = _one(form, "name")
    try:
        saved = await run_in_threadpool(_owner_run, owner, lambda cur: campaigns.save_segment(
            cur, who, broker_id, segment_id, name, rules))
    except campaigns.FieldsInvalid as exc:
        bad, errors = _segment_problems(exc, places)
        return await _segment_page(owner, tokens, session, broker_id, segment_id, exc.status, bad=bad, errors=errors,
                                   rows=typed, match=_one(form, "match"), segment_name=name)
    except AdminError as exc:
        if exc.status in (status.HTTP_403_FORBIDDEN, status.HTTP_404_NOT_FOUND):
            return _error(who, exc)
        return await _segment_page(owner, tokens, session, broker_id, segment_id, exc.status,
                                   bad={exc.field or "name": str(exc)},
                                   errors=[f"{TOP_LABELS.get(exc.field or '', 'Segmento')}: {exc}"], rows=typed,
                                   match=_one(form, "match"), segment_name=name)
    return RedirectResponse(f"/dashboard/brokers/{broker_id}/admin/segments/{saved['segment_id']}?saved=1",
                            status_code=status.HTTP_303_SEE_OTHER)


@router.post("/segments/new")
async def create_segment_form(request: Request, owner: Owner, tokens: Tokens, session: SessionDep,
                              broker_id: Id) -> Response:
    if session is None:
        return _to_login()
    return await _save_segment(request, owner, tokens, session, broker_id, None)


@router.post("/segments/count")
async def count_form(request: Request, owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id) -> Response:
    """The live count: the form as it stands, counted with the batch's ``members`` (JSON for the page's script)."""
    if session is None:
        return JSONResponse({"error": "inicia sesión de nuevo"}, status_code=status.HTTP_401_UNAUTHORIZED)
    form = await _form(request, tokens, session)
    if form is None:
        return JSONResponse({"error": EXPIRED_FORM}, status_code=status.HTTP_403_FORBIDDEN)
    rules, places, _typed = rules_from_form(form)
    who = session.principal
    try:
        found = await run_in_threadpool(_owner_run, owner, lambda cur: campaigns.count(cur, who, broker_id, rules))
    except campaigns.FieldsInvalid as exc:
        bad, errors = _segment_problems(exc, places)
        return JSONResponse({"error": "; ".join(errors), "fields": bad}, status_code=exc.status)
    except AdminError as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    return JSONResponse(found)


@router.post("/segments/{segment_id}")
async def segment_form(request: Request, owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id,
                       segment_id: Id) -> Response:
    if session is None:
        return _to_login()
    return await _save_segment(request, owner, tokens, session, broker_id, segment_id)


# --- applying a manual campaign ------------------------------------------------------------------------

def _ids(values: list[str]) -> list[int] | None:
    ids = [int(v) for v in values if v.isdigit() and 0 < len(v) < 19]
    return ids if len(ids) == len(values) else None


async def _log_page(owner: OwnerConnections, session: Session, broker_id: int, campaign_id: int,
                    status_filter: str | None, offset: int, status_code: int = 200, **context: Any) -> Response:
    who = session.principal

    def read(cur: psycopg2.extensions.cursor) -> dict[str, Any]:
        return {"broker": campaigns.broker(cur, who, broker_id),
                **campaigns.log(cur, who, broker_id, campaign_id, status_filter, offset, 50)}

    try:
        found = await run_in_threadpool(_owner_run, owner, read)
    except AdminError as exc:
        return _error(who, exc)
    return page("admin_campaign_log.html", status_code, who=who, selected=status_filter, labels=LOG_LABELS,
                statuses=STATUS_LABELS, offset=offset, **{"applied": None, **context}, **found)


async def _apply(owner: OwnerConnections, session: Session, broker_id: int, campaign_id: int | None,
                 lead_ids: Callable[[psycopg2.extensions.cursor], list[int]]) -> Response:
    who = session.principal
    if campaign_id is None:
        return page("error.html", status.HTTP_422_UNPROCESSABLE_CONTENT, who=who,
                    message="Campaña: elige una campaña manual activa.")

    def apply(cur: psycopg2.extensions.cursor) -> Any:
        return campaigns.apply(cur, who, broker_id, campaign_id, lead_ids(cur))

    try:
        applied = await run_in_threadpool(_owner_run, owner, apply)
    except AdminError as exc:
        label = TOP_LABELS.get(exc.field or "", "")
        return page("error.html", exc.status, who=who,
                    message=f"{label}: {str(exc).removeprefix(f'{exc.field}: ')}" if label else str(exc))
    return await _log_page(owner, session, broker_id, campaign_id, None, 0, applied=applied)


@router.post("/campaigns/apply")
async def apply_form(request: Request, owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id) -> Response:
    """From the inbox: the chosen leads (``lead_id``, one per checkbox) and the campaign."""
    if session is None:
        return _to_login()
    form = await _form(request, tokens, session)
    if form is None:
        return page("error.html", status.HTTP_403_FORBIDDEN, who=session.principal, message=EXPIRED_FORM)
    ids = _ids(form.get("lead_id", []))
    campaign = _ids([_one(form, "campaign_id")])
    if ids is None or not ids:
        return page("error.html", status.HTTP_422_UNPROCESSABLE_CONTENT, who=session.principal,
                    message="Leads: marca al menos un lead de la bandeja.")
    return await _apply(owner, session, broker_id, campaign[0] if campaign else None, lambda cur: ids)


@router.post("/segments/{segment_id}/apply")
async def apply_segment_form(request: Request, owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id,
                             segment_id: Id) -> Response:
    """To the segment's members now (counted as the page shows them)."""
    if session is None:
        return _to_login()
    form = await _form(request, tokens, session)
    if form is None:
        return page("error.html", status.HTTP_403_FORBIDDEN, who=session.principal, message=EXPIRED_FORM)
    campaign = _ids([_one(form, "campaign_id")])
    who = session.principal

    def members(cur: psycopg2.extensions.cursor) -> list[int]:
        found = campaigns.segment(cur, who, broker_id, segment_id)
        return campaigns.member_ids(cur, broker_id, found["rules"])

    return await _apply(owner, session, broker_id, campaign[0] if campaign else None, members)


# --- campaigns -----------------------------------------------------------------------------------------

async def _campaign_page(owner: OwnerConnections, tokens: Tokens, session: Session, broker_id: int,
                         campaign_id: int | None, status_code: int = 200, **context: Any) -> Response:
    who = session.principal

    def read(cur: psycopg2.extensions.cursor) -> dict[str, Any]:
        return {"broker": campaigns.broker(cur, who, broker_id),
                "campaign": campaigns.campaign(cur, who, broker_id, campaign_id) if campaign_id else None,
                "segments": [s["name"] for s in campaigns.list_segments(cur, who, broker_id)],
                "stages": campaigns.stage_codes(cur, broker_id)}

    try:
        found = await run_in_threadpool(_owner_run, owner, read)
    except AdminError as exc:
        return _error(who, exc)
    campaign = found["campaign"]
    if "values" not in context:
        values = definition_to_values(campaign["definition"]) if campaign else {"trigger_type": "manual"}
        context["values"] = {**values, "name": campaign["name"] if campaign else ""}
    steps = max((int(k[4:].split("_")[0]) + 1 for k in context["values"] if re.match(r"step\d+_", k)), default=0)
    actions = {a: label for a, label in ACTIONS.items()
               if campaign and campaign["status"] in TRANSITIONS[a][0]}
    return page("admin_campaign.html", status_code, who=who, csrf=csrf.token_for(tokens.secret, session.token),
                step_rows=list(range(min(steps + 1, MAX_STEP_ROWS))), actions=actions, statuses=STATUS_LABELS,
                variables=campaigns.VARIABLES, fields=sorted(PROFILE_FIELDS),
                **{"bad": {}, "errors": [], "saved": None, "preview": None, **context}, **found)


@router.get("/campaigns/new")
async def new_campaign_page(owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id) -> Response:
    if session is None:
        return _to_login()
    return await _campaign_page(owner, tokens, session, broker_id, None)


@router.get("/campaigns/{campaign_id}")
async def campaign_page(owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id, campaign_id: Id,
                        saved: Annotated[str | None, Query(max_length=20)] = None) -> Response:
    if session is None:
        return _to_login()
    return await _campaign_page(owner, tokens, session, broker_id, campaign_id, saved=saved)


async def _save_campaign(request: Request, owner: OwnerConnections, tokens: Tokens, session: Session, broker_id: int,
                         campaign_id: int | None) -> Response:
    who = session.principal
    form = await _form(request, tokens, session)
    if form is None:
        return page("error.html", status.HTTP_403_FORBIDDEN, who=who, message=EXPIRED_FORM)
    definition, places, values = definition_from_form(form)
    name = _one(form, "name")
    if _one(form, "do") == "preview":
        lead = _ids([_one(form, "preview_lead_id")])

        def show(cur: psycopg2.extensions.cursor) -> dict[str, Any]:
            if not lead:
                raise Invalid("lead_id: write the number of one of the broker's leads", "lead_id")
            return campaigns.preview(cur, who, broker_id, definition, lead[0])

        try:
            shown = await run_in_threadpool(_owner_run, owner, show)
        except AdminError as exc:
            if exc.status == status.HTTP_403_FORBIDDEN:
                return _error(who, exc)
            bad, errors = _campaign_problems(exc, places)
            return await _campaign_page(owner, tokens, session, broker_id, campaign_id, exc.status, values=values,
                                        bad=bad, errors=errors)
        return await _campaign_page(owner, tokens, session, broker_id, campaign_id, values=values, preview=shown)
    try:
        saved = await run_in_threadpool(_owner_run, owner, lambda cur: campaigns.save_campaign(
            cur, who, broker_id, campaign_id, name, definition))
    except AdminError as exc:
        if exc.status in (status.HTTP_403_FORBIDDEN, status.HTTP_404_NOT_FOUND):
            return _error(who, exc)
        bad, errors = _campaign_problems(exc, places)
        return await _campaign_page(owner, tokens, session, broker_id, campaign_id, exc.status, values=values,
                                    bad=bad, errors=errors)
    return RedirectResponse(f"/dashboard/brokers/{broker_id}/admin/campaigns/{saved['campaign_id']}?saved=saved",
                            status_code=status.HTTP_303_SEE_OTHER)


@router.post("/campaigns/new")
async def create_campaign_form(request: Request, owner: Owner, tokens: Tokens, session: SessionDep,
                               broker_id: Id) -> Response:
    if session is None:
        return _to_login()
    return await _save_campaign(request, owner, tokens, session, broker_id, None)


@router.post("/campaigns/{campaign_id}")
async def campaign_form(request: Request, owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id,
                        campaign_id: Id) -> Response:
    if session is None:
        return _to_login()
    return await _save_campaign(request, owner, tokens, session, broker_id, campaign_id)


@router.post("/campaigns/{campaign_id}/status")
async def status_form(request: Request, owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id,
                      campaign_id: Id) -> Response:
    if session is None:
        return _to_login()
    who = session.principal
    form = await _form(request, tokens, session)
    if form is None:
        return page("error.html", status.HTTP_403_FORBIDDEN, who=who, message=EXPIRED_FORM)
    action = _one(form, "action")
    if action not in ACTIONS:
        return page("error.html", status.HTTP_422_UNPROCESSABLE_CONTENT, who=who,
                    message=f"Estado: usa {', '.join(ACTIONS.values())}")
    try:
        await run_in_threadpool(_owner_run, owner, lambda cur: campaigns.change_status(
            cur, who, broker_id, campaign_id, action))
    except AdminError as exc:
        if exc.status in (status.HTTP_403_FORBIDDEN, status.HTTP_404_NOT_FOUND):
            return _error(who, exc)
        bad, errors = _campaign_problems(exc, [])
        return await _campaign_page(owner, tokens, session, broker_id, campaign_id, exc.status, bad=bad,
                                    errors=errors)
    return RedirectResponse(f"/dashboard/brokers/{broker_id}/admin/campaigns/{campaign_id}?saved={action}",
                            status_code=status.HTTP_303_SEE_OTHER)


@router.get("/campaigns/{campaign_id}/log")
async def log_page(owner: Owner, session: SessionDep, broker_id: Id, campaign_id: Id,
                   status_: Annotated[str | None, Query(alias="status", max_length=20)] = None,
                   offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> Response:
    if session is None:
        return _to_login()
    return await _log_page(owner, session, broker_id, campaign_id, status_ or None, offset)
