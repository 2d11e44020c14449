"""People who read the reports: their roles, bcrypt-hashed passwords and the leads agents are assigned.

SUPERADMIN reads every broker; ADMIN reads its own broker; AGENT reads its own broker's leads that
are assigned to it (``leads.assigned_user_id``). PostgreSQL enforces the broker boundary itself
(row-level security, migration 0010); this module only keeps the accounts.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal, cast

import bcrypt

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


def password_matches(password: str, password_hash: str | None) -> bool:
    encoded = password.encode()[:MAX_PASSWORD_BYTES]
    if password_hash is None:
        bcrypt.checkpw(encoded, stand_in_hash())
        return False
    return bcrypt.checkpw(encoded, password_hash.encode())


_COLUMNS = "user_id, broker_id, email, display_name, role, disabled"


def _user(row: tuple[object, ...]) -> User:
    user_id, broker_id, email, name, role, disabled = row
    return User(int(str(user_id)), None if broker_id is None else int(str(broker_id)), str(email), str(name),
                cast(Role, role), bool(disabled))


def add_user(url: str, email: str, password: str, *, role: str, broker_slug: str | None = None,
             display_name: str | None = None) -> User:
    """Create an account, or reset the password, role and broker of an existing one (same email)."""
    email = email.strip()
    if not _EMAIL.match(email):
        raise UserError(f"{email!r} is not an email address")
    role = role.upper()
    if role not in ROLES:
        raise UserError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if (role == "SUPERADMIN") != (broker_slug is None):
        raise UserError("a SUPERADMIN belongs to no broker; ADMIN and AGENT need --broker SLUG")
    password_hash = hash_password(password)
    with transaction(url) as conn, conn.cursor() as cur:
        broker_id = None
        if broker_slug is not None:
            cur.execute("SELECT broker_id FROM leadflow.brokers WHERE slug = %s", (broker_slug,))
            found = cur.fetchone()
            if found is None:
                raise UserError(f"there is no broker {broker_slug!r} (leadflow brokers list)")
            broker_id = found[0]
        cur.execute(f"""
            INSERT INTO leadflow.users (broker_id, email, display_name, role, password_hash)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (lower(email)) DO UPDATE SET broker_id = EXCLUDED.broker_id, role = EXCLUDED.role,
                display_name = EXCLUDED.display_name, password_hash = EXCLUDED.password_hash, disabled = false
            RETURNING {_COLUMNS}""", (broker_id, email, display_name or email.split("@")[0], role, password_hash))
        row = cur.fetchone()
        assert row is not None
        return _user(row)


def authenticate(url: str, email: str, password: str) -> User | None:
    """The enabled account with this email and password, or None (the same time either way)."""
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
