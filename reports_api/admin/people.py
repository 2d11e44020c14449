"""Brokers and their people: a SUPERADMIN registers a broker with its first ADMIN; an ADMIN invites people,
changes their role and name, deactivates and reactivates them; an invited person sets a password.

Every function takes an owner cursor (``reports_api.sessions.OwnerConnections``: one transaction) and, where a
person acts, the acting ``Principal``; it checks the caller itself (``access``) before anything else, and
writes its audit entry (``audit``) in the same transaction. An invited account has no password
(``leadflow.users.INVITED``, which no password matches) until it redeems its link; the link's token is
returned once and only its SHA-256 is stored. Changing an account's role or disabled flag ends its sessions
(migration 0014's trigger on ``token_version``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import psycopg2.extensions

from leadflow.brokers import BrokerError, validate
from leadflow.users import INVITED, Role, User, UserError, check_email, release_leads
from reports_api.admin import audit
from reports_api.admin.access import Conflict, Forbidden, Invalid, NotFound, require_admin_of, require_superadmin
from reports_api.security import Principal

INVITATION_TTL = timedelta(days=7)
INVITATION_PATH = "/dashboard/invite/"
BROKER_ROLES: tuple[Role, ...] = ("ADMIN", "AGENT")
MAX_NAME = 200
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
LAST_ADMIN = ("{email} is the broker's last active ADMIN: promote or invite another ADMIN (and let them set "
              "their password) before demoting or deactivating this one")

_PERSON = """u.user_id, u.broker_id, u.email, u.display_name, u.role, u.disabled, u.created_at,
             u.password_hash LIKE '$2%%' AS has_password,
             (SELECT i.expires_at FROM leadflow.user_invitations i
              WHERE i.user_id = u.user_id) AS invitation_expires_at"""


@dataclass(frozen=True)
class Invitation:
    """A one-time link's token (shown once, never stored) and until when it works."""

    token: str
    expires_at: datetime

    @property
    def path(self) -> str:
        return INVITATION_PATH + self.token


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _person(row: tuple[Any, ...]) -> dict[str, Any]:
    user_id, broker_id, email, name, role, disabled, created_at, has_password, expires_at = row
    return {"user_id": int(user_id), "broker_id": None if broker_id is None else int(broker_id), "email": email,
            "display_name": name, "role": role, "disabled": bool(disabled), "created_at": created_at,
            "invitation_pending": not has_password, "invitation_expires_at": expires_at}


def _storable(value: str) -> bool:
    """Text PostgreSQL takes: no NUL (nor other control characters), and UTF-8 (JSON may carry a lone surrogate)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return not _CONTROL.search(value)


def clean_name(value: str, field: str) -> str:
    name = value.strip()
    if not name or len(name) > MAX_NAME or not _storable(name):
        raise Invalid(f"{field}: write a name of 1 to {MAX_NAME} characters, on one line", field)
    return name


def clean_email(value: str, field: str) -> str:
    try:
        if not _storable(value):
            raise UserError("not storable")
        return check_email(value)
    except UserError as exc:
        raise Invalid(f"{field} {value.strip()[:254]!r}: not an email address", field) from exc


def clean_role(value: str, field: str = "role") -> Role:
    role = value.strip().upper()
    if role == "SUPERADMIN":
        raise Forbidden(f"{field}: nobody is made SUPERADMIN here; a broker's people are ADMIN or AGENT", field)
    if role not in BROKER_ROLES:
        raise Invalid(f"{field} {value!r}: use ADMIN or AGENT", field)
    return cast(Role, role)


def _broker(cur: psycopg2.extensions.cursor, broker_id: int) -> dict[str, Any]:
    cur.execute("SELECT broker_id, slug, name, country, timezone FROM leadflow.brokers WHERE broker_id = %s",
                (broker_id,))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"there is no broker {broker_id}")
    return dict(zip(("broker_id", "slug", "name", "country", "timezone"), row, strict=True))


def broker(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int) -> dict[str, Any]:
    require_admin_of(who, broker_id)
    return _broker(cur, broker_id)


def list_brokers(cur: psycopg2.extensions.cursor, who: Principal) -> list[dict[str, Any]]:
    require_superadmin(who)
    cur.execute("""SELECT b.broker_id, b.slug, b.name, b.country, b.timezone,
                          count(u.user_id) FILTER (WHERE NOT u.disabled AND u.removed_at IS NULL)
                   FROM leadflow.brokers b LEFT JOIN leadflow.users u ON u.broker_id = b.broker_id
                   GROUP BY b.broker_id ORDER BY b.slug""")
    return [dict(zip(("broker_id", "slug", "name", "country", "timezone", "active_people"), row, strict=True))
            for row in cur.fetchall()]


def _invite(cur: psycopg2.extensions.cursor, user_id: int, actor_id: int, ttl: timedelta) -> Invitation:
    """A new link for the account, replacing any earlier one (which stops working)."""
    token = secrets.token_urlsafe(32)
    cur.execute("""INSERT INTO leadflow.user_invitations (user_id, token_sha256, expires_at, created_by)
                   VALUES (%s, %s, now() + %s, %s)
                   ON CONFLICT (user_id) DO UPDATE SET token_sha256 = EXCLUDED.token_sha256,
                       expires_at = EXCLUDED.expires_at, created_at = now(), created_by = EXCLUDED.created_by
                   RETURNING expires_at""", (user_id, psycopg2.Binary(token_digest(token)), ttl, actor_id))
    row = cur.fetchone()
    assert row is not None
    return Invitation(token, row[0])


def _new_person(cur: psycopg2.extensions.cursor, broker_id: int, email: str, name: str, role: Role,
                field: str) -> dict[str, Any]:
    cur.execute(f"""INSERT INTO leadflow.users AS u (broker_id, email, display_name, role, password_hash)
                    VALUES (%s, %s, %s, %s, %s) ON CONFLICT (lower(email)) DO NOTHING RETURNING {_PERSON}""",
                (broker_id, email, name, role, INVITED))
    row = cur.fetchone()
    if row is None:
        raise Conflict(f"{field} {email!r} already has an account", field)
    return _person(row)


def create_broker(cur: psycopg2.extensions.cursor, who: Principal, *, slug: str, name: str, country: str,
                  timezone: str, admin_email: str, admin_display_name: str,
                  ttl: timedelta = INVITATION_TTL) -> tuple[dict[str, Any], dict[str, Any], Invitation]:
    """Register a broker and its first ADMIN (invited): the broker, the admin and the admin's invitation.
    A slug already taken is a Conflict: an existing broker is never changed from here."""
    require_superadmin(who)
    slug, country, timezone = slug.strip(), country.strip().upper(), timezone.strip()
    try:
        validate(slug, country, timezone, {})
    except BrokerError as exc:
        raise Invalid(str(exc), str(exc).split(" ", 1)[0]) from exc
    name = clean_name(name, "name")
    email = clean_email(admin_email, "admin_email")
    admin_name = clean_name(admin_display_name, "admin_display_name")
    cur.execute("""INSERT INTO leadflow.brokers (slug, name, country, timezone, secret_env)
                   VALUES (%s, %s, %s, %s, '{}'::jsonb) ON CONFLICT (slug) DO NOTHING
                   RETURNING broker_id, slug, name, country, timezone""", (slug, name, country, timezone))
    row = cur.fetchone()
    if row is None:
        raise Conflict(f"slug {slug!r} is taken by another broker", "slug")
    created = dict(zip(("broker_id", "slug", "name", "country", "timezone"), row, strict=True))
    # A taken email raises here and rolls the broker back with it: both or neither.
    admin = _new_person(cur, created["broker_id"], email, admin_name, "ADMIN", "admin_email")
    invitation = _invite(cur, admin["user_id"], who.user_id, ttl)
    audit.record(cur, created["broker_id"], who.user_id, "broker.create", None, created)
    audit.record(cur, created["broker_id"], who.user_id, "user.invite", None,
                 {**audit.person(admin), "invitation_expires_at": invitation.expires_at.isoformat()})
    return created, admin, invitation


def list_people(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int) -> list[dict[str, Any]]:
    """The broker's accounts (removed ones left out), ADMINs first."""
    require_admin_of(who, broker_id)
    _broker(cur, broker_id)
    cur.execute(f"""SELECT {_PERSON} FROM leadflow.users u WHERE u.broker_id = %s AND u.removed_at IS NULL
                    ORDER BY u.role, lower(u.email)""", (broker_id,))
    return [_person(row) for row in cur.fetchall()]


def invite(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, *, email: str, display_name: str,
           role: str, ttl: timedelta = INVITATION_TTL) -> tuple[dict[str, Any], Invitation]:
    """A new account of the broker, without a password, and its invitation."""
    require_admin_of(who, broker_id)
    checked_role = clean_role(role)
    address = clean_email(email, "email")
    name = clean_name(display_name, "display_name")
    _broker(cur, broker_id)
    person = _new_person(cur, broker_id, address, name, checked_role, "email")
    invitation = _invite(cur, person["user_id"], who.user_id, ttl)
    audit.record(cur, broker_id, who.user_id, "user.invite", None,
                 {**audit.person(person), "invitation_expires_at": invitation.expires_at.isoformat()})
    return {**person, "invitation_expires_at": invitation.expires_at}, invitation


def _people_locked(cur: psycopg2.extensions.cursor, broker_id: int) -> list[dict[str, Any]]:
    """The broker's accounts, locked until the transaction ends: two admins changing people at once are
    serialised, so they cannot both leave the broker without an active ADMIN."""
    cur.execute(f"""SELECT {_PERSON} FROM leadflow.users u WHERE u.broker_id = %s AND u.removed_at IS NULL
                    ORDER BY u.user_id FOR UPDATE""", (broker_id,))
    return [_person(row) for row in cur.fetchall()]


def _target(cur: psycopg2.extensions.cursor, people: list[dict[str, Any]], broker_id: int,
            user_id: int) -> dict[str, Any]:
    found = next((p for p in people if p["user_id"] == user_id), None)
    if found is not None:
        return found
    cur.execute("SELECT role FROM leadflow.users WHERE user_id = %s", (user_id,))
    row = cur.fetchone()
    if row is not None and row[0] == "SUPERADMIN":
        raise Forbidden("a SUPERADMIN account belongs to no broker and is not changed here")
    raise NotFound(f"broker {broker_id} has no user {user_id}")


def _active_admin(person: dict[str, Any]) -> bool:
    # One still to set a password cannot log in yet: it does not count as a broker's admin.
    return person["role"] == "ADMIN" and not person["disabled"] and not person["invitation_pending"]


def update(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, user_id: int, *,
           role: str | None = None, disabled: bool | None = None,
           display_name: str | None = None) -> dict[str, Any]:
    """Change a person's role (ADMIN or AGENT), disabled flag or name; what is None stays. A change of role or
    disabled flag ends the person's sessions. An ADMIN may not leave the broker without an active ADMIN
    (Conflict); a SUPERADMIN may (to lock a broker out)."""
    require_admin_of(who, broker_id)
    new_role = None if role is None else clean_role(role)
    name = None if display_name is None else clean_name(display_name, "display_name")
    _broker(cur, broker_id)
    people = _people_locked(cur, broker_id)
    before = _target(cur, people, broker_id, user_id)
    after = {**before, "role": new_role or before["role"],
             "disabled": before["disabled"] if disabled is None else disabled,
             "display_name": name or before["display_name"]}
    if audit.person(after) == audit.person(before):
        return before
    if who.role != "SUPERADMIN" and _active_admin(before) and not _active_admin(after) \
            and not any(_active_admin(p) for p in people if p["user_id"] != user_id):
        raise Conflict(LAST_ADMIN.format(email=before["email"]), "role" if after["role"] != "ADMIN" else "disabled")
    release_leads(cur, User(user_id, broker_id, before["email"], before["display_name"], before["role"]),
                  after["role"], broker_id)
    cur.execute(f"""UPDATE leadflow.users AS u SET role = %s, disabled = %s, display_name = %s WHERE u.user_id = %s
                    RETURNING {_PERSON}""", (after["role"], after["disabled"], after["display_name"], user_id))
    row = cur.fetchone()
    assert row is not None
    changed = _person(row)
    audit.record(cur, broker_id, who.user_id, "user.update", audit.person(before), audit.person(changed))
    return changed


def reinvite(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, user_id: int, *,
             ttl: timedelta = INVITATION_TTL) -> tuple[dict[str, Any], Invitation]:
    """A new link for a person who has not set a password yet; the earlier link stops working."""
    require_admin_of(who, broker_id)
    _broker(cur, broker_id)
    person = _target(cur, _people_locked(cur, broker_id), broker_id, user_id)
    if not person["invitation_pending"]:
        raise Conflict(f"{person['email']} has already set a password")
    if person["disabled"]:
        raise Conflict(f"{person['email']} is deactivated: reactivate the account first")
    invitation = _invite(cur, user_id, who.user_id, ttl)
    audit.record(cur, broker_id, who.user_id, "user.reinvite", None,
                 {**audit.person(person), "invitation_expires_at": invitation.expires_at.isoformat()})
    return {**person, "invitation_expires_at": invitation.expires_at}, invitation


_INVITED = f"""SELECT u.user_id, u.broker_id, u.email, u.display_name, b.name
               FROM leadflow.user_invitations i JOIN leadflow.users u USING (user_id)
               JOIN leadflow.brokers b ON b.broker_id = u.broker_id
               WHERE i.token_sha256 = %s AND i.expires_at > now() AND u.password_hash = '{INVITED}'
                 AND NOT u.disabled AND u.removed_at IS NULL"""


def invitation(cur: psycopg2.extensions.cursor, token: str) -> dict[str, Any] | None:
    """Who the link invites (email, name, broker's name), or None when it is unknown, used, replaced or expired."""
    if not _TOKEN.match(token):
        return None
    cur.execute(_INVITED, (psycopg2.Binary(token_digest(token)),))
    row = cur.fetchone()
    return None if row is None else dict(zip(("user_id", "broker_id", "email", "display_name", "broker_name"), row,
                                              strict=True))


def accept(cur: psycopg2.extensions.cursor, token: str, password_hash: str) -> dict[str, Any]:
    """Set the invited account's password (hashed by the caller, outside the transaction) and use the link up."""
    if not _TOKEN.match(token):
        raise NotFound(INVALID_LINK)
    cur.execute(_INVITED + " FOR UPDATE OF i, u", (psycopg2.Binary(token_digest(token)),))
    row = cur.fetchone()
    if row is None:
        raise NotFound(INVALID_LINK)
    user_id, broker_id = int(row[0]), int(row[1])
    cur.execute("DELETE FROM leadflow.user_invitations WHERE user_id = %s", (user_id,))
    cur.execute(f"UPDATE leadflow.users AS u SET password_hash = %s WHERE u.user_id = %s RETURNING {_PERSON}",
                (password_hash, user_id))
    found = cur.fetchone()
    assert found is not None
    person = _person(found)
    audit.record(cur, broker_id, user_id, "user.invitation_accepted", None, audit.person(person))
    return person


INVALID_LINK = "this invitation link is not valid: it was used, replaced by a newer one, or has expired"
