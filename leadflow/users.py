"""People who read the reports: their roles, bcrypt-hashed passwords and the leads agents are assigned.

SUPERADMIN reads every broker; ADMIN reads its own broker; AGENT reads its own broker's leads that
are assigned to it (``leads.assigned_user_id``). PostgreSQL enforces the broker boundary itself
(row-level security, migrations 0010 and 0014); this module only keeps the accounts.

Any change to an account's role, broker, email, password, disabled flag or removal raises its
``token_version`` (a trigger, migration 0014), which ends every session it had: the reports API
checks the version on each request. Removing is a soft delete (``removed_at``): the row stays, so what
refers to it (``lead_handlers.user_id``, audit rows, notes) keeps its author; the person can no longer
log in, and the leads assigned to them become unassigned.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal, cast

import bcrypt
import psycopg2.extensions

from leadflow.config import Settings, secret
from leadflow.db.connection import transaction

Role = Literal["SUPERADMIN", "ADMIN", "AGENT"]
ROLES: tuple[Role, ...] = ("SUPERADMIN", "ADMIN", "AGENT")
MIN_PASSWORD_LENGTH = 10
# bcrypt reads at most 72 bytes; a longer password would be silently cut, so it is refused instead.
MAX_PASSWORD_BYTES = 72
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class UserError(ValueError):
    """The account cannot be created or changed as asked; the message says why."""


@dataclass(frozen=True)
class User:
    user_id: int
    broker_id: int | None
    email: str
    display_name: str
    role: Role
    disabled: bool = False
    token_version: int = 0
    removed: bool = False


def bcrypt_rounds() -> int:
    """Work factor for new hashes (LEADFLOW_BCRYPT_ROUNDS, default 12: ~0.25 s per login here)."""
    return Settings.from_environment().bcrypt_rounds


def hash_password(password: str) -> str:
    encoded = password.encode()
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise UserError(f"the password may have at most {MAX_PASSWORD_BYTES} bytes (bcrypt ignores the rest)")
    return bcrypt.hashpw(encoded, bcrypt.gensalt(bcrypt_rounds())).decode()


@functools.cache
def _stand_in_hash(rounds: int) -> bytes:
    return bcrypt.hashpw(b"leadflow-no-such-user", bcrypt.gensalt(rounds))


def stand_in_hash(rounds: int | None = None) -> bytes:
    """What an unknown email's password is checked against: a hash at the work factor of new hashes
    (LEADFLOW_BCRYPT_ROUNDS), so a wrong email takes as long as a wrong password (issue 17, finding 5).

    Made once per work factor; the reports API makes it at start-up, so the first unknown email is not
    the one slow login that would tell it apart.
    """
    return _stand_in_hash(bcrypt_rounds() if rounds is None else rounds)


# Replaces a removed account's hash: no password matches it (it is not a bcrypt hash).
NO_PASSWORD = "!removed"
# An invited account's hash until the person sets a password from the invitation: nothing matches it either.
INVITED = "!invited"


def password_matches(password: str, password_hash: str | None) -> bool:
    encoded = password.encode()[:MAX_PASSWORD_BYTES]
    if password_hash is None or not password_hash.startswith("$2"):
        # As long as a real check: the answer must not tell a missing or removed account from a wrong password.
        bcrypt.checkpw(encoded, stand_in_hash())
        return False
    return bcrypt.checkpw(encoded, password_hash.encode())


_COLUMNS = "user_id, broker_id, email, display_name, role, disabled, token_version, removed_at IS NOT NULL"


def _user(row: tuple[object, ...]) -> User:
    user_id, broker_id, email, name, role, disabled, version, removed = row
    return User(int(str(user_id)), None if broker_id is None else int(str(broker_id)), str(email), str(name),
                cast(Role, role), bool(disabled), int(str(version)), bool(removed))


def _check_role(role: str, broker_slug: str | None) -> Role:
    role = role.upper()
    if role not in ROLES:
        raise UserError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if (role == "SUPERADMIN") != (broker_slug is None):
        raise UserError("a SUPERADMIN belongs to no broker; ADMIN and AGENT need --broker SLUG")
    return cast(Role, role)


def _broker_id(cur: psycopg2.extensions.cursor, broker_slug: str | None) -> int | None:
    if broker_slug is None:
        return None
    cur.execute("SELECT broker_id FROM leadflow.brokers WHERE slug = %s", (broker_slug,))
    found = cur.fetchone()
    if found is None:
        raise UserError(f"there is no broker {broker_slug!r} (leadflow brokers list)")
    return int(found[0])


def _locked(cur: psycopg2.extensions.cursor, email: str) -> User:
    """The account with this email, locked until the transaction ends; a UserError when there is none."""
    cur.execute(f"SELECT {_COLUMNS} FROM leadflow.users WHERE lower(email) = lower(%s) FOR UPDATE", (email.strip(),))
    row = cur.fetchone()
    if row is None:
        raise UserError(f"there is no user {email!r}")
    return _user(row)


def release_leads(cur: psycopg2.extensions.cursor, before: User, role: Role, broker_id: int | None) -> None:
    """An AGENT that is no longer an agent of its broker (or no longer anything) keeps no leads: they become
    unassigned, so its broker's admins see them waiting instead of assigned to someone who cannot act."""
    if before.role == "AGENT" and (role != "AGENT" or broker_id != before.broker_id):
        cur.execute("UPDATE leadflow.leads SET assigned_user_id = NULL WHERE assigned_user_id = %s",
                    (before.user_id,))


def check_email(email: str) -> str:
    """``email`` trimmed; a UserError naming it when it is not an email address."""
    email = email.strip()
    if len(email) > 254 or not _EMAIL.match(email):
        raise UserError(f"email {email!r}: not an email address")
    return email


def add_user(url: str, email: str, password: str, *, role: str, broker_slug: str | None = None,
             display_name: str | None = None) -> User:
    """Create an account, or reset the password, role and broker of an existing one (same email; a removed
    account comes back this way). A reset ends the account's sessions."""
    email = email.strip()
    if not _EMAIL.match(email):
        raise UserError(f"{email!r} is not an email address")
    checked = _check_role(role, broker_slug)
    password_hash = hash_password(password)
    with transaction(url) as conn, conn.cursor() as cur:
        broker_id = _broker_id(cur, broker_slug)
        cur.execute(f"SELECT {_COLUMNS} FROM leadflow.users WHERE lower(email) = lower(%s) FOR UPDATE", (email,))
        before = cur.fetchone()
        if before is not None:
            release_leads(cur, _user(before), checked, broker_id)
        cur.execute(f"""
            INSERT INTO leadflow.users (broker_id, email, display_name, role, password_hash)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (lower(email)) DO UPDATE SET broker_id = EXCLUDED.broker_id, role = EXCLUDED.role,
                display_name = EXCLUDED.display_name, password_hash = EXCLUDED.password_hash, disabled = false,
                removed_at = NULL
            RETURNING {_COLUMNS}""", (broker_id, email, display_name or email.split("@")[0], checked, password_hash))
        row = cur.fetchone()
        assert row is not None
        return _user(row)


def set_disabled(url: str, email: str, disabled: bool) -> User:
    """Disable an account (it cannot log in, its sessions end at once) or enable it again (its old sessions
    stay ended: the person logs in anew)."""
    with transaction(url) as conn, conn.cursor() as cur:
        user = _locked(cur, email)
        if user.removed:
            raise UserError(f"{user.email} was removed; `leadflow users add` creates it again")
        cur.execute(f"UPDATE leadflow.users SET disabled = %s WHERE user_id = %s RETURNING {_COLUMNS}",
                    (disabled, user.user_id))
        row = cur.fetchone()
        assert row is not None
        return _user(row)


def remove_user(url: str, email: str) -> User:
    """Remove an account: it can never log in again and its sessions end; its leads become unassigned.

    A soft delete: the row stays (marked ``removed_at``, disabled, without a password hash) because leads,
    lead handlers and audit rows refer to it, and who did what must stay readable. ``add_user`` with the
    same email brings the account back with a new password.
    """
    with transaction(url) as conn, conn.cursor() as cur:
        user = _locked(cur, email)
        release_leads(cur, user, user.role, None)
        cur.execute(f"""UPDATE leadflow.users SET removed_at = coalesce(removed_at, now()), disabled = true,
                            password_hash = %s
                        WHERE user_id = %s RETURNING {_COLUMNS}""", (NO_PASSWORD, user.user_id))
        row = cur.fetchone()
        assert row is not None
        return _user(row)


def set_role(url: str, email: str, role: str, broker_slug: str | None = None) -> User:
    """Change an account's role, and its broker with ``broker_slug`` (an ADMIN or AGENT without one keeps its
    broker). Its sessions end; an AGENT that stops being one of its broker's agents keeps no leads."""
    with transaction(url) as conn, conn.cursor() as cur:
        user = _locked(cur, email)
        if user.removed:
            raise UserError(f"{user.email} was removed; `leadflow users add` creates it again")
        new_role = role.upper()
        if new_role not in ROLES:
            raise UserError(f"role {new_role!r}: use one of {', '.join(ROLES)}")
        if new_role == "SUPERADMIN":
            if broker_slug is not None:
                raise UserError("a SUPERADMIN belongs to no broker")
            broker_id = None
        elif broker_slug is not None:
            broker_id = _broker_id(cur, broker_slug)
        elif user.broker_id is not None:
            broker_id = user.broker_id
        else:
            raise UserError(f"{user.email} belongs to no broker: an {new_role} needs --broker SLUG")
        release_leads(cur, user, cast(Role, new_role), broker_id)
        cur.execute(f"UPDATE leadflow.users SET role = %s, broker_id = %s WHERE user_id = %s RETURNING {_COLUMNS}",
                    (new_role, broker_id, user.user_id))
        row = cur.fetchone()
        assert row is not None
        return _user(row)


def authenticate(url: str, email: str, password: str) -> User | None:
    """The enabled account with this email and password, or None (the same time either way; a removed
    account has no password hash and never matches)."""
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {_COLUMNS}, password_hash FROM leadflow.users WHERE lower(email) = lower(%s)",
                    (email.strip(),))
        row = cur.fetchone()
    matches = password_matches(password, row[-1] if row else None)
    if row is None or not matches:
        return None
    user = _user(row[:-1])
    return None if user.disabled else user


def get_user(url: str, user_id: int) -> User | None:
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM leadflow.users WHERE user_id = %s", (user_id,))
        row = cur.fetchone()
    return _user(row) if row else None


def list_users(url: str) -> list[User]:
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM leadflow.users ORDER BY broker_id NULLS FIRST, email")
        return [_user(row) for row in cur.fetchall()]


def assign_leads(url: str, email: str, lead_ids: list[int]) -> int:
    """Assign leads to an AGENT of their broker; returns how many were assigned."""
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM leadflow.users WHERE lower(email) = lower(%s)", (email,))
        row = cur.fetchone()
        if row is None:
            raise UserError(f"there is no user {email!r}")
        user = _user(row)
        if user.role != "AGENT":
            raise UserError(f"{email} is {user.role}; leads are assigned to agents")
        if user.disabled or user.removed:
            raise UserError(f"{email} is {'removed' if user.removed else 'disabled'}; assign the leads to someone "
                            "who can read them")
        cur.execute("""UPDATE leadflow.leads SET assigned_user_id = %s
                       WHERE lead_id = ANY(%s) AND broker_id = %s AND merged_into IS NULL""",
                    (user.user_id, lead_ids, user.broker_id))
        assigned = cur.rowcount
        if assigned != len(set(lead_ids)):
            raise UserError(f"only {assigned} of the {len(set(lead_ids))} leads are live leads of the agent's broker; "
                            "nothing was assigned")
        return assigned


def password_from_env(var: str) -> str:
    value = secret(var)
    if not value:
        raise UserError(f"${var} is empty or unset")
    return value
