"""The workspace's HTML: pages, and the conversation items the live stream sends as fragments.

Same template folder and autoescaping as the dashboard (``reports_api.dashboard``): every name, message,
note and tag is escaped by Jinja; the pages' few lines of JavaScript only insert these fragments.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

_templates = Environment(loader=FileSystemLoader(Path(__file__).parent.parent / "templates"),
                         autoescape=select_autoescape(["html"]))

AUTHORS = {"lead": "Lead", "bot": "Bot", "person": "Persona", "assistant": "Asistente de voz", "campaign": "Campaña"}
TEMPERATURES = {"hot": "caliente", "warm": "tibio", "cold": "frío"}
CHANNELS = {"whatsapp": "WhatsApp", "telegram": "Telegram", "vapi": "Llamada (VAPI)", "bland": "Llamada (Bland)",
            "form": "Formulario", "import": "Importación CSV", "manual": "Ingreso manual"}


def local_time(value: datetime | None, timezone: str = "UTC") -> str:
    """``value`` in the broker's time zone, to the minute."""
    if value is None:
        return "–"
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")


_templates.filters["local"] = local_time
_templates.globals.update(AUTHORS=AUTHORS, TEMPERATURES=TEMPERATURES, CHANNELS=CHANNELS)


def environment() -> Environment:
    """The one template environment, with the filters and names every page may use (the dashboard's too)."""
    return _templates


def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    # no-store: a page holds one person's leads and a CSRF token; no cache, shared or not, keeps it.
    return HTMLResponse(_templates.get_template(name).render(**context), status_code=status_code,
                        headers={"Cache-Control": "no-store"})


def item_html(item: dict[str, Any], timezone: str) -> str:
    """One conversation item as the lead page shows it (the live stream sends this)."""
    macros = _templates.get_template("ws_macros.html").make_module({})
    return str(macros.item(item, timezone)).strip()  # type: ignore[attr-defined]
