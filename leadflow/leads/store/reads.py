"""Reads the lead stores share: each lead's conversation, each broker's settings, the database clock."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl
import psycopg2.extensions

from leadflow.db.copy import read_frame
from leadflow.leads.conversations import assemble

MESSAGE_SCHEMA = {"broker_id": pl.Int64, "lead_id": pl.Int64, "message_id": pl.Int64, "channel": pl.String,
                  "direction": pl.String, "body": pl.String, "sent_at": pl.Datetime("us", "UTC"), "asks": pl.String}


def conversations(cur: psycopg2.extensions.cursor, lead_filter: str) -> pl.DataFrame:
    """The assembled conversation (``conversations.assemble``) of every lead ``lead_filter`` selects."""
    messages = read_frame(cur, f"""
        SELECT ml.broker_id, ml.lead_id, m.message_id, m.channel, m.direction, m.body,
               -- Telegram and WhatsApp date messages to the second: a lead's answer and the bot's question
               -- just before it often share one. Our own receipt time, when it is that close, orders them.
               CASE WHEN m.direction = 'inbound' AND m.received_at >= m.sent_at
                         AND m.received_at < m.sent_at + interval '2 seconds'
                    THEN m.received_at ELSE m.sent_at END AS sent_at,
               m.payload -> 'leadflow' ->> 'asks' AS asks
        FROM leadflow.message_leads ml JOIN leadflow.raw_messages m USING (message_id)
        WHERE ml.lead_id IN ({lead_filter})""", (), MESSAGE_SCHEMA)
    return assemble(messages) if not messages.is_empty() else messages


def broker_settings(cur: psycopg2.extensions.cursor, column: str) -> dict[int, dict[str, Any]]:
    """One JSON column of ``broker_settings`` (llm, scoring, pipeline…), for the brokers that set it."""
    cur.execute(f"SELECT broker_id, {column} FROM leadflow.broker_settings")
    return {int(broker_id): value for broker_id, value in cur.fetchall() if value}


def countries(cur: psycopg2.extensions.cursor) -> dict[int, str]:
    cur.execute("SELECT broker_id, country FROM leadflow.brokers")
    return dict(cur.fetchall())


def db_now(cur: psycopg2.extensions.cursor) -> datetime:
    """The database's clock, the one that stamps ``leads.changed_at``: comparing the two stays exact."""
    cur.execute("SELECT now()")
    row = cur.fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment
