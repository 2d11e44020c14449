"""Real services for the test session: an embedded PostgreSQL and a Tansu broker on loopback.

Each session gets its own database (``leadflow_test_<random>``) and its own topic prefix, so
runs never see each other's rows. ``LEADFLOW_TEST_DATABASE_URL`` (a server URL whose user may
create databases) and ``LEADFLOW_TEST_KAFKA_BOOTSTRAP_SERVERS`` point the suite at existing
services instead.
"""

from __future__ import annotations

import os
import secrets
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Before anything reads configuration: never touch the developer's .leadflow state.
_HOME = Path(tempfile.mkdtemp(prefix="leadflow-test-home-"))
os.environ["LEADFLOW_HOME"] = str(_HOME)
os.environ["DAGSTER_HOME"] = str(_HOME / "dagster")
(_HOME / "dagster").mkdir()
for _name in ("LEADFLOW_DATABASE_URL", "LEADFLOW_KAFKA_BOOTSTRAP_SERVERS", "LEADFLOW_KAFKA_TOPIC_PREFIX"):
    os.environ.pop(_name, None)

from leadflow.brokers import SECRET_KINDS, Broker, add_broker  # noqa: E402
from leadflow.config import Settings, Topics, export_environment, with_database  # noqa: E402
from leadflow.db.migrate import upgrade  # noqa: E402
from leadflow.kafka import ensure_topics  # noqa: E402
from leadflow.services import kafka as embedded_kafka  # noqa: E402
from leadflow.services import postgres as embedded_postgres  # noqa: E402
from leadflow.services.ports import free_port  # noqa: E402

# The tests whose code reads the clock the most: CI runs them a year ahead and a year back (`make test-clock-quick`;
# `make test-clock` runs everything so). Without services: slots across daylight-saving changes, what a lead's
# "mañana a las 5" means, stages and stalls, timelines ("en marzo"), quiet hours and the WhatsApp window, the bot's
# visits; with them: campaigns, bookings, answers to visits, reminders.
CLOCK_FILES = frozenset({
    "test_appointment_slots.py", "test_appointment_choice.py", "test_agent_visit_policy.py", "test_agent_policy.py",
    "test_agent_guardrails.py", "test_stages.py", "test_qualification_rules.py", "test_scoring.py",
    "test_campaign_targeting.py",
    "test_campaigns.py", "test_appointments_store.py", "test_appointment_dialog.py", "test_appointment_reminders.py"})

def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that use the real services are marked so `make test-fast` can leave them out.
    for item in items:
        if {"settings", "database_url", "kafka_bootstrap"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)
        if item.path.name in CLOCK_FILES:
            item.add_marker(pytest.mark.clock)


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = Settings.from_environment().test_database_url
    if configured:
        yield configured
        return
    data_dir = tmp_path_factory.mktemp("postgres") / "data"
    url = embedded_postgres.start(data_dir, free_port())
    yield with_database(url, "postgres")
    embedded_postgres.stop(data_dir)


@contextmanager
def new_database(pg_admin_url: str, prefix: str = "leadflow_test") -> Iterator[str]:
    """A database of its own, migrated, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    embedded_postgres.create_database(pg_admin_url, name)
    url = with_database(pg_admin_url, name)
    upgrade(url)
    yield url
    embedded_postgres.drop_database(pg_admin_url, name)


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str) -> Iterator[str]:
    with new_database(pg_admin_url) as url:
        yield url


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = Settings.from_environment().test_kafka_bootstrap_servers
    if configured:
        yield configured
        return
    address, _cluster, pid = embedded_kafka.start(tmp_path_factory.mktemp("kafka"), free_port())
    yield address
    os.kill(pid, signal.SIGTERM)


@pytest.fixture(scope="session")
def settings(database_url: str, kafka_bootstrap: str) -> Settings:
    os.environ["LEADFLOW_DATABASE_URL"] = database_url
    os.environ["LEADFLOW_KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    os.environ["LEADFLOW_KAFKA_TOPIC_PREFIX"] = f"t{uuid.uuid4().hex[:8]}"
    os.environ["LEADFLOW_KAFKA_PARTITIONS"] = "3"
    resolved = export_environment()
    ensure_topics(kafka_bootstrap, resolved.topics.all(), resolved.kafka_partitions)
    return resolved


@pytest.fixture
def fresh_topics(settings: Settings) -> Topics:
    """Topics of this test alone (for tests that count everything on a topic)."""
    topics = Topics(f"t{uuid.uuid4().hex[:8]}")
    ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_partitions)
    return topics


BrokerFactory = Callable[..., Broker]


@pytest.fixture
def make_broker(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> BrokerFactory:
    """Register a broker with a unique slug and random secrets in this test's environment."""

    def factory(country: str = "CL", timezone: str = "America/Santiago", with_secrets: bool = True) -> Broker:
        slug = f"broker-{uuid.uuid4().hex[:10]}"
        broker = add_broker(settings.database_url, slug, name=f"Test {slug}", country=country, timezone=timezone)
        if with_secrets:
            for kinds in SECRET_KINDS.values():
                for kind in kinds:
                    monkeypatch.setenv(broker.secret_env_name(kind), secrets.token_urlsafe(16))
        return broker

    return factory
