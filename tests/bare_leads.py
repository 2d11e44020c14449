"""Leads written straight into the table, each with the first message landing would have given it.

Tests that book visits for leads they insert by hand share the session's database with the tests that run the
funnel's dbt build, which refuses a lead without a first contact (``int_leads_sourced``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import psycopg2.extensions


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
