"""Leads as identity resolution leaves them, written straight to PostgreSQL for tests that need a lead fast: the
lead, one landed message linked to it and, given a contact, the identity the agent finds it by.

A lead without any message would be a lead no channel ever brought: the analytics' tests that build the dbt
models over the session's database read every lead's first contact, so tests make none of those."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import psycopg2.extensions

from leadflow.db.connection import transaction


def lead_with_a_message(database_url: str, broker_id: int, channel: str = "telegram", contact: str | None = None,
                        at: datetime | None = None) -> int:
    sent = at or datetime.now(UTC) - timedelta(minutes=5)
    with transaction(database_url) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.leads (lead_id, broker_id) VALUES (nextval('leadflow.lead_id_seq'), %s)
                       RETURNING lead_id""", (broker_id,))
        lead_id = int(cur.fetchone()[0])  # type: ignore[index]
        cur.execute("""INSERT INTO leadflow.raw_messages (broker_id, event_id, channel, provider_message_id,
                                                          contact_channel_id, direction, message_type, body, sent_at,
                                                          received_at, schema_version, payload, kafka_topic,
                                                          kafka_partition, kafka_offset)
                       VALUES (%s, gen_random_uuid(), %s, %s, %s, 'inbound', 'text', 'hola', %s, %s, 1, '{}',
                               'tests', 0, %s) RETURNING message_id""",
                    (broker_id, channel, f"test-lead-{lead_id}", contact, sent, sent, lead_id))
        message_id = cur.fetchone()[0]  # type: ignore[index]
        cur.execute("INSERT INTO leadflow.message_leads (message_id, broker_id, lead_id) VALUES (%s, %s, %s)",
                    (message_id, broker_id, lead_id))
        if contact is not None:
            cur.execute("""INSERT INTO leadflow.lead_identities (broker_id, identity_kind, identity_value, lead_id,
                                                                 reason) VALUES (%s, %s, %s, %s, 'test')""",
                        (broker_id, channel, contact, lead_id))
    return lead_id


def leads_with_a_message(database_url: str, broker_id: int, count: int) -> list[int]:
    return [lead_with_a_message(database_url, broker_id) for _ in range(count)]


# In the caller's transaction: leads it inserted itself (with names, phones, channels), each given its first message.
def give_first_messages(cur: psycopg2.extensions.cursor, broker_id: int, lead_ids: Sequence[int],
                        at: datetime) -> None:
    cur.execute("""WITH m AS (
                       INSERT INTO leadflow.raw_messages (broker_id, event_id, channel, provider_message_id,
                           contact_channel_id, direction, message_type, body, sent_at, received_at, schema_version,
                           payload, kafka_topic, kafka_partition, kafka_offset)
                       SELECT %s, gen_random_uuid(), 'whatsapp', 'bare-lead-' || l, l::text, 'inbound', 'text',
                              'hola', %s, %s, 1, '{}', 'test', 0, 0
                       FROM unnest(%s::bigint[]) AS l RETURNING message_id, contact_channel_id)
                   INSERT INTO leadflow.message_leads (message_id, broker_id, lead_id)
                   SELECT message_id, %s, contact_channel_id::bigint FROM m""",
                (broker_id, at, at, list(lead_ids), broker_id))
