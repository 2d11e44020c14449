"""Connections that can only see one broker: PostgreSQL's row-level security does the filtering.

Each request borrows a pooled connection and, inside one transaction, becomes the role
``leadflow_reports`` with ``leadflow.broker_id`` (and ``leadflow.agent_id`` for an AGENT) set
from the token's principal. The policies of migration 0010 and the marts' post-hook then hide
every other broker's rows, whatever the SQL asks for; the settings end with the transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2.extensions
import psycopg2.pool

from leadflow.config import to_libpq_url
from reports_api.security import Principal

REPORTS_ROLE = "leadflow_reports"


class ScopedPool:
    """A bounded pool: a request waits for a free connection instead of failing when all are busy."""

    def __init__(self, url: str, size: int) -> None:
        self._pool = psycopg2.pool.ThreadedConnectionPool(1, size, to_libpq_url(url), connect_timeout=5,
                                                          application_name="leadflow-reports")
        self._free = threading.BoundedSemaphore(size)

    @contextmanager
    def cursor(self, principal: Principal, broker_id: int) -> Iterator[psycopg2.extensions.cursor]:
        """A read-only cursor that sees ``broker_id`` only, and of it only what the principal may see.

        The caller has checked ``principal.may_read(broker_id)``; a SUPERADMIN reads the broker asked for.
        """
        if not principal.may_read(broker_id):
            raise PermissionError(f"user {principal.user_id} may not read broker {broker_id}")
        with self._connection() as conn, conn.cursor() as cur:
            cur.execute(
                f"SET TRANSACTION READ ONLY; SET LOCAL ROLE {REPORTS_ROLE}; "
                "SELECT set_config('leadflow.broker_id', %s, true), set_config('leadflow.agent_id', %s, true)",
                (str(broker_id), str(principal.user_id) if principal.role == "AGENT" else ""))
            yield cur

    @contextmanager
    def all_brokers_cursor(self, principal: Principal) -> Iterator[psycopg2.extensions.cursor]:
        """For listing brokers: a SUPERADMIN sees all, anyone else only their own."""
        with self._connection() as conn, conn.cursor() as cur:
            cur.execute(
                f"SET TRANSACTION READ ONLY; SET LOCAL ROLE {REPORTS_ROLE}; "
                "SELECT set_config('leadflow.broker_id', %s, true), set_config('leadflow.all_brokers', %s, true)",
                ("" if principal.broker_id is None else str(principal.broker_id),
                 "on" if principal.role == "SUPERADMIN" else ""))
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
                with conn:  # one transaction: committed (nothing to commit) or rolled back
                    yield conn
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                broken = True
                raise
            finally:
                self._pool.putconn(conn, close=broken or bool(conn.closed))

    def close(self) -> None:
        self._pool.closeall()
