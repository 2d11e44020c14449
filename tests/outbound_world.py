"""WhatsApp sends owed by one campaign, as targeting leaves them: pending rows plus their commands on Kafka.

Shared by the dispatcher's tests and its benchmark. The leads are bare rows without messages, which the funnel
models refuse (a lead always has a first contact): keep them out of databases dbt builds.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from leadflow.brokers import Broker
from leadflow.campaigns.store import save_campaign
from leadflow.config import Topics
from leadflow.db.connection import transaction
from leadflow.events import OutboundCommand
from leadflow.kafka import make_producer, produce_all

# What tests/fake_channels.py's WhatsApp accepts.
WHATSAPP_TOKEN = "wa-token-not-a-secret"
WHATSAPP_NUMBER_ID = "1098765"


def seed_whatsapp_sends(database_url: str, bootstrap: str, topics: Topics, broker: Broker, count: int,
                        now: datetime) -> list[OutboundCommand]:
    """``count`` leads, one pending WhatsApp send each (inside the 24-hour window), commands produced."""
    campaign_id = save_campaign(database_url, broker.slug, f"sends-{uuid.uuid4().hex[:6]}", {
        "trigger": {"type": "manual"}, "steps": [{"action": "message", "template": "Hola {{first_name}}"}]},
        status="active")
    commands = []
    with transaction(database_url) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.leads (lead_id, broker_id)
                       SELECT nextval('leadflow.lead_id_seq'), %s FROM generate_series(1, %s) RETURNING lead_id""",
                    (broker.broker_id, count))
        leads = [row[0] for row in cur.fetchall()]
        payloads = [{"to": f"5699{i:07d}", "text": f"Hola {i}, ¿vemos opciones esta semana?",
                     "last_inbound_at": now.isoformat(), "campaign": "sends", "broker_slug": broker.slug}
                    for i in range(count)]
        cur.execute("""
            INSERT INTO leadflow.outbound_sends (broker_id, campaign_id, lead_id, step, action, channel, status,
                                                 payload, next_attempt_at, created_at, updated_at)
            SELECT %s, %s, l, 0, 'message', 'whatsapp', 'pending', p::jsonb, %s, %s, %s
            FROM unnest(%s::bigint[], %s::text[]) AS u(l, p) RETURNING send_id, lead_id, payload""",
                    (broker.broker_id, campaign_id, now, now, now, leads, [json.dumps(p) for p in payloads]))
        for send_id, lead_id, payload in cur.fetchall():
            commands.append(OutboundCommand.build(send_id=send_id, broker_id=broker.broker_id,
                                                  broker_slug=broker.slug, campaign_id=campaign_id, lead_id=lead_id,
                                                  step=0, action="message", channel="whatsapp", payload=payload,
                                                  created_at=now))
    produce_all(make_producer(bootstrap), topics.outbound,
                [(c.kafka_key(), c.model_dump_json().encode()) for c in commands])
    return commands
