"""Connections that can only see one broker: PostgreSQL's row-level security does the filtering.

The pool logs in as ``leadflow_reports_login`` (migration 0014), a role with only the rights of
``leadflow_reports``: the API never holds an owner connection for reports, so SQL on these
connections has no role to go back to. Each transaction starts by recording its scope (the
broker, or all brokers for a SUPERADMIN's broker list; the person acting; for an AGENT, itself)
through ``leadflow.enter_reports_scope``, which accepts it only with a proof keyed by a secret the
reports role cannot read and bound to this backend and this transaction. The policies read that
record, so nothing the role can SET or ``set_config`` changes what it sees, and the scope ends
with the transaction.

At start-up, as the owner (the database URL), the pool gives the login role its password
(LEADFLOW_REPORTS_DB_PASSWORD) and reads the proof's keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.pool

from leadflow.config import ConfigurationError, Settings, database_parts, on_loopback, to_libpq_url
from leadflow.db.connection import transaction
from reports_api.security import Principal

REPORTS_ROLE = "leadflow_reports"
LOGIN_ROLE = "leadflow_reports_login"
# Only for a database on loopback (the embedded one, `make up`): whoever can reach it there has a shell on
# the host, which the threat model leaves out (SECURITY.md).
LOCAL_PASSWORD = "leadflow-reports-local"
MIN_PASSWORD_LENGTH = 16
SCRAM_ITERATIONS = 4096  # PostgreSQL's own default (scram_iterations)


def login_password(settings: Settings, url: str) -> str:
    """The login role's password: LEADFLOW_REPORTS_DB_PASSWORD; unset, LOCAL_PASSWORD for a database on
    loopback and a ConfigurationError for any other."""
    if settings.reports_db_password:
        return settings.reports_db_password
    host = database_parts(url)["host"]
    if on_loopback(host):
        return LOCAL_PASSWORD
    raise ConfigurationError(
        f"LEADFLOW_REPORTS_DB_PASSWORD must be set: the reports API logs in to PostgreSQL at {host} as "
        f"{LOGIN_ROLE} with it ({MIN_PASSWORD_LENGTH}+ printable ASCII characters, e.g. "
        "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")



def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802, 7677), made here so the
    password itself never travels in an ALTER ROLE that a server log could keep."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


@dataclass(frozen=True)
class ScopeKey:
    """The keys of the scope's proof (``leadflow.reports_scope_key``), one hash block each."""

    inner: bytes = field(repr=False)
    outer: bytes = field(repr=False)

    def proof(self, message: str) -> bytes:
        """SHA-256(outer ‖ SHA-256(inner ‖ message)), as ``leadflow.enter_reports_scope`` computes it."""
        return hashlib.sha256(self.outer + hashlib.sha256(self.inner + message.encode()).digest()).digest()


def scope_message(pid: int, xact: str, broker_id: int | None, all_brokers: bool, user_id: int,
                  agent_id: int | None) -> str:
    """What a proof covers: this backend, this transaction and the scope (the function's format())."""
    return (f"{pid}:{xact}:{'' if broker_id is None else broker_id}:{'all' if all_brokers else ''}:{user_id}:"
            f"{'' if agent_id is None else agent_id}")


def prepare_login(owner_url: str, password: str) -> ScopeKey:
    """As the owner: give ``LOGIN_ROLE`` ``password`` and read the scope key."""
    if len(password) < MIN_PASSWORD_LENGTH and password != LOCAL_PASSWORD:
        raise ConfigurationError(f"LEADFLOW_REPORTS_DB_PASSWORD needs at least {MIN_PASSWORD_LENGTH} characters")
    with transaction(owner_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (LOGIN_ROLE,))
        if cur.fetchone() is None:
            raise ConfigurationError(f"there is no role {LOGIN_ROLE}: run `leadflow db upgrade` (migration 0014)")
        # Processes starting together would otherwise collide on the role's catalog row.
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (LOGIN_ROLE,))
        cur.execute("SAVEPOINT password")
        try:
            cur.execute(f"ALTER ROLE {LOGIN_ROLE} WITH LOGIN PASSWORD %s", (scram_verifier(password),))
        except psycopg2.errors.InsufficientPrivilege:
            # The owner may not manage roles: then whoever created the role gave it the password, and the
            # first connection below says so if it is not this one.
            cur.execute("ROLLBACK TO SAVEPOINT password")
        try:
            cur.execute("SELECT inner_key, outer_key FROM leadflow.reports_scope_key")
        except psycopg2.errors.UndefinedTable as exc:
            raise ConfigurationError("the database lacks migration 0014: run `leadflow db upgrade`") from exc
        row = cur.fetchone()
    if row is None:
        raise ConfigurationError("leadflow.reports_scope_key is empty: run `leadflow db upgrade` again")
    return ScopeKey(bytes(row[0]), bytes(row[1]))


class ScopedPool:
    """A bounded pool of ``LOGIN_ROLE`` connections: a request waits for a free one instead of failing.

    ``url`` is the owner's (LEADFLOW_DATABASE_URL); it is used once, here, to prepare the login role.
    """

    def __init__(self, url: str, size: int, *, password: str | None = None) -> None:
        password = password if password is not None else login_password(Settings.from_environment(), url)
        self._key = prepare_login(url, password)
        try:
            # minconn = maxconn: psycopg2's pool closes every connection given back beyond minconn, and
            # each request would then open a new one.
            self._pool = psycopg2.pool.ThreadedConnectionPool(
                size, size, to_libpq_url(url), user=LOGIN_ROLE, password=password, connect_timeout=5,
                application_name="leadflow-reports")
        except psycopg2.OperationalError as exc:
            parts = database_parts(url)
            raise ConfigurationError(
                f"the reports API cannot log in to PostgreSQL at {parts['host']}:{parts['port']} as {LOGIN_ROLE}: "
                f"{str(exc).strip().splitlines()[0]}. Check LEADFLOW_REPORTS_DB_PASSWORD") from None
        self._free = threading.BoundedSemaphore(size)

    @contextmanager
    def cursor(self, principal: Principal, broker_id: int, *,
               write: bool = False) -> Iterator[psycopg2.extensions.cursor]:
        """A cursor that sees ``broker_id`` only, and of it only what the principal may see.

        Read-only unless ``write`` (then it writes only what the reports role's grants and policies allow,
        committed when the block ends without an exception). The caller has checked
        ``principal.may_read(broker_id)``; a SUPERADMIN reads the broker asked for.
        """
        if not principal.may_read(broker_id):
            raise PermissionError(f"user {principal.user_id} may not read broker {broker_id}")
        agent = principal.user_id if principal.role == "AGENT" else None
        with self._scoped(broker_id, False, principal.user_id, agent, write) as cur:
            yield cur

    @contextmanager
    def all_brokers_cursor(self, principal: Principal) -> Iterator[psycopg2.extensions.cursor]:
        """For listing brokers: a SUPERADMIN sees all, anyone else only their own."""
        superadmin = principal.role == "SUPERADMIN"
        agent = principal.user_id if principal.role == "AGENT" else None
        with self._scoped(None if superadmin else principal.broker_id, superadmin, principal.user_id, agent,
                          False) as cur:
            yield cur

    @contextmanager
    def _scoped(self, broker_id: int | None, all_brokers: bool, user_id: int, agent_id: int | None,
                write: bool) -> Iterator[psycopg2.extensions.cursor]:
        with self._connection() as conn, conn.cursor() as cur:
            # A pooled connection forgets what an earlier transaction SET for the session (search_path,
            # row_security, a role). The proof names this backend and this transaction: fetched, then signed.
            cur.execute("RESET ALL; RESET ROLE; SELECT pg_backend_pid(), pg_current_xact_id()::text")
            row = cur.fetchone()
            assert row is not None
            proof = self._key.proof(scope_message(int(row[0]), str(row[1]), broker_id, all_brokers, user_id, agent_id))
            # READ ONLY after the scope is recorded: the recording itself is a write.
            cur.execute("SELECT leadflow.enter_reports_scope(%s, %s, %s, %s, %s)"
                        + ("" if write else "; SET TRANSACTION READ ONLY"),
                        (broker_id, all_brokers, user_id, agent_id, psycopg2.Binary(proof)))
            yield cur

    def ping(self) -> None:
        with self._connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")

    @contextmanager
    def _connection(self) -> Iterator[psycopg2.extensions.connection]:
        with self._free:
            conn = self._pool.getconn()
            broken = False
            try:
                with conn:  # one transaction: committed, or rolled back on an exception
                    yield conn
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                broken = True
                raise
            finally:
                self._pool.putconn(conn, close=broken or bool(conn.closed))

    def close(self) -> None:
        self._pool.closeall()
