"""Message templates: ``{{name}}``, ``{{budget}}``, ``{{location}}`` … filled from the lead's profile."""

from __future__ import annotations

import re
from typing import Any

_VARIABLE = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
VARIABLES = ("name", "first_name", "budget", "location", "locations", "operation", "property_type", "bedrooms",
             "broker", "stage", "visit_time")
_FALLBACKS = {"name": "", "first_name": "", "location": "la zona que buscas", "locations": "la zona que buscas",
              "budget": "tu presupuesto", "property_type": "propiedad", "bedrooms": "", "operation": "",
              "broker": "", "stage": "", "visit_time": "pronto"}


def _money(value: float | None, currency: str | None) -> str | None:
    if value is None:
        return None
    text = f"{value:,.0f}".replace(",", ".")  # Spanish grouping: 5.200 UF
    return f"{text} {currency}" if currency else text


def variables(profile: dict[str, Any]) -> dict[str, str]:
    """The values a template can use, from one lead profile (missing facts get a neutral phrase)."""
    name = (profile.get("name") or "").strip()
    places = [p.title() for p in profile.get("locations") or []]
    values = {
        "name": name, "first_name": name.split()[0] if name else "",
        "budget": _money(profile.get("budget_max") or profile.get("budget_min"), profile.get("budget_currency")),
        "location": places[0] if places else None, "locations": ", ".join(places) or None,
        "operation": profile.get("operation"), "property_type": profile.get("property_type"),
        "bedrooms": str(profile["bedrooms_min"]) if profile.get("bedrooms_min") is not None else None,
        "broker": profile.get("broker_name"), "stage": profile.get("stage"), "visit_time": profile.get("visit_time"),
    }
    return {key: value if value else _FALLBACKS[key] for key, value in values.items()}


def render(template: str, profile: dict[str, Any]) -> str:
    """The template with its variables filled; an unknown variable is left as written (and listed by
    ``unknown_variables`` when a campaign is saved), never an error at send time."""
    values = variables(profile)
    text = _VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), template)
    return re.sub(r"\s+([,.!?])", r"\1", re.sub(r"[ \t]{2,}", " ", text)).strip()


def unknown_variables(template: str) -> list[str]:
    return [name for name in _VARIABLE.findall(template) if name not in VARIABLES]
