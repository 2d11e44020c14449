"""Connections to the application database (psycopg2: COPY and explicit transactions need it; see ``copy``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions

from leadflow.config import ConfigurationError, database_parts, to_libpq_url

SCHEMA = "leadflow"


def connect(url: str) -> psycopg2.extensions.connection:
    """A connection with a clear error when the server does not answer."""
    try:
        # A fallback: libpq's own PGAPPNAME, when set, names a process's connections in pg_stat_activity.
        conn = psycopg2.connect(to_libpq_url(url), connect_timeout=5, fallback_application_name="leadflow")
    except psycopg2.OperationalError as exc:
        parts = database_parts(url)
        raise ConfigurationError(
            f"PostgreSQL at {parts['host']}:{parts['port']} (database {parts['dbname']!r}) does not answer: "
            f"{str(exc).strip().splitlines()[0]}. Check LEADFLOW_DATABASE_URL, or unset it and run "
            "`leadflow services up` to use the embedded PostgreSQL."
        ) from exc
    return conn


@contextmanager
def transaction(url: str) -> Iterator[psycopg2.extensions.connection]:
    """One connection, one transaction: committed on success, rolled back on any exception."""
    conn = connect(url)
    try:
        with conn:
            yield conn
    finally:
        conn.close()
