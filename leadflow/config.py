"""Configuration from environment variables, with one obvious default for local runs.

Every setting is read from a ``LEADFLOW_*`` variable (documented in README.md). When the
PostgreSQL URL or the Kafka bootstrap servers are not set, the embedded services started
by ``leadflow services up`` are used; their addresses are kept in the state directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


class ConfigurationError(RuntimeError):
    """A setting is missing or points at something that does not answer; the message names the fix."""


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name}={raw!r} is not a whole number") from exc


def state_dir() -> Path:
    """Where embedded services keep their data and the addresses they listen on."""
    return Path(os.environ.get("LEADFLOW_HOME", ".leadflow")).resolve()


def state_file() -> Path:
    return state_dir() / "services.json"


def read_state() -> dict[str, Any]:
    path = state_file()
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@dataclass(frozen=True)
class Topics:
    """Kafka topic names; one prefix so that a shared cluster can host several deployments."""

    prefix: str

    @property
    def messages(self) -> str:
        return f"{self.prefix}.messages.v1"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}.dead_letters.v1"

    @property
    def outbound(self) -> str:
        """Commands to send (a message, a call, a calendar event), written by campaign targeting."""
        return f"{self.prefix}.outbound.v1"

    def all(self) -> list[str]:
        return [self.messages, self.dead_letters, self.outbound]


@dataclass(frozen=True)
class Settings:
    database_url: str
    kafka_bootstrap_servers: str
    kafka_partitions: int
    topics: Topics


def to_psycopg2_url(url: str) -> str:
    for prefix in ("postgresql+psycopg2://", "postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    raise ConfigurationError(f"LEADFLOW_DATABASE_URL must be a postgresql:// URL, got scheme of {url[:20]!r}")


def to_libpq_url(url: str) -> str:
    """The URL without a SQLAlchemy driver suffix, as psycopg2.connect and psql expect it."""
    return "postgresql://" + to_psycopg2_url(url)[len("postgresql+psycopg2://") :]


def database_parts(url: str) -> dict[str, str]:
    """Host, port, user, password and database name, as dbt's profile needs them one by one."""
    parts = urlsplit(to_libpq_url(url))
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": str(parts.port or 5432),
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password or ""),
        "dbname": (parts.path or "/postgres").lstrip("/") or "postgres",
    }


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database (tests use one database per run)."""
    parts = urlsplit(to_libpq_url(url))
    return parts._replace(path="/" + dbname).geturl()


def load_settings() -> Settings:
    """Resolve the settings now: explicit environment first, then the embedded services' state."""
    state = read_state()
    db_url = os.environ.get("LEADFLOW_DATABASE_URL") or state.get("database_url", "")
    kafka = os.environ.get("LEADFLOW_KAFKA_BOOTSTRAP_SERVERS") or state.get("kafka_bootstrap_servers", "")
    if not db_url:
        raise ConfigurationError(
            "No PostgreSQL configured: set LEADFLOW_DATABASE_URL, or run `leadflow services up` "
            f"to start the embedded one (state kept in {state_dir()})."
        )
    if not kafka:
        raise ConfigurationError(
            "No Kafka configured: set LEADFLOW_KAFKA_BOOTSTRAP_SERVERS, or run `leadflow services up` "
            f"to start the embedded broker (state kept in {state_dir()})."
        )
    return Settings(
        database_url=to_libpq_url(db_url),
        kafka_bootstrap_servers=kafka,
        kafka_partitions=env_int("LEADFLOW_KAFKA_PARTITIONS", 6),
        topics=Topics(os.environ.get("LEADFLOW_KAFKA_TOPIC_PREFIX", "leadflow")),
    )


# Outbound provider APIs; tests and staging point them at local fakes.
PROVIDER_URLS = {
    "LEADFLOW_TELEGRAM_API_URL": "https://api.telegram.org",
    "LEADFLOW_WHATSAPP_API_URL": "https://graph.facebook.com/v21.0",
    "LEADFLOW_VAPI_API_URL": "https://api.vapi.ai",
    "LEADFLOW_BLAND_API_URL": "https://api.bland.ai",
    "LEADFLOW_GOOGLE_CALENDAR_API_URL": "https://www.googleapis.com/calendar/v3",
}


def provider_url(name: str) -> str:
    return (os.environ.get(name) or PROVIDER_URLS[name]).rstrip("/")


def export_environment() -> Settings:
    """Make the resolved settings visible to child processes and Dagster ``EnvVar`` fields.

    Dagster resources read ``LEADFLOW_DATABASE_URL`` and friends through ``EnvVar``; dbt reads
    the ``LEADFLOW_PG*`` parts. Filling them from the embedded state here keeps one source of truth.
    """
    for name in PROVIDER_URLS:
        os.environ[name] = provider_url(name)
    settings = load_settings()
    os.environ["LEADFLOW_DATABASE_URL"] = settings.database_url
    os.environ["LEADFLOW_KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    os.environ["LEADFLOW_KAFKA_TOPIC_PREFIX"] = settings.topics.prefix
    os.environ["LEADFLOW_DAGSTER_DATABASE_URL"] = os.environ.get("LEADFLOW_DAGSTER_DATABASE_URL") or to_psycopg2_url(
        settings.database_url)
    parts = database_parts(settings.database_url)
    os.environ["LEADFLOW_PGHOST"] = parts["host"]
    os.environ["LEADFLOW_PGPORT"] = parts["port"]
    os.environ["LEADFLOW_PGUSER"] = parts["user"]
    os.environ["LEADFLOW_PGPASSWORD"] = parts["password"]
    os.environ["LEADFLOW_PGDATABASE"] = parts["dbname"]
    return settings
