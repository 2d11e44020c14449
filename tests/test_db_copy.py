"""COPY in and out: what goes in through the one row encoder comes back through the one frame reader."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl

from leadflow.db.connection import transaction
from leadflow.db.copy import copy_frame, copy_line, copy_rows, pg_array, read_frame

AWKWARD = "tab\there, line\nbreak, back\\slash, quote \" and comma, NUL\x00gone, ñuñoa"
MOMENT = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
SCHEMA: dict[str, Any] = {"id": pl.Int64, "body": pl.String, "at": pl.Datetime("us", "UTC"), "tags": pl.List(pl.String),
          "flag": pl.Boolean, "amount": pl.Float64}


def test_the_row_encoder_escapes_separators_and_drops_nul() -> None:
    assert copy_line([1, None, "a\tb\\c\nd\x00"]) == "1\t\\N\ta\\tb\\\\c\\nd\n"


def test_rows_and_frames_round_trip_through_copy(database_url: str) -> None:
    with transaction(database_url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE trip (id bigint, body text, at timestamptz, tags text[], flag boolean, "
                    "amount float8)")
        copy_rows(cur, "trip", list(SCHEMA), [
            (1, AWKWARD, MOMENT, pg_array(["a,b", 'c"d', "ñ"]), True, 5200.5),
            (2, "", None, pg_array([]), False, None),
            (3, None, MOMENT, None, None, 0.0),
        ])
        copy_frame(cur, "trip", pl.DataFrame({"id": [4], "body": ["from a frame"], "at": [MOMENT]}))
        frame = read_frame(cur, "SELECT id, body, at, tags, flag, amount FROM trip ORDER BY id", (), SCHEMA)
    assert frame.schema == pl.Schema(SCHEMA)
    rows = frame.rows(named=True)
    assert rows[0] == {"id": 1, "body": AWKWARD.replace("\x00", ""), "at": MOMENT, "tags": ["a,b", 'c"d', "ñ"],
                       "flag": True, "amount": 5200.5}
    assert rows[1] == {"id": 2, "body": "", "at": None, "tags": [], "flag": False, "amount": None}
    assert (rows[2]["body"], rows[2]["tags"], rows[2]["flag"]) == (None, None, None)
    assert (rows[3]["body"], rows[3]["at"]) == ("from a frame", MOMENT)


def test_an_empty_result_is_an_empty_frame_of_the_schema(database_url: str) -> None:
    with transaction(database_url) as conn, conn.cursor() as cur:
        frame = read_frame(cur, "SELECT 1::bigint AS id, ''::text AS body, now() AS at, '{}'::text[] AS tags, "
                                "true AS flag, 1.0::float8 AS amount WHERE false", (), SCHEMA)
    assert frame.is_empty() and frame.schema == pl.Schema(SCHEMA)
