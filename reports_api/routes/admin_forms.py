"""What the admin pages' routes share: the way back to the login, the expired-form message, a form read with its
CSRF token checked, and one owner transaction around a write (these tables are out of the reports role's reach;
``reports_api.admin.access`` is the guard)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg2.extensions
from fastapi import Request, status
from fastapi.responses import RedirectResponse

from reports_api.routes.workspace_pages import Session
from reports_api.routes.workspace_settings import form_lists
from reports_api.sessions import OwnerConnections
from reports_api.workspace import csrf

T = TypeVar("T")
EXPIRED_FORM = "El formulario venció. Vuelve a intentarlo."


def to_login() -> RedirectResponse:
    return RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER)


async def checked_form(request: Request, tokens: Any, session: Session) -> dict[str, list[str]] | None:
    """The form's fields, or None when its CSRF token is not this session's."""
    form = await form_lists(request)
    return form if csrf.valid(tokens.secret, session.token, first(form, csrf.FIELD)) else None


def first(form: dict[str, list[str]], name: str) -> str:
    """A field's first value, trimmed ("" when absent)."""
    return (form.get(name) or [""])[0].strip()


def owner_run(owner: OwnerConnections, action: Callable[[psycopg2.extensions.cursor], T]) -> T:
    """``action`` in one owner transaction: committed when it returns, rolled back when it raises."""
    with owner.cursor() as cur:
        return action(cur)
