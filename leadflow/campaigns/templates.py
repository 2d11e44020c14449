"""Message templates: ``{{name}}``, ``{{budget}}``, ``{{location}}`` … filled from the lead's profile.

Rendered as polars expressions over the profile columns, one template at a time for all its leads;
a fact the lead has not given becomes a neutral phrase ("la zona que buscas"), never an empty hole.
"""

from __future__ import annotations

import re

import polars as pl

from leadflow.qualification.summary import PHRASES, money

_VARIABLE = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_WORDS = {"operation": PHRASES["es"]["operation"], "type": PHRASES["es"]["type"]}
_FALLBACKS = {"name": "", "first_name": "", "location": "la zona que buscas", "locations": "la zona que buscas",
              "budget": "tu presupuesto", "property_type": "propiedad", "bedrooms": "", "operation": "",
              "broker": "", "stage": "", "visit_time": "pronto", "visit_options": ""}
# A visit step's slots are chosen when its send is written (``store``: one offer per lead, from the free slots
# then): targeting leaves these marks, the store puts the offer's words in their place.
VISIT_TIME_MARK = "\u27e6visit_time\u27e7"
VISIT_OPTIONS_MARK = "\u27e6visit_options\u27e7"
VARIABLES = tuple(sorted(_FALLBACKS))  # what a template may name, for the editors' hints and refusals


def template_columns() -> dict[str, pl.Expr]:
    """The template variables as columns (``_v_<name>``) of a frame of lead profiles."""
    col = pl.col
    name = col("name").fill_null("").str.strip_chars()
    places = col("locations").list.eval(pl.element().str.to_titlecase())
    amount = pl.coalesce(col("budget_max"), col("budget_min")).round(0)
    values = {
        "name": name, "first_name": name.str.split(" ").list.first(),
        "budget": pl.when(amount.is_not_null()).then(money(amount, col("budget_currency"), spanish=True)),
        "location": places.list.first(), "locations": places.list.join(", "),
        # Leads read Spanish: the schema's codes become words ("buy" → "comprar").
        "operation": col("operation").replace_strict(_WORDS["operation"], default=None, return_dtype=pl.String),
        "property_type": col("property_type").replace_strict(_WORDS["type"], default=None, return_dtype=pl.String),
        "bedrooms": col("bedrooms_min").cast(pl.String), "broker": col("broker_name"), "stage": col("stage"),
        "visit_time": col("visit_time"), "visit_options": col("visit_options"),
    }
    return {f"_v_{key}": pl.when(value.is_null() | (value == "")).then(pl.lit(_FALLBACKS[key])).otherwise(value)
            for key, value in values.items()}


def render_expr(template: str) -> pl.Expr:
    """The template filled from the ``_v_`` columns; an unknown variable stays as written (and is
    refused when a campaign is saved, see ``unknown_variables``), never an error at send time."""
    parts: list[pl.Expr] = []
    position = 0
    for m in _VARIABLE.finditer(template):
        parts.append(pl.lit(template[position:m.start()]))
        name = m.group(1)
        parts.append(pl.col(f"_v_{name}") if name in _FALLBACKS else pl.lit(m.group(0)))
        position = m.end()
    parts.append(pl.lit(template[position:]))
    return (pl.concat_str(parts).str.replace_all(r"[ \t]{2,}", " ").str.replace_all(r"\s+([,.!?])", "${1}")
            .str.strip_chars())


def unknown_variables(template: str) -> list[str]:
    return [name for name in _VARIABLE.findall(template) if name not in _FALLBACKS]
