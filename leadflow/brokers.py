"""Brokers: the tenants. Each owns its channels' secrets.

A secret is read from what the broker's admin stored on the admin pages (``leadflow.credentials``:
sealed in PostgreSQL, opened into ``Broker.stored`` by the process that loads the broker) and, when
nothing is stored, from the environment variable ``secret_env`` names (``LEADFLOW_<SLUG>_<KIND>`` by
default), as installs did before credentials were stored. Secrets never reach Kafka or the logs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import psycopg2.extensions

from leadflow import credentials
from leadflow.config import secret
from leadflow.db.connection import transaction

# Which secrets each channel needs.
SECRET_KINDS: dict[str, tuple[str, ...]] = {
    "telegram": ("telegram_secret_token",),
    "whatsapp": ("whatsapp_app_secret", "whatsapp_verify_token"),
    "vapi": ("vapi_secret",),
    "bland": ("bland_webhook_secret",),
    "form": ("form_api_key",),
}
ALL_SECRET_KINDS = tuple(kind for kinds in SECRET_KINDS.values() for kind in kinds)

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


class BrokerError(ValueError):
    """Invalid broker registration input; the message says which field and why."""


def default_secret_env(slug: str, kind: str) -> str:
    """``acme-propiedades`` + ``telegram_secret_token`` → ``LEADFLOW_ACME_PROPIEDADES_TELEGRAM_SECRET_TOKEN``."""
    return credentials.environment_name(slug, kind)


@dataclass(frozen=True)
class Broker:
    broker_id: int
    slug: str
    name: str
    country: str
    timezone: str
    secret_env: dict[str, str] = field(default_factory=dict)
    # Opened values of the credentials stored for this broker (kind → value): never in a repr or a comparison.
    stored: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def secret_env_name(self, kind: str) -> str:
        return self.secret_env.get(kind) or default_secret_env(self.slug, kind)

    def secret(self, kind: str) -> str | None:
        """The stored value, else the environment variable's; None when the channel is not configured."""
        if kind in self.stored:
            # An empty value is a stored row no configured key opens: not configured, rather than falling back
            # to an environment variable the stored value may have replaced.
            return self.stored[kind] or None
        return secret(self.secret_env_name(kind))

    def secret_source(self, kind: str) -> str | None:
        """Where ``secret`` reads the value: "stored", "environment", or None (not configured)."""
        if kind in self.stored:
            return "stored"
        return "environment" if secret(self.secret_env_name(kind)) else None


def validate(slug: str, country: str, timezone: str, secret_env: dict[str, str]) -> None:
    if not _SLUG.match(slug):
        raise BrokerError(
            f"slug {slug!r}: use 2-63 lowercase letters, digits and dashes, starting with a letter or digit")
    if country.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise BrokerError(f"country {country!r}: use an ISO 3166 two-letter code such as CL, MX, AR, ES or US")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BrokerError(f"timezone {timezone!r}: use an IANA name such as America/Santiago") from exc
    for kind, env_name in secret_env.items():
        if kind not in ALL_SECRET_KINDS:
            raise BrokerError(f"secret {kind!r}: known secrets are {', '.join(ALL_SECRET_KINDS)}")
        if not re.match(r"^[A-Z_][A-Z0-9_]*$", env_name):
            raise BrokerError(f"secret {kind!r}: {env_name!r} is not an environment variable name")


_COLUMNS = "broker_id, slug, name, country, timezone, secret_env"


def _row_to_broker(row: tuple[object, ...]) -> Broker:
    broker_id, slug, name, country, timezone, secret_env = row
    return Broker(int(str(broker_id)), str(slug), str(name), str(country), str(timezone),
                  dict(secret_env) if isinstance(secret_env, dict) else {})


def add_broker(url: str, slug: str, *, name: str, country: str, timezone: str,
               secret_env: dict[str, str] | None = None) -> Broker:
    """Register a broker, or update its name, country, timezone and secret references."""
    secret_env = secret_env or {}
    validate(slug, country, timezone, secret_env)
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute(
            f"""
            INSERT INTO leadflow.brokers (slug, name, country, timezone, secret_env)
            VALUES (%s, %s, %s, %s, %s::jsonb)
            ON CONFLICT (slug) DO UPDATE SET name = EXCLUDED.name, country = EXCLUDED.country,
                timezone = EXCLUDED.timezone, secret_env = leadflow.brokers.secret_env || EXCLUDED.secret_env
            RETURNING {_COLUMNS}
            """,
            (slug, name, country.upper(), timezone, json.dumps(secret_env)),
        )
        row = cur.fetchone()
        assert row is not None
        return _row_to_broker(row)


def list_brokers(url: str) -> list[Broker]:
    with transaction(url) as conn, conn.cursor() as cur:
        return select_brokers(cur)


def select_brokers(cur: psycopg2.extensions.cursor,
                   stored: dict[int, dict[str, str]] | None = None) -> list[Broker]:
    """Every broker, with its opened credentials from ``stored`` (``credentials.read_all``)."""
    cur.execute(f"SELECT {_COLUMNS} FROM leadflow.brokers ORDER BY slug")
    brokers = [_row_to_broker(row) for row in cur.fetchall()]
    if stored:
        brokers = [replace(b, stored=stored.get(b.broker_id, {})) for b in brokers]
    return brokers
