"""The lead agent in PostgreSQL: each broker's agent settings, and who answers each lead (bot or person).

A person takes a lead over (the bot stops answering it at once) and releases it back; the agent
process (to come) will record its own handoffs here too. Every switch is a row of
``lead_handlers`` with who made it and why; a lead's newest row says who answers it now, and a lead
with none is the bot's. Everything is scoped to one broker: a lead or a person of another broker
is refused, and nothing is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg2.extensions

from leadflow.agent.config import AgentConfig, AgentConfigError
from leadflow.db.connection import transaction

Handler = Literal["bot", "person"]


class AgentError(ValueError):
    """The switch or the settings cannot be made as asked; the message says why and nothing was written."""


@dataclass(frozen=True)
class Switch:
    lead_id: int
    handler: Handler
    user_email: str | None  # None: the bot itself
    reason: str
    switched_at: datetime


def save_agent_settings(url: str, broker_slug: str, settings: dict[str, Any]) -> AgentConfig:
    """Validate and store a broker's agent settings (the next message the agent reads uses them)."""
    with transaction(url) as conn, conn.cursor() as cur:
        broker_id, country = _broker(cur, broker_slug)
        try:
            config = AgentConfig.from_settings(settings, country)
        except AgentConfigError as exc:
            raise AgentError(f"{broker_slug}: {exc}") from exc
        cur.execute("""INSERT INTO leadflow.broker_settings (broker_id, agent) VALUES (%s, %s)
                       ON CONFLICT (broker_id) DO UPDATE SET agent = EXCLUDED.agent""",
                    (broker_id, json.dumps(settings)))
    return config


def agent_configs(cur: psycopg2.extensions.cursor) -> dict[int, AgentConfig]:
    """Every broker's agent settings (defaults, with the bot off, for a broker that set none)."""
    cur.execute("""SELECT b.broker_id, b.country, s.agent FROM leadflow.brokers b
                   LEFT JOIN leadflow.broker_settings s USING (broker_id)""")
    return {int(broker_id): AgentConfig.from_settings(agent or {}, country) for broker_id, country, agent
            in cur.fetchall()}


def take_over(url: str, broker_slug: str, lead_id: int, by_email: str, reason: str = "taken over") -> Switch:
    """A person of the broker answers this lead from now on; the bot stops at once."""
    return _switch(url, broker_slug, lead_id, "person", by_email, reason)


def release(url: str, broker_slug: str, lead_id: int, by_email: str, reason: str = "released") -> Switch:
    """The person gives the lead back to the bot."""
    return _switch(url, broker_slug, lead_id, "bot", by_email, reason)


def handlers(cur: psycopg2.extensions.cursor, lead_ids: list[int]) -> dict[int, Handler]:
    """Who answers each lead now; a lead never switched is the bot's."""
    cur.execute("""SELECT DISTINCT ON (lead_id) lead_id, handler FROM leadflow.lead_handlers
                   WHERE lead_id = ANY(%s) ORDER BY lead_id, switch_id DESC""", (lead_ids,))
    found: dict[int, Handler] = dict(cur.fetchall())
    return {lead_id: found.get(lead_id, "bot") for lead_id in lead_ids}


def history(url: str, broker_slug: str, lead_id: int) -> list[Switch]:
    """Every switch of one of the broker's leads, oldest first."""
    with transaction(url) as conn, conn.cursor() as cur:
        broker_id, _ = _broker(cur, broker_slug)
        _live_lead(cur, broker_id, lead_id, broker_slug)
        cur.execute("""SELECT h.lead_id, h.handler, u.email, h.reason, h.switched_at
                       FROM leadflow.lead_handlers h LEFT JOIN leadflow.users u USING (user_id)
                       WHERE h.broker_id = %s AND h.lead_id = %s ORDER BY h.switch_id""", (broker_id, lead_id))
        return [Switch(*row) for row in cur.fetchall()]


def _switch(url: str, broker_slug: str, lead_id: int, handler: Handler, by_email: str, reason: str) -> Switch:
    if not reason.strip():
        raise AgentError("say why (a reason is recorded with every switch)")
    with transaction(url) as conn, conn.cursor() as cur:
        broker_id, _ = _broker(cur, broker_slug)
        _live_lead(cur, broker_id, lead_id, broker_slug)
        cur.execute("""SELECT user_id, broker_id, role, disabled FROM leadflow.users
                       WHERE lower(email) = lower(%s)""", (by_email,))
        user = cur.fetchone()
        if user is None or user[3]:
            raise AgentError(f"no active user {by_email!r}")
        if user[2] != "SUPERADMIN" and user[1] != broker_id:
            raise AgentError(f"{by_email} is not a user of {broker_slug}")
        # Serialises switches of one lead, so two people taking it at once leave one clear order.
        cur.execute("SELECT lead_id FROM leadflow.leads WHERE lead_id = %s FOR UPDATE", (lead_id,))
        cur.execute("""INSERT INTO leadflow.lead_handlers (broker_id, lead_id, handler, user_id, reason)
                       VALUES (%s, %s, %s, %s, %s) RETURNING switched_at""",
                    (broker_id, lead_id, handler, user[0], reason.strip()))
        row = cur.fetchone()
        assert row is not None
        return Switch(lead_id, handler, by_email.lower(), reason.strip(), row[0])


def _broker(cur: psycopg2.extensions.cursor, slug: str) -> tuple[int, str]:
    cur.execute("SELECT broker_id, country FROM leadflow.brokers WHERE slug = %s", (slug,))
    row = cur.fetchone()
    if row is None:
        raise AgentError(f"no broker {slug!r} (leadflow brokers list)")
    return int(row[0]), str(row[1])


def _live_lead(cur: psycopg2.extensions.cursor, broker_id: int, lead_id: int, slug: str) -> None:
    cur.execute("SELECT merged_into FROM leadflow.leads WHERE lead_id = %s AND broker_id = %s", (lead_id, broker_id))
    row = cur.fetchone()
    if row is None:
        raise AgentError(f"{slug} has no lead {lead_id}")
    if row[0] is not None:
        raise AgentError(f"lead {lead_id} was merged into lead {row[0]}; switch that one")
