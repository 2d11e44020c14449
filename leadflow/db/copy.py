"""Bulk I/O with PostgreSQL's COPY: Python rows and polars frames in, polars frames out.

One encoder for rows built in Python (COPY's text format, ``copy_line``), shared by the landing's
hot path and ``copy_rows``; frames are written by polars' own CSV writer (``copy_frame``), which
encodes whole columns in Rust. One reader, ``read_frame``, for every query whose rows go to polars.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

import polars as pl
import psycopg2.extensions

# Arrays and times cross COPY's CSV in forms polars reads without guessing: text arrays joined by
# this separator, timestamps as epoch microseconds, booleans as 0/1.
ARRAY_SEPARATOR = "\x1f"


def copy_text(value: Any) -> str:
    """One field in COPY text format: \\N for NULL, backslash escapes for the separators."""
    if value is None:
        return "\\N"
    text = value if isinstance(value, str) else str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text or "\x00" in text:
        text = text.replace("\x00", "")  # PostgreSQL text cannot hold NUL
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def copy_line(values: Iterable[Any]) -> str:
    """One row in COPY text format, newline included."""
    return "\t".join([copy_text(v) for v in values]) + "\n"


def pg_array(values: Iterable[str] | None) -> str:
    """A text[] literal (for a field of ``copy_rows``)."""
    items = ['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values or []]
    return "{" + ",".join(items) + "}"


def copy_rows(cur: psycopg2.extensions.cursor, table: str, columns: list[str], rows: Iterable[Iterable[Any]]) -> None:
    """COPY rows into ``table`` (None is NULL; other values as ``str()`` gives them, which PostgreSQL parses)."""
    payload = "".join([copy_line(row) for row in rows])
    if payload:
        cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", io.StringIO(payload))


def copy_frame(cur: psycopg2.extensions.cursor, table: str, frame: pl.DataFrame) -> None:
    """COPY a polars frame into a table whose columns carry the frame's names (times as UTC)."""
    if frame.is_empty():
        return
    buffer = io.BytesIO()
    frame.write_csv(buffer, include_header=False, datetime_format="%Y-%m-%d %H:%M:%S%.6f+00", null_value="")
    buffer.seek(0)
    cur.copy_expert(f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN WITH (FORMAT csv)", buffer)


def _as_csv(name: str, dtype: Any) -> tuple[str, Any]:
    """How one column of the query crosses COPY's CSV: the SQL that sends it and the type polars reads."""
    quoted = '"' + name.replace('"', '""') + '"'
    if isinstance(dtype, pl.Datetime):
        scale = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[dtype.time_unit]
        return f"(extract(epoch FROM q.{quoted}) * {scale})::bigint AS {quoted}", pl.Int64
    if isinstance(dtype, pl.List):
        return f"array_to_string(q.{quoted}, E'\\x1f') AS {quoted}", pl.String
    if dtype == pl.Boolean:
        return f"q.{quoted}::int AS {quoted}", pl.Int8
    return f"q.{quoted}", dtype


def read_frame(cur: psycopg2.extensions.cursor, sql: str, params: Any, schema: dict[str, Any]) -> pl.DataFrame:
    """A query's rows as a polars frame through COPY … TO STDOUT (CSV): one pass, no Python row objects.

    ``schema`` names every column the query returns with its polars type. Timestamps
    (``pl.Datetime``, read as UTC), text arrays (``pl.List(pl.String)``; empty elements dropped)
    and booleans are converted on the way; other types are read as CSV gives them.
    """
    columns = [_as_csv(name, dtype) for name, dtype in schema.items()]
    if any(read_as != schema[name] for name, (_, read_as) in zip(schema, columns, strict=True)):
        sql = f"SELECT {', '.join(c for c, _ in columns)} FROM ({sql}) AS q"
    query = cur.mogrify(sql, params).decode()
    buffer = io.BytesIO()
    cur.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)", buffer)
    if buffer.getbuffer().nbytes == 0:
        return pl.DataFrame(schema=schema)
    buffer.seek(0)
    frame = pl.read_csv(buffer, schema={name: read_as for name, (_, read_as) in zip(schema, columns, strict=True)})
    conversions = []
    for name, dtype in schema.items():
        if isinstance(dtype, pl.Datetime):
            moment = pl.from_epoch(pl.col(name), dtype.time_unit)
            if dtype.time_zone:
                moment = moment.dt.replace_time_zone("UTC").dt.convert_time_zone(dtype.time_zone)
            conversions.append(moment)
        elif isinstance(dtype, pl.List):
            conversions.append(pl.col(name).str.split(ARRAY_SEPARATOR)
                               .list.eval(pl.element().filter(pl.element() != "")).cast(dtype))
        elif dtype == pl.Boolean:
            conversions.append(pl.col(name).cast(pl.Boolean))
    return frame.with_columns(conversions) if conversions else frame
