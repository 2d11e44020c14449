"""Who may manage which broker's people, and the refusals the admin routes answer with.

The admin writes run as the database owner (the reports role has no rights on users, brokers or
invitations), so PostgreSQL's policies do not stand behind these checks: every function of
``reports_api.admin.people`` calls one of them before it reads or writes anything.
"""

from __future__ import annotations

from reports_api.security import Principal


class AdminError(Exception):
    """A refusal; ``status`` is the HTTP answer, ``field`` the input it is about (for a form to point at)."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Forbidden(AdminError):
    status = 403


class NotFound(AdminError):
    status = 404


class Conflict(AdminError):
    status = 409


class Invalid(AdminError):
    status = 422


def require_superadmin(who: Principal) -> None:
    if who.role != "SUPERADMIN":
        raise Forbidden("only a SUPERADMIN registers and lists brokers")


def require_admin_of(who: Principal, broker_id: int) -> None:
    """An ADMIN of ``broker_id`` or a SUPERADMIN; anyone else is refused (403)."""
    if who.role == "SUPERADMIN":
        return
    if who.role != "ADMIN":
        raise Forbidden("only the broker's admins may do this")
    if who.broker_id != broker_id:
        raise Forbidden("this account may not manage that broker")
