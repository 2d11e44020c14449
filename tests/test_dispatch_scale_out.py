"""Several dispatchers at once: they split the outbound topic and the due sends, and each send goes out once.

The sends' leads are bare rows (no messages), which the funnel models refuse: they live in a database of
their own, not the session's, which dbt builds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from leadflow.brokers import add_broker
from leadflow.config import Settings, Topics
from leadflow.db.connection import connect
from tests.conftest import new_database
from tests.fake_channels import FakeChannels, Reply
from tests.outbound_world import WHATSAPP_NUMBER_ID, WHATSAPP_TOKEN, seed_whatsapp_sends


@pytest.fixture
def own_database(pg_admin_url: str) -> Iterator[str]:
    with new_database(pg_admin_url, "leadflow_sends") as url:
        yield url


@pytest.mark.parametrize("count", [2, 3])
def test_dispatchers_running_at_once_send_each_send_once(count: int, settings: Settings, fresh_topics: Topics,
                                                         own_database: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    broker = add_broker(own_database, f"sends-{uuid.uuid4().hex[:8]}", name="Sends", country="CL",
                        timezone="America/Santiago")
    monkeypatch.setenv(broker.secret_env_name("whatsapp_access_token"), WHATSAPP_TOKEN)
    monkeypatch.setenv(broker.secret_env_name("whatsapp_phone_number_id"), WHATSAPP_NUMBER_ID)
    # Now: the sends are due, and inside the WhatsApp window (a text, not a template).
    commands = seed_whatsapp_sends(own_database, settings.kafka_bootstrap_servers, fresh_topics, broker, 600,
                                   datetime.now(UTC))
    fake = FakeChannels().start()
    # 10 ms a send: one dispatcher alone would need 6 s, so each process started finds work left.
    fake.script("whatsapp", *[Reply(delay_s=0.01)] * len(commands))
    try:
        env = {**os.environ, "LEADFLOW_KAFKA_TOPIC_PREFIX": fresh_topics.prefix, "LEADFLOW_WHATSAPP_API_URL": fake.url,
               "LEADFLOW_DATABASE_URL": own_database}
        dispatchers = [subprocess.Popen([sys.executable, "-m", "leadflow.cli", "dispatch"], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                       for _ in range(count)]
        said = [d.communicate(timeout=180) for d in dispatchers]
        assert all(d.returncode == 0 for d in dispatchers), said
        received = Counter(body["to"] for body in fake.sent("whatsapp"))
    finally:
        fake.stop()
    assert received == Counter(c.payload["to"] for c in commands)  # each once, none missing
    sent = [int(out.split(": ", 1)[1].split(" sent")[0]) for out, _ in said]
    assert sum(sent) == len(commands) and all(sent), said  # every dispatcher did a share
    conn = connect(own_database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT status, count(*) FROM leadflow.outbound_sends WHERE broker_id = %s GROUP BY status",
                        (broker.broker_id,))
            assert dict(cur.fetchall()) == {"sent": len(commands)}
    finally:
        conn.close()
