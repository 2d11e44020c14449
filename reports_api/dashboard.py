"""The funnel dashboard's rendering: Jinja2 templates, inline SVG bars, the session cookie's name.

The pages themselves are in ``reports_api.routes.dashboard``. The session cookie holds the same JWT
the API issues (HttpOnly, SameSite=Strict), so a page reads through the same broker-scoped cursor
as the JSON endpoints.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import HTMLResponse

from reports_api.workspace.render import environment

COOKIE = "leadflow_session"
BAR_MAX_WIDTH = 440  # pixels of the widest funnel bar; the test measures bars against it
# The workspace's environment: the funnel page shows the workspace's navigation, whose macros use its filters.
_templates = environment()


def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The template ``name`` rendered with ``context``."""
    return HTMLResponse(_templates.get_template(name).render(**context), status_code=status_code)


def funnel_bars(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bar widths in pixels, proportional to the leads that entered each stage (lost leads left out)."""
    shown = [s for s in stages if s["stage"] != "perdido"]
    widest = max((s["leads_entered"] for s in shown), default=0)
    return [{**s, "width": round(BAR_MAX_WIDTH * s["leads_entered"] / widest) if widest else 0} for s in shown]


def later_stages(*rows: dict[str, Any]) -> list[dict[str, Any]]:
    """The stages after entry that any conversion row reached, in funnel order (the tables' columns).

    Adds ``reached`` (stage → leads that entered it) to each row, for the template's cells.
    """
    later: dict[str, dict[str, Any]] = {}
    for row in rows:
        row["reached"] = {s["stage"]: s["leads_entered"] for s in row["stages"]}
        later.update({s["stage"]: s for s in row["stages"] if s["stage"] != "entrada"})
    return sorted(later.values(), key=lambda s: s["stage_position"])
