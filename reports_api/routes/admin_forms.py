"""What the admin pages' routes share: the way back to the login, the expired-form message, and one owner
transaction around a write (these tables are out of the reports role's reach; ``reports_api.admin.access``
is the guard)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import psycopg2.extensions
from fastapi import status
from fastapi.responses import RedirectResponse

from reports_api.sessions import OwnerConnections

T = TypeVar("T")
EXPIRED_FORM = "El formulario venció. Vuelve a intentarlo."


def to_login() -> RedirectResponse:
    return RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER)


def owner_run(owner: OwnerConnections, action: Callable[[psycopg2.extensions.cursor], T]) -> T:
    """``action`` in one owner transaction: committed when it returns, rolled back when it raises."""
    with owner.cursor() as cur:
        return action(cur)
