"""The settings page under /dashboard: each section of a broker's settings as a form, the scoring preview, and
each section's versions with a revert button (its ADMINs and a SUPERADMIN).

The same store as the JSON API (``reports_api.admin.settings``, as the database owner). A form refused comes back
with the values typed and each message next to the field it is about (422; 409 when another version was saved
meanwhile), never a 500. Numbers are typed in number fields; lists and tables (scoring steps, the pipeline's
stages) as JSON in a text area, one per field, so a message about "stages[2].code" lands under the stages.
Left out of the OpenAPI document: the JSON API is ``reports_api.routes.admin_settings``.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

import dataclasses
import json
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg2.extensions
from fastapi import APIRouter, Query, Request, status
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from leadflow.agent.config import AgentConfig
from leadflow.qualification.scoring import ScoringConfig
from leadflow.settings_schema import SECTIONS
from reports_api.admin import people, settings
from reports_api.admin.access import AdminError
from reports_api.deps import Id, Tokens
from reports_api.routes.admin import Owner
from reports_api.routes.admin_forms import EXPIRED_FORM
from reports_api.routes.admin_forms import owner_run as _owner_run
from reports_api.routes.admin_forms import to_login as _to_login
from reports_api.routes.workspace_pages import Session, SessionDep
from reports_api.routes.workspace_settings import form_lists
from reports_api.sessions import OwnerConnections
from reports_api.workspace import csrf
from reports_api.workspace.render import page

router = APIRouter(prefix="/dashboard/brokers/{broker_id}/admin/settings", tags=["admin pages"],
                   include_in_schema=False)
TITLES = {"scoring": "Puntaje y temperatura", "pipeline": "Etapas del pipeline",
          "llm": "Calificación con LLM", "campaigns": "Contacto: horario, tope y palabras de baja",
          "agent": "Bot: persona y datos"}


@dataclass(frozen=True)
class Field:
    name: str  # the path in the section's JSON ("hot", "facts.commission")
    label: str
    kind: str  # int, float, text, textarea, json, lines, bool, or choice
    choices: tuple[str, ...] = ()


def _scoring_fields() -> tuple[Field, ...]:
    labels = {"hot": "Umbral caliente (hot)", "warm": "Umbral tibio (warm)"}
    fields = []
    for f in dataclasses.fields(ScoringConfig):
        kind = "int" if f.type == "int" else "float" if f.type == "float" else "json"
        fields.append(Field(f.name, labels.get(f.name, f.name), kind))
    # The thresholds first: what an admin changes most.
    return tuple(sorted(fields, key=lambda f: f.name not in labels))


FIELDS: dict[str, tuple[Field, ...]] = {
    "scoring": _scoring_fields(),
    "pipeline": (Field("stages", "Etapas (JSON: code, name, requires, stall_days)", "json"),
                 Field("lost_when", "Perdido cuando (una condición por línea)", "lines")),
    "llm": (Field("provider", "Proveedor", "choice", ("rules", "anthropic", "openai", "gemini")),
            Field("model", "Modelo (vacío: el del proveedor)", "text"),
            Field("prompt_additions", "Instrucciones adicionales", "textarea")),
    "campaigns": (Field("quiet_start", "Sin contacto desde la hora", "int"),
                  Field("quiet_end", "hasta la hora", "int"),
                  Field("cap_messages", "Máximo de mensajes por lead", "int"),
                  Field("cap_days", "en cuántos días", "float"),
                  Field("opt_out_words", "Palabras de baja propias (una por línea; se suman a las de siempre)",
                        "lines")),
    "agent": (Field("enabled", "Bot activo", "bool"),
              Field("policy", "Política", "choice", ("offline", "llm")),
              Field("persona_name", "Nombre del bot", "text"),
              Field("tone", "Tono", "choice", ("cercano", "formal")),
              Field("language", "Idioma", "choice", ("es-CL", "es-MX", "es-AR", "es-ES", "en-US")),
              *(Field(f"facts.{name}", f"Dato: {name}", "textarea") for name in ("commission", "areas",
                                                                                  "office_hours", "how_it_works")),
              Field("handoff_channel", "Aviso de derivación (telegram:<chat> o URL)", "text"),
              Field("handoff_quiet_minutes", "Minutos sin respuesta tras derivar", "int"),
              Field("visit_proposal", "Propuesta de visita", "textarea"),
              Field("visit_slots", "Horarios de visita (uno por línea)", "lines"),
              Field("max_replies_per_hour", "Máximo de respuestas por hora", "int")),
}
# The visiting rules have a page of their own (weekday windows, each person's hours): routes/appointments_pages.py.
OWN_PAGE: frozenset[str] = frozenset({"appointments"})
assert set(FIELDS) == {str(s) for s in SECTIONS} - OWN_PAGE
assert {f.name for f in FIELDS["agent"] if "." not in f.name} | {"facts"} == set(AgentConfig.model_fields)


def _get(value: dict[str, Any], path: str) -> Any:
    item: Any = value
    for part in path.split("."):
        item = item.get(part) if isinstance(item, dict) else None
    return item


def shown(section: str, value: dict[str, Any]) -> dict[str, str]:
    """A section's value as its form's fields show it."""
    out = {}
    for f in FIELDS[section]:
        item = _get(value, f.name)
        if f.kind == "json":
            out[f.name] = json.dumps(item, ensure_ascii=False, indent=1 if f.name == "stages" else None)
        elif f.kind == "lines":
            out[f.name] = "\n".join(str(x) for x in item or [])
        elif f.kind == "bool":
            out[f.name] = "true" if item else ""
        else:
            out[f.name] = "" if item is None else str(item)
    return out


def parsed(section: str, form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The form as the section's JSON, and the fields that could not even be read (not a number, not JSON)."""
    value: dict[str, Any] = {}
    bad: dict[str, str] = {}
    for f in FIELDS[section]:
        raw = form.get(f.name, "")
        item: Any
        try:
            if f.kind == "int":
                item = int(raw.strip())
            elif f.kind == "float":
                item = float(raw.strip().replace(",", "."))
            elif f.kind == "json":
                item = json.loads(raw)
            elif f.kind == "lines":
                item = [line.strip() for line in raw.splitlines() if line.strip()]
            elif f.kind == "bool":
                item = raw == "true"
            else:
                item = raw.strip() or None
        except ValueError:
            bad[f.name] = "no es un número" if f.kind in ("int", "float") else "no es JSON válido"
            continue
        if item is None and section == "llm" and f.name == "prompt_additions":
            item = ""
        if item is None:
            continue  # left empty: the default
        *parents, last = f.name.split(".")
        target = value
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = item
    return value, bad


def _field_of(section: str, problem_field: str) -> str | None:
    """The form field a problem is about: "stages[2].code" is the stages area's, "timeline[0][1]" timeline's."""
    names = [f.name for f in FIELDS[section]]
    if problem_field in names:
        return problem_field
    for name in sorted(names, key=len, reverse=True):
        if problem_field.startswith(name) and problem_field[len(name)] in ".[":
            return name
    return None




async def _page(owner: OwnerConnections, tokens: Tokens, session: Session, broker_id: int, status_code: int = 200,
                *, values: dict[str, dict[str, str]] | None = None, errors: dict[str, dict[str, str]] | None = None,
                general: dict[str, list[str]] | None = None, preview: dict[str, Any] | None = None,
                saved: str | None = None) -> Response:
    who = session.principal

    def read(cur: psycopg2.extensions.cursor) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                       dict[str, list[dict[str, Any]]]]:
        broker = people.broker(cur, who, broker_id)
        return (broker, settings.read_all(cur, who, broker_id),
                {s: settings.versions(cur, who, broker_id, s) for s in SECTIONS if s not in OWN_PAGE})

    try:
        broker, states, history = await run_in_threadpool(_owner_run, owner, read)
    except AdminError as exc:
        return page("error.html", exc.status, who=who, message=str(exc))
    typed = values or {}
    sections = [{**state, "title": TITLES[state["section"]], "fields": FIELDS[state["section"]],
                 "values": typed.get(state["section"]) or shown(state["section"], state["value"]),
                 "errors": (errors or {}).get(state["section"], {}),
                 "general": (general or {}).get(state["section"], []),
                 "versions": history[state["section"]]} for state in states if state["section"] not in OWN_PAGE]
    return page("admin_settings.html", status_code, who=who, broker=broker, sections=sections, preview=preview,
                saved=saved if saved in SECTIONS else None, csrf=csrf.token_for(tokens.secret, session.token))


@router.get("")
async def settings_page(owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id,
                        saved: Annotated[str | None, Query(max_length=20)] = None) -> Response:
    if session is None:
        return _to_login()
    return await _page(owner, tokens, session, broker_id, saved=saved)


def _based_on(form: dict[str, str]) -> int:
    raw = form.get("based_on", "")
    return int(raw) if raw.isdigit() and len(raw) < 10 else 0


@router.post("/{section}")
async def section_form(request: Request, owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id,
                       section: str) -> Response:
    if session is None:
        return _to_login()
    form = {key: values[0] for key, values in (await form_lists(request)).items()}
    if not csrf.valid(tokens.secret, session.token, form.get(csrf.FIELD)):
        return page("error.html", status.HTTP_403_FORBIDDEN, who=session.principal, message=EXPIRED_FORM)
    if section not in SECTIONS or section in OWN_PAGE:
        return page("error.html", status.HTTP_404_NOT_FOUND, who=session.principal, message="No existe esa sección.")
    who = session.principal
    typed = {f.name: form.get(f.name, "") for f in FIELDS[section]}
    value, unreadable = parsed(section, form)
    if unreadable:
        return await _page(owner, tokens, session, broker_id, status.HTTP_422_UNPROCESSABLE_CONTENT,
                           values={section: typed}, errors={section: unreadable})
    previewing = section == "scoring" and form.get("action") == "preview"

    def act(cur: psycopg2.extensions.cursor) -> dict[str, Any]:
        if previewing:
            return settings.preview(cur, who, broker_id, value)
        return settings.save(cur, who, broker_id, section, value, _based_on(form))

    try:
        answer = await run_in_threadpool(_owner_run, owner, act)
    except settings.SettingsInvalid as exc:
        by_field: dict[str, str] = {}
        rest: list[str] = []
        for problem in exc.problems:
            name = _field_of(section, problem.field)
            message = f"{problem.field}: {problem.message}"
            if name is None:
                rest.append(message)
            else:
                by_field[name] = f"{by_field[name]}; {message}" if name in by_field else message
        return await _page(owner, tokens, session, broker_id, exc.status, values={section: typed},
                           errors={section: by_field}, general={section: rest})
    except AdminError as exc:
        return await _page(owner, tokens, session, broker_id, exc.status, values={section: typed},
                           general={section: [str(exc)]})
    if previewing:
        return await _page(owner, tokens, session, broker_id, values={section: typed}, preview=answer)
    return RedirectResponse(f"/dashboard/brokers/{broker_id}/admin/settings?saved={section}#section-{section}",
                            status_code=status.HTTP_303_SEE_OTHER)


@router.post("/{section}/revert")
async def revert_form(request: Request, owner: Owner, tokens: Tokens, session: SessionDep, broker_id: Id,
                      section: str) -> Response:
    if session is None:
        return _to_login()
    form = {key: values[0] for key, values in (await form_lists(request)).items()}
    if not csrf.valid(tokens.secret, session.token, form.get(csrf.FIELD)):
        return page("error.html", status.HTTP_403_FORBIDDEN, who=session.principal, message=EXPIRED_FORM)
    if section not in SECTIONS:
        return page("error.html", status.HTTP_404_NOT_FOUND, who=session.principal, message="No existe esa sección.")
    who = session.principal
    version = _based_on({"based_on": form.get("version", "")})
    try:
        await run_in_threadpool(_owner_run, owner, lambda cur: settings.revert(cur, who, broker_id, section, version,
                                                                               _based_on(form) or None))
    except settings.SettingsInvalid as exc:
        return await _page(owner, tokens, session, broker_id, exc.status, general={section: [
            f"No se pudo volver a la versión {version}: " + "; ".join(f"{p.field}: {p.message}"
                                                                      for p in exc.problems)]})
    except AdminError as exc:
        return await _page(owner, tokens, session, broker_id, exc.status, general={section: [str(exc)]})
    return RedirectResponse(f"/dashboard/brokers/{broker_id}/admin/settings?saved={section}#section-{section}",
                            status_code=status.HTTP_303_SEE_OTHER)
