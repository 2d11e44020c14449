"""Each lead's messages in order across channels, with the lead's and the agent's turns.

Pure: a frame of messages (with their lead) in, one row per lead out, with the conversation
hash of ``leadflow.qualification.turns`` (what a qualifier reads).
"""

from __future__ import annotations

import polars as pl

from leadflow.qualification.turns import conversation_hash


def assemble(messages: pl.DataFrame) -> pl.DataFrame:
    """Columns in: broker_id, lead_id, message_id, channel, direction, body, sent_at, and optionally asks
    (what the lead agent asked in that message, from its payload).

    Out, one row per lead: broker_id, lead_id, turns (list of role/text/channel/sent_at/asks, in order),
    lead_messages, agent_messages, channels, first_message_at, last_message_at, conversation_hash.
    """
    if "asks" not in messages.columns:
        messages = messages.with_columns(pl.lit(None, dtype=pl.String).alias("asks"))
    ordered = messages.with_columns(
        pl.when(pl.col("direction") == "inbound").then(pl.lit("lead")).otherwise(pl.lit("agent")).alias("role"),
    ).sort("broker_id", "lead_id", "sent_at", "message_id")
    grouped = ordered.group_by("broker_id", "lead_id", maintain_order=True).agg(
        pl.struct(pl.col("role"), pl.col("body").alias("text"), pl.col("channel"),
                  pl.col("sent_at"), pl.col("asks")).alias("turns"),
        (pl.col("role") == "lead").sum().cast(pl.Int32).alias("lead_messages"),
        (pl.col("role") == "agent").sum().cast(pl.Int32).alias("agent_messages"),
        pl.col("channel").unique().sort().alias("channels"),
        pl.col("sent_at").min().alias("first_message_at"),
        pl.col("sent_at").max().alias("last_message_at"),
        pl.col("role").alias("_roles"),
        pl.col("body").alias("_texts"),
    )
    hashes = [conversation_hash(roles, texts) for roles, texts in grouped.select("_roles", "_texts").iter_rows()]
    return grouped.with_columns(pl.Series("conversation_hash", hashes, dtype=pl.String)).drop("_roles", "_texts")


def median_reply_minutes(turns: list[dict[str, object]]) -> float | None:
    """How fast the lead answers the agent: median minutes from an agent turn to the next lead turn."""
    gaps: list[float] = []
    waiting_since = None
    for turn in turns:
        if turn["role"] == "agent":
            waiting_since = waiting_since or turn["sent_at"]
        elif waiting_since is not None:
            gaps.append((turn["sent_at"] - waiting_since).total_seconds() / 60)  # type: ignore[operator]
            waiting_since = None
    if not gaps:
        return None
    gaps.sort()
    middle = len(gaps) // 2
    return gaps[middle] if len(gaps) % 2 else (gaps[middle - 1] + gaps[middle]) / 2
