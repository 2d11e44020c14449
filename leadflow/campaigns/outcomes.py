"""Closing the loop: what became of each send, and each campaign's figures.

WhatsApp receipts (delivered, read, failed) land as ``delivery_statuses`` through the backbone and
are matched to sends by the provider's message id; a reply is the lead's first message on any
channel after the send. Each send's ``status`` is the furthest it got: sent → delivered → read →
replied (or failed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg2.extensions

from leadflow.db.connection import transaction

REPLY_WINDOW_DAYS = 7  # a message later than this is not an answer to the send
ADVANCE_WINDOW_DAYS = 30  # a stage advance this long after a touch counts for the campaign


@dataclass
class LoopResult:
    delivered: int = 0
    read: int = 0
    failed: int = 0
    replied: int = 0


def close_the_loop(url: str, broker_id: int | None = None) -> LoopResult:
    """Match receipts and replies to sends (of one broker, or all)."""
    result = LoopResult()
    only = {"broker": broker_id}
    with transaction(url) as conn, conn.cursor() as cur:
        for receipt, column in (("delivered", "delivered_at"), ("read", "read_at")):
            cur.execute(f"""
                UPDATE leadflow.outbound_sends s SET {column} = d.status_at, updated_at = now()
                FROM leadflow.delivery_statuses d
                WHERE s.{column} IS NULL AND s.provider_message_id IS NOT NULL AND d.broker_id = s.broker_id
                  AND d.channel = s.channel AND d.provider_message_id = s.provider_message_id
                  AND d.status = %(receipt)s AND (%(broker)s::bigint IS NULL OR s.broker_id = %(broker)s)""",
                        {**only, "receipt": receipt})
            setattr(result, receipt, cur.rowcount)
        cur.execute("""
            UPDATE leadflow.outbound_sends s
            SET status = 'failed', reason = coalesce(d.error, 'the provider reported the message failed'),
                updated_at = now()
            FROM leadflow.delivery_statuses d
            WHERE s.status = 'sent' AND s.delivered_at IS NULL AND d.broker_id = s.broker_id AND d.channel = s.channel
              AND d.provider_message_id = s.provider_message_id AND d.status = 'failed'
              AND (%(broker)s::bigint IS NULL OR s.broker_id = %(broker)s)""", only)
        result.failed = cur.rowcount
        cur.execute("""
            UPDATE leadflow.outbound_sends s SET replied_at = r.replied_at, updated_at = now()
            FROM (
                SELECT s.send_id, min(m.sent_at) AS replied_at
                FROM leadflow.outbound_sends s
                JOIN leadflow.message_leads ml ON ml.lead_id = s.lead_id
                JOIN leadflow.raw_messages m ON m.message_id = ml.message_id
                WHERE s.replied_at IS NULL AND s.sent_at IS NOT NULL AND s.channel IN ('whatsapp', 'telegram')
                  AND m.direction = 'inbound' AND m.sent_at > s.sent_at
                  AND m.sent_at <= s.sent_at + make_interval(days => %(days)s)
                  AND (%(broker)s::bigint IS NULL OR s.broker_id = %(broker)s)
                GROUP BY s.send_id
            ) r
            WHERE s.send_id = r.send_id""", {**only, "days": REPLY_WINDOW_DAYS})
        result.replied = cur.rowcount
        cur.execute("""
            UPDATE leadflow.outbound_sends SET status = CASE WHEN replied_at IS NOT NULL THEN 'replied'
                                                             WHEN read_at IS NOT NULL THEN 'read'
                                                             ELSE 'delivered' END
            WHERE status IN ('sent', 'delivered', 'read')
              AND (replied_at IS NOT NULL OR read_at IS NOT NULL OR delivered_at IS NOT NULL)
              AND (%(broker)s::bigint IS NULL OR broker_id = %(broker)s)""", only)
    return result


STATS_SQL = """
    WITH sends AS (
        SELECT s.*, c.name AS campaign FROM leadflow.outbound_sends s JOIN leadflow.campaigns c USING (campaign_id)
        WHERE (%(broker)s::bigint IS NULL OR s.broker_id = %(broker)s)
    ), touched AS (
        SELECT campaign_id, lead_id, min(sent_at) AS first_touch FROM sends WHERE sent_at IS NOT NULL
        GROUP BY campaign_id, lead_id
    ), advanced AS (
        SELECT t.campaign_id, count(DISTINCT t.lead_id) AS leads
        FROM touched t JOIN leadflow.stage_events e ON e.lead_id = t.lead_id
        WHERE e.occurred_at > t.first_touch AND e.occurred_at <= t.first_touch + make_interval(days => %(window)s)
          AND e.to_stage <> 'perdido'
        GROUP BY t.campaign_id
    )
    SELECT s.broker_id, s.campaign_id, s.campaign,
           count(*) FILTER (WHERE s.sent_at IS NOT NULL) AS sent,
           count(*) FILTER (WHERE s.delivered_at IS NOT NULL) AS delivered,
           count(*) FILTER (WHERE s.read_at IS NOT NULL) AS read,
           count(*) FILTER (WHERE s.replied_at IS NOT NULL) AS replied,
           count(*) FILTER (WHERE s.status = 'failed') AS failed,
           count(*) FILTER (WHERE s.status = 'skipped') AS skipped,
           count(*) FILTER (WHERE s.status IN ('pending', 'sending')) AS pending,
           count(*) FILTER (WHERE s.status NOT IN ('skipped', 'pending', 'sending')) AS attempted,
           coalesce(max(a.leads), 0) AS advanced_after_touch
    FROM sends s LEFT JOIN advanced a USING (campaign_id)
    GROUP BY s.broker_id, s.campaign_id, s.campaign
    ORDER BY s.broker_id, s.campaign_id
"""


def campaign_stats(url: str, broker_id: int | None = None) -> list[dict[str, Any]]:
    """Per campaign: sent, delivered, read, replied, failed, skipped, pending, success and reply rates,
    and the leads that advanced a stage within ``ADVANCE_WINDOW_DAYS`` of their first touch."""
    with transaction(url) as conn, conn.cursor() as cur:
        return read_campaign_stats(cur, broker_id)


def read_campaign_stats(cur: psycopg2.extensions.cursor, broker_id: int | None) -> list[dict[str, Any]]:
    """``campaign_stats`` on a cursor the caller scoped (the reports API reads under row security)."""
    cur.execute(STATS_SQL, {"broker": broker_id, "window": ADVANCE_WINDOW_DAYS})
    names = [d[0] for d in cur.description or []]
    stats = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    for s in stats:
        # Success: tried and not failed (at the provider or by a receipt); replies are the stronger signal.
        attempted = s.pop("attempted")
        s["success_rate"] = round((attempted - s["failed"]) / attempted, 4) if attempted else None
        s["reply_rate"] = round(s["replied"] / s["sent"], 4) if s["sent"] else None
    return stats
