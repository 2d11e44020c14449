"""What the benchmarks put on Kafka and in PostgreSQL before they measure: inbound messages to land, and
WhatsApp sends owed to the dispatcher, each for a broker of their own."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

from leadflow.brokers import Broker, add_broker, default_secret_env
from leadflow.config import Topics
from leadflow.events import ChannelMessage, Contact, OutboundCommand
from leadflow.kafka import ensure_topics, make_producer, produce_all
from tests.outbound_world import WHATSAPP_NUMBER_ID, WHATSAPP_TOKEN, seed_whatsapp_sends

START = datetime(2026, 11, 1, tzinfo=UTC)


def _bench_broker(database_url: str) -> Broker:
    return add_broker(database_url, f"bench-{uuid.uuid4().hex[:6]}", name="Bench", country="CL",
                      timezone="America/Santiago")


def inbound_messages(database_url: str, bootstrap: str, rows: int, partitions: int = 6) -> tuple[Topics, Broker]:
    """``rows`` WhatsApp messages from 5,000 contacts on fresh topics."""
    topics = Topics(f"bench{uuid.uuid4().hex[:6]}")
    ensure_topics(bootstrap, topics.all(), partitions)
    broker = _bench_broker(database_url)
    items = []
    for i in range(rows):
        contact = f"569{i % 5000:08d}"
        event = ChannelMessage.build(
            broker_id=broker.broker_id, broker_slug=broker.slug, channel="whatsapp", provider_message_id=f"m{i}",
            conversation_id=contact, contact=Contact(channel_user_id=contact, phone_e164=f"+{contact}"),
            text="Hola, busco depto 2d2b en Ñuñoa, presupuesto 5.200 UF, tengo crédito preaprobado",
            sent_at=START + timedelta(seconds=i), raw={"from": contact, "id": f"m{i}", "type": "text"})
        items.append((event.kafka_key(), event.model_dump_json().encode()))
    produce_all(make_producer(bootstrap, linger_ms=20), topics.messages, items)
    return topics, broker


def whatsapp_sends(database_url: str, bootstrap: str, count: int, now: datetime,
                   partitions: int = 3) -> tuple[Topics, list[OutboundCommand]]:
    """``count`` due WhatsApp sends with their commands on fresh topics, for a broker whose WhatsApp credentials
    (the local fake's) are in this process's environment, which dispatchers it spawns inherit."""
    broker = _bench_broker(database_url)
    os.environ[default_secret_env(broker.slug, "whatsapp_access_token")] = WHATSAPP_TOKEN
    os.environ[default_secret_env(broker.slug, "whatsapp_phone_number_id")] = WHATSAPP_NUMBER_ID
    topics = Topics(f"bench{uuid.uuid4().hex[:6]}")
    ensure_topics(bootstrap, topics.all(), partitions)
    return topics, seed_whatsapp_sends(database_url, bootstrap, topics, broker, count, now)
