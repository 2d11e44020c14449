"""Connections to the application database (psycopg2; COPY and explicit transactions need it)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions

from leadflow.config import ConfigurationError, database_parts, to_libpq_url

SCHEMA = "leadflow"


def connect(url: str) -> psycopg2.extensions.connection:
    """A connection with a clear error when the server does not answer."""
    try:
        conn = psycopg2.connect(to_libpq_url(url), connect_timeout=5, application_name="leadflow")
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


def copy_rows(cur: psycopg2.extensions.cursor, table: str, columns: list[str], rows: Iterable[tuple[Any, ...]]) -> None:
    """COPY rows into a table (CSV, so text needs no escaping of its own; None is NULL)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow(["\\N" if v is None else v for v in row])
    if buffer.tell() == 0:
        return
    buffer.seek(0)
    cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer)


def read_frame(cur: psycopg2.extensions.cursor, sql: str, params: Any, schema: dict[str, Any]) -> Any:
    """A query's rows as a polars frame through COPY … TO STDOUT (CSV): one pass, no Python row objects.

    ``schema`` maps every column to its polars type as CSV gives it; timestamps should be selected as
    epoch microseconds and arrays as text joined by U+001F (see ``leadflow.campaigns.store``).
    """
    import polars as pl

    query = cur.mogrify(sql, params).decode()
    buffer = io.BytesIO()
    cur.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)", buffer)
    buffer.seek(0)
    if buffer.getbuffer().nbytes == 0:
        return pl.DataFrame(schema=schema)
    return pl.read_csv(buffer, schema=schema)


def copy_frame(cur: psycopg2.extensions.cursor, table: str, frame: Any) -> None:
    """COPY a polars frame into a table whose columns carry the frame's names (times as UTC)."""
    if frame.is_empty():
        return
    buffer = io.BytesIO()
    frame.write_csv(buffer, include_header=False, datetime_format="%Y-%m-%d %H:%M:%S%.6f+00", null_value="")
    buffer.seek(0)
    cur.copy_expert(f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN WITH (FORMAT csv)", buffer)
