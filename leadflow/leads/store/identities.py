"""Messages without a lead → leads: created, linked by identity, merged; and what ``leads`` says of each.

Resolution itself is pure (``leadflow.leads.identity``); this module reads its inputs, writes its
links and merges, and records what each merge moved so ``leadflow.leads.merges`` can undo it.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import psycopg2.extensions

from leadflow.db.connection import transaction
from leadflow.db.copy import copy_frame, copy_rows, read_frame
from leadflow.leads.identity import LINK_SCHEMA, resolve

LOCK_LEADS = 7_240_001  # pg_advisory_xact_lock key of resolution (and of merges undone by hand)
MESSAGE_IDENTITY_SCHEMA = {"broker_id": pl.Int64, "message_id": pl.Int64, "channel": pl.String,
                           "contact_channel_id": pl.String, "contact_phone": pl.String, "contact_email": pl.String}


@dataclass
class ResolveResult:
    messages: int = 0
    new_leads: int = 0
    merges: int = 0
    touched_leads: int = 0


def resolve_new_messages(url: str, max_messages: int = 200_000) -> ResolveResult:
    """Assign messages without a lead to leads (creating and merging leads as identities say)."""
    result = ResolveResult()
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_LEADS,))
        messages = read_frame(cur, """
            SELECT m.broker_id, m.message_id, m.channel, m.contact_channel_id, m.contact_phone, m.contact_email
            FROM leadflow.raw_messages m LEFT JOIN leadflow.message_leads ml USING (message_id)
            WHERE ml.message_id IS NULL ORDER BY m.message_id LIMIT %s""", (max_messages,),
            MESSAGE_IDENTITY_SCHEMA)
        stated = _stated_identities(cur)
        if messages.is_empty() and stated.is_empty():
            return result
        brokers = sorted(set(messages["broker_id"].to_list()) | set(stated["broker_id"].to_list()))
        links = read_frame(cur, """
            SELECT broker_id, identity_kind, identity_value, lead_id, reason FROM leadflow.lead_identities
            WHERE broker_id = ANY(%s)""", (brokers,), LINK_SCHEMA)
        messages = pl.concat([messages, stated.select(messages.columns)])
        cur.execute("SELECT last_value, is_called FROM leadflow.lead_id_seq")
        last_value, is_called = cur.fetchone() or (1, False)
        first_new = int(last_value) + 1 if is_called else int(last_value)
        apart = read_frame(cur, "SELECT lead_a, lead_b FROM leadflow.lead_separations WHERE broker_id = ANY(%s)",
                       (brokers,), {"lead_a": pl.Int64, "lead_b": pl.Int64})
        resolution = resolve(messages, links, first_new, apart)
        if resolution.next_lead_id > first_new:
            cur.execute("SELECT setval('leadflow.lead_id_seq', %s)", (resolution.next_lead_id - 1,))

        new_links = resolution.links.join(links.select("broker_id", "identity_kind", "identity_value"),
                                          on=["broker_id", "identity_kind", "identity_value"], how="anti")
        new_links = new_links.with_columns(  # synthetic message ids are -lead_id: say what really happened
            pl.col("reason").str.replace(r"^first seen in message -(\d+) \(.*\)$", "stated by lead $1 in a message"))
        new_lead_ids = sorted(set(new_links["lead_id"].to_list()) - set(links["lead_id"].to_list()))
        broker_of = dict(new_links.select("lead_id", "broker_id").unique().iter_rows())
        copy_rows(cur, "leadflow.leads", ["lead_id", "broker_id"], [(i, broker_of[i]) for i in new_lead_ids])
        copy_frame(cur, "leadflow.lead_identities", new_links.select(list(LINK_SCHEMA)))
        for broker_id, merged, into, reason in resolution.merges.iter_rows():
            cur.execute("""
                INSERT INTO leadflow.lead_merges (broker_id, merged_lead_id, into_lead_id, reason, moved_identities,
                                                  moved_message_ids)
                SELECT %s, %s, %s, %s,
                       coalesce((SELECT jsonb_agg(jsonb_build_array(identity_kind, identity_value))
                                 FROM leadflow.lead_identities WHERE lead_id = %s), '[]'::jsonb),
                       coalesce((SELECT array_agg(message_id) FROM leadflow.message_leads WHERE lead_id = %s), '{}')""",
                        (broker_id, merged, into, reason, merged, merged))
            cur.execute("UPDATE leadflow.lead_identities SET lead_id = %s WHERE lead_id = %s", (into, merged))
            cur.execute("UPDATE leadflow.message_leads SET lead_id = %s WHERE lead_id = %s", (into, merged))
            # The merged lead's own qualification and score no longer describe anyone; the kept lead is redone.
            cur.execute("DELETE FROM leadflow.lead_scores WHERE lead_id = %s", (merged,))
            cur.execute("DELETE FROM leadflow.lead_qualifications WHERE lead_id = %s", (merged,))
            cur.execute("UPDATE leadflow.leads SET merged_into = %s, message_count = 0, changed_at = now() "
                        "WHERE lead_id = %s", (into, merged))
        assigned = resolution.message_leads.filter(pl.col("message_id") > 0)
        copy_frame(cur, "leadflow.message_leads", assigned.select("message_id", "broker_id", "lead_id"))
        touched = sorted(set(assigned["lead_id"].to_list())
                         | set(resolution.merges["into_lead_id"].to_list()))
        refresh_leads(cur, touched)
        result = ResolveResult(assigned.height, len(new_lead_ids), resolution.merges.height, len(touched))
    return result


def refresh_leads(cur: psycopg2.extensions.cursor, lead_ids: list[int]) -> None:
    """Recompute what ``leads`` says about each lead (name, contacts, channels, counts) from its messages."""
    cur.execute("""
        UPDATE leadflow.leads l SET
            display_name = a.display_name, phone_e164 = a.phone, email = a.email, channels = a.channels,
            message_count = a.message_count, first_message_at = a.first_at, last_message_at = a.last_at,
            changed_at = now()
        FROM (
            SELECT ml.lead_id,
                   (array_agg(m.contact_name ORDER BY m.sent_at DESC)
                        FILTER (WHERE m.contact_name IS NOT NULL))[1] AS display_name,
                   (array_agg(m.contact_phone ORDER BY m.sent_at DESC)
                        FILTER (WHERE m.contact_phone IS NOT NULL))[1] AS phone,
                   (array_agg(m.contact_email ORDER BY m.sent_at DESC)
                        FILTER (WHERE m.contact_email IS NOT NULL))[1] AS email,
                   array_agg(DISTINCT m.channel ORDER BY m.channel) AS channels,
                   count(*) AS message_count, min(m.sent_at) AS first_at, max(m.sent_at) AS last_at
            FROM leadflow.message_leads ml JOIN leadflow.raw_messages m USING (message_id)
            WHERE ml.lead_id = ANY(%s)
            GROUP BY ml.lead_id
        ) a
        WHERE l.lead_id = a.lead_id""", (lead_ids,))


def _stated_identities(cur: psycopg2.extensions.cursor) -> pl.DataFrame:
    """Phones and emails leads wrote in their messages that are not identities yet, as synthetic messages.

    Each synthetic message (id = -lead_id) names one identity the lead already has and the stated
    phone/email, so resolution links them, and merges the lead with whoever already owns them.
    """
    return read_frame(cur, """
        SELECT q.broker_id, -q.lead_id AS message_id, a.identity_kind AS channel,
               a.identity_value AS contact_channel_id,
               -- Only what is not already this lead's own: a phone that is another lead's is what merges them.
               CASE WHEN q.phone IS NOT NULL AND NOT EXISTS (
                        SELECT 1 FROM leadflow.lead_identities i WHERE i.lead_id = q.lead_id
                        AND i.identity_kind = 'phone' AND i.identity_value = q.phone) THEN q.phone END AS contact_phone,
               CASE WHEN q.email IS NOT NULL AND NOT EXISTS (
                        SELECT 1 FROM leadflow.lead_identities i WHERE i.lead_id = q.lead_id
                        AND i.identity_kind = 'email' AND i.identity_value = lower(q.email)) THEN lower(q.email)
               END AS contact_email
        FROM leadflow.lead_qualifications q JOIN leadflow.leads l USING (lead_id)
        CROSS JOIN LATERAL (SELECT identity_kind, identity_value FROM leadflow.lead_identities i
                            WHERE i.lead_id = q.lead_id ORDER BY linked_at, identity_kind LIMIT 1) a
        WHERE l.merged_into IS NULL""",
        (), MESSAGE_IDENTITY_SCHEMA,
    ).filter(pl.col("contact_phone").is_not_null() | pl.col("contact_email").is_not_null())
