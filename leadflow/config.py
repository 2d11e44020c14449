"""Configuration: the one module that reads the environment.

``Settings`` holds every ``LEADFLOW_*`` variable (each listed in README.md's table, which a test
keeps in step with it), typed and validated with a message naming the variable. Entry points (the
CLI, the API factories, Dagster's resources, the tests) build it with ``Settings.from_environment()``
and pass it, or the values they need, down. When the PostgreSQL URL or the Kafka bootstrap servers
are not set, ``load_settings()`` fills them from the embedded services that ``leadflow services
up`` started, whose addresses are kept in the state directory.

Per-broker channel secrets (``LEADFLOW_<SLUG>_<SECRET>``) and LLM keys (``LEADFLOW_<PROVIDER>_*``)
are families, not fields: ``secret()`` reads one by name when it is needed, and nothing else
outside this module touches ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ConfigurationError(RuntimeError):
    """A setting is missing or points at something that does not answer; the message names the fix."""


def state_dir() -> Path:
    """Where embedded services keep their data and the addresses they listen on (``LEADFLOW_HOME``)."""
    return Settings.from_environment().state_dir


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




# Outbound provider APIs; tests and staging point them at local fakes.
PROVIDER_URLS = {
    "LEADFLOW_TELEGRAM_API_URL": "https://api.telegram.org",
    "LEADFLOW_WHATSAPP_API_URL": "https://graph.facebook.com/v21.0",
    "LEADFLOW_VAPI_API_URL": "https://api.vapi.ai",
    "LEADFLOW_BLAND_API_URL": "https://api.bland.ai",
    "LEADFLOW_GOOGLE_CALENDAR_API_URL": "https://www.googleapis.com/calendar/v3",
    "LEADFLOW_GOOGLE_OAUTH_AUTH_URL": "https://accounts.google.com/o/oauth2/v2/auth",
    "LEADFLOW_GOOGLE_OAUTH_TOKEN_URL": "https://oauth2.googleapis.com/token",
}


# Never echoed in a validation error.
_HIDDEN = frozenset({"LEADFLOW_REPORTS_JWT_SECRET", "LEADFLOW_REPORTS_DB_PASSWORD", "LEADFLOW_MASTER_KEY",
                     "LEADFLOW_MASTER_KEYS_PREVIOUS", "LEADFLOW_GOOGLE_OAUTH_CLIENT_SECRET"})


def _env(name: str, description: str, default: Any = None, **constraints: Any) -> Any:
    return Field(default, alias=name, description=description, **constraints)


class Settings(BaseModel):
    """Every setting of Leadflow, one field per environment variable (the field's alias)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    home: Path = _env("LEADFLOW_HOME", "state of the embedded services", Path(".leadflow"))
    dagster_home: Path | None = _env("DAGSTER_HOME", "Dagster instance directory; default $LEADFLOW_HOME/dagster")
    # URLs may hold a password: kept out of repr (tracebacks, logs).
    database_url: str = _env("LEADFLOW_DATABASE_URL", "application PostgreSQL; empty: the embedded one", "",
                             repr=False)
    kafka_bootstrap_servers: str = _env("LEADFLOW_KAFKA_BOOTSTRAP_SERVERS", "Kafka; empty: the embedded broker", "")
    kafka_topic_prefix: str = _env("LEADFLOW_KAFKA_TOPIC_PREFIX", "prefix of every topic", "leadflow",
                                   pattern=r"^[A-Za-z0-9._-]+$")
    kafka_partitions: int = _env("LEADFLOW_KAFKA_PARTITIONS", "partitions of topics created at start-up", 6, ge=1)
    dagster_database_url: str = _env("LEADFLOW_DAGSTER_DATABASE_URL", "Dagster's storage; default the app database",
                                     "", repr=False)
    embedded_pg_port: int | None = _env("LEADFLOW_EMBEDDED_PG_PORT", "fixed port of the embedded PostgreSQL",
                                        ge=1, le=65535)
    embedded_kafka_port: int | None = _env("LEADFLOW_EMBEDDED_KAFKA_PORT", "fixed port of the embedded broker",
                                           ge=1, le=65535)
    # s3: the embedded broker's log lives in SeaweedFS under $LEADFLOW_HOME and survives restarts.
    kafka_storage: str = _env("LEADFLOW_KAFKA_STORAGE", "log storage of the embedded broker: s3 or memory", "s3",
                              pattern=r"^(s3|memory)$")
    ingest_host: str = _env("LEADFLOW_INGEST_HOST", "where the ingest API listens", "127.0.0.1")
    ingest_port: int = _env("LEADFLOW_INGEST_PORT", "port of the ingest API", 8000, ge=1, le=65535)
    ingest_ack_timeout_s: float = _env("LEADFLOW_INGEST_ACK_TIMEOUT_S", "how long a webhook waits for Kafka's "
                                       "acknowledgement before it is answered 503", 10.0, gt=0)
    reports_host: str = _env("LEADFLOW_REPORTS_HOST", "where the reports API listens", "127.0.0.1")
    reports_port: int = _env("LEADFLOW_REPORTS_PORT", "port of the reports API", 8100, ge=1, le=65535)
    dagster_port: int = _env("LEADFLOW_DAGSTER_PORT", "port of the Dagster UI of `make up`", 3000, ge=1, le=65535)
    reports_jwt_secret: str = _env("LEADFLOW_REPORTS_JWT_SECRET", "HS256 key of the reports API's tokens", "",
                                   repr=False)
    reports_token_minutes: int = _env("LEADFLOW_REPORTS_TOKEN_MINUTES", "lifetime of an access token", 60, ge=1)
    reports_login_attempts: int = _env("LEADFLOW_REPORTS_LOGIN_ATTEMPTS", "logins per window", 5, ge=1)
    reports_login_window_s: int = _env("LEADFLOW_REPORTS_LOGIN_WINDOW_S", "login window, seconds", 60, ge=1)
    reports_pool_size: int = _env("LEADFLOW_REPORTS_POOL_SIZE", "reports API connections", 8, ge=1)
    inbox_counts_ttl_s: float = _env("LEADFLOW_INBOX_COUNTS_TTL_S", "how long the inbox's counts are kept, s", 10.0,
                                     ge=0, le=3600)
    import_max_mb: int = _env("LEADFLOW_IMPORT_MAX_MB", "largest CSV the workspace imports, MB", 32, ge=1, le=1024)
    bcrypt_rounds: int = _env("LEADFLOW_BCRYPT_ROUNDS", "bcrypt work factor of new hashes", 12, ge=4, le=16)
    dbt_docs_dir: Path | None = _env("LEADFLOW_DBT_DOCS_DIR", "dbt docs site; default $LEADFLOW_HOME/dbt-docs")
    # Checked loosely here (the message names the variable early); reports_api.proxies parses each address.
    trusted_proxies: str = _env("LEADFLOW_TRUSTED_PROXIES", "reverse proxies whose X-Forwarded-For the reports API "
                                "believes: addresses or networks, comma-separated; empty: none", "",
                                pattern=r"^[0-9A-Fa-f:.,/ ]*$")
    cookie_secure: bool | None = _env("LEADFLOW_COOKIE_SECURE", "Secure flag of the dashboard's session cookie; "
                                      "unset: on unless LEADFLOW_REPORTS_HOST is a loopback address")
    # Printable ASCII only: the reports API hashes it for PostgreSQL itself (SCRAM), without SASLprep.
    reports_db_password: str = _env("LEADFLOW_REPORTS_DB_PASSWORD", "password of leadflow_reports_login, the "
                                    "PostgreSQL login of the reports API; unset: a fixed local one when the database "
                                    "is on loopback, required otherwise", "", repr=False, pattern=r"^[!-~]*$")
    master_key: str = _env("LEADFLOW_MASTER_KEY", "the key channel credentials stored in PostgreSQL are sealed under "
                           "(32 bytes, base64: `leadflow credentials new-key`); unset: a key generated into "
                           "$LEADFLOW_HOME/master.key when the database is on loopback, required otherwise", "",
                           repr=False)
    master_keys_previous: str = _env("LEADFLOW_MASTER_KEYS_PREVIOUS", "earlier master keys, comma-separated, that "
                                     "still open credentials until `leadflow credentials rotate` re-seals them", "",
                                     repr=False)
    credentials_refresh_s: float = _env("LEADFLOW_CREDENTIALS_REFRESH_S", "how often a process looks for changed "
                                        "brokers and channel credentials, seconds", 2.0, gt=0, le=300)
    ingest_public_url: str = _env("LEADFLOW_INGEST_PUBLIC_URL", "the ingest API's address as providers reach it "
                                  "(the webhook URLs the admin pages show and give Telegram's setWebhook); empty: "
                                  "http://LEADFLOW_INGEST_HOST:LEADFLOW_INGEST_PORT", "",
                                  pattern=r"^(https?://[^\s]+)?$")
    test_database_url: str = _env("LEADFLOW_TEST_DATABASE_URL", "a server the test suite creates its database on", "",
                                  repr=False)
    test_kafka_bootstrap_servers: str = _env("LEADFLOW_TEST_KAFKA_BOOTSTRAP_SERVERS", "Kafka for the test suite", "")
    telegram_api_url: str = _env("LEADFLOW_TELEGRAM_API_URL", "Telegram Bot API",
                                 PROVIDER_URLS["LEADFLOW_TELEGRAM_API_URL"])
    whatsapp_api_url: str = _env("LEADFLOW_WHATSAPP_API_URL", "WhatsApp Cloud API",
                                 PROVIDER_URLS["LEADFLOW_WHATSAPP_API_URL"])
    vapi_api_url: str = _env("LEADFLOW_VAPI_API_URL", "VAPI", PROVIDER_URLS["LEADFLOW_VAPI_API_URL"])
    bland_api_url: str = _env("LEADFLOW_BLAND_API_URL", "Bland AI", PROVIDER_URLS["LEADFLOW_BLAND_API_URL"])
    google_calendar_api_url: str = _env("LEADFLOW_GOOGLE_CALENDAR_API_URL", "Google Calendar API",
                                        PROVIDER_URLS["LEADFLOW_GOOGLE_CALENDAR_API_URL"])
    google_oauth_auth_url: str = _env("LEADFLOW_GOOGLE_OAUTH_AUTH_URL", "Google's OAuth authorization endpoint",
                                      PROVIDER_URLS["LEADFLOW_GOOGLE_OAUTH_AUTH_URL"])
    google_oauth_token_url: str = _env("LEADFLOW_GOOGLE_OAUTH_TOKEN_URL", "Google's OAuth token endpoint",
                                       PROVIDER_URLS["LEADFLOW_GOOGLE_OAUTH_TOKEN_URL"])
    google_oauth_client_id: str = _env("LEADFLOW_GOOGLE_OAUTH_CLIENT_ID", "the OAuth client (a Google Cloud "
                                       "\"web application\") every broker's calendar connects through, unless the "
                                       "broker stored its own", "")
    google_oauth_client_secret: str = _env("LEADFLOW_GOOGLE_OAUTH_CLIENT_SECRET", "that client's secret", "",
                                           repr=False)

    agent_burst_ms: int = _env("LEADFLOW_AGENT_BURST_MS", "the lead agent answers a contact once it has been quiet "
                               "this long (a burst of messages gets one reply)", 1200, ge=0, le=30_000)
    agent_max_wait_ms: int = _env("LEADFLOW_AGENT_MAX_WAIT_MS", "longest a lead waits for the agent while still "
                                  "writing", 4000, ge=0, le=60_000)
    agent_max_age_s: int = _env("LEADFLOW_AGENT_MAX_AGE_S", "the agent leaves unanswered a message sent longer ago "
                                "than this (history read on a first start, a provider's late redelivery)", 900, ge=1)
    agent_workers: int = _env("LEADFLOW_AGENT_WORKERS", "contacts the agent answers at once (LLM brokers: 8 times "
                              "as many, up to 512, since they mostly wait on the model); they share at most 34 "
                              "database connections", 96, ge=1, le=256)
    agent_member: int = _env("LEADFLOW_AGENT_MEMBER", "this agent process's index among LEADFLOW_AGENT_MEMBERS "
                             "(it reads the partitions p with p % members == member)", 0, ge=0)
    agent_members: int = _env("LEADFLOW_AGENT_MEMBERS", "how many agent processes share the messages topic", 1, ge=1)
    agent_qualifier_process: bool = _env("LEADFLOW_AGENT_QUALIFIER_PROCESS", "the agent reads its rules qualifier "
                                         "passes in a worker process of their own (false: in its own process; "
                                         "saves ~150 MB, costs latency under load)", True)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Every setting from ``environ`` (default: this process's environment); empty means unset."""
        source = os.environ if environ is None else environ
        names = cls.variables()
        given = {name: value for name, value in source.items() if name in names and value != ""}
        try:
            return cls.model_validate(given)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                name = str(error["loc"][0])
                shown = "(hidden)" if name in _HIDDEN else repr(given.get(name))
                problems.append(f"{name}={shown}: {error['msg']}")
            raise ConfigurationError("; ".join(problems)) from None

    @classmethod
    def variables(cls) -> set[str]:
        """The name of every environment variable a field reads."""
        return {field.alias for field in cls.model_fields.values() if field.alias}

    @property
    def webhook_base_url(self) -> str:
        """Where providers send webhooks: LEADFLOW_INGEST_PUBLIC_URL, else where this machine's ingest API listens."""
        return (self.ingest_public_url or f"http://{self.ingest_host}:{self.ingest_port}").rstrip("/")

    @property
    def topics(self) -> Topics:
        return Topics(self.kafka_topic_prefix)

    @property
    def state_dir(self) -> Path:
        return self.home.resolve()

    @property
    def dagster_instance_dir(self) -> Path:
        return (self.dagster_home or self.state_dir / "dagster").resolve()

    @property
    def docs_dir(self) -> Path:
        """Where `dbt docs generate` writes the site the reports API serves at /dbt-docs/."""
        return self.dbt_docs_dir or self.state_dir / "dbt-docs"

    def provider_url(self, name: str) -> str:
        """An outbound provider's base URL by its variable name (``PROVIDER_URLS``), without a trailing slash."""
        field = {f.alias: n for n, f in type(self).model_fields.items()}[name]
        return str(getattr(self, field)).rstrip("/")

    def resolved(self) -> Settings:
        """These settings with PostgreSQL and Kafka filled from the embedded services when not configured."""
        state = read_state()
        db_url = self.database_url or state.get("database_url", "")
        kafka = self.kafka_bootstrap_servers or state.get("kafka_bootstrap_servers", "")
        if not db_url:
            raise ConfigurationError(
                "No PostgreSQL configured: set LEADFLOW_DATABASE_URL, or run `leadflow services up` "
                f"to start the embedded one (state kept in {self.state_dir}).")
        if not kafka:
            raise ConfigurationError(
                "No Kafka configured: set LEADFLOW_KAFKA_BOOTSTRAP_SERVERS, or run `leadflow services up` "
                f"to start the embedded broker (state kept in {self.state_dir}).")
        return self.model_copy(update={"database_url": to_libpq_url(db_url), "kafka_bootstrap_servers": kafka})


def load_settings() -> Settings:
    """Resolve the settings now: explicit environment first, then the embedded services' state."""
    return Settings.from_environment().resolved()


def secret(name: str) -> str | None:
    """A per-broker or per-provider secret by its variable name, read when needed (None: not set)."""
    return os.environ.get(name) or None


def on_loopback(host: str) -> bool:
    """Whether ``host`` (a database's) is this machine: a loopback address, ``localhost`` or a Unix socket."""
    if host == "localhost" or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def provider_url(name: str) -> str:
    return Settings.from_environment().provider_url(name)


def child_environment(settings: Settings) -> dict[str, str]:
    """The variables a child process needs to see these settings (Dagster's ``EnvVar`` fields, dbt's profile).

    The embedded services' addresses are written out explicitly, and dbt's profile gets the URL's
    parts one by one (``LEADFLOW_PG*``).
    """
    parts = database_parts(settings.database_url)
    env = {
        "LEADFLOW_DATABASE_URL": settings.database_url,
        "LEADFLOW_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "LEADFLOW_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "LEADFLOW_DAGSTER_DATABASE_URL": settings.dagster_database_url or to_psycopg2_url(settings.database_url),
        "DAGSTER_HOME": str(settings.dagster_instance_dir),
        "LEADFLOW_PGHOST": parts["host"], "LEADFLOW_PGPORT": parts["port"], "LEADFLOW_PGUSER": parts["user"],
        "LEADFLOW_PGPASSWORD": parts["password"], "LEADFLOW_PGDATABASE": parts["dbname"],
    }
    env.update({name: settings.provider_url(name) for name in PROVIDER_URLS})
    return env


def child_process_environment(settings: Settings) -> dict[str, str]:
    """This process's whole environment (PATH, secrets…) with ``child_environment`` on top, for a child."""
    return {**os.environ, **child_environment(settings)}


_ENVIRONMENT = threading.Lock()


@contextmanager
def scoped_environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in this process's environment inside the block only (for a child process started there).

    Under a lock, so two threads never see each other's values; the environment is put back after.
    """
    with _ENVIRONMENT:
        previous = {name: os.environ.get(name) for name in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def put_on_path(directory: Path) -> None:
    """Let child processes find the programs in ``directory`` first (dbt beside this interpreter)."""
    os.environ["PATH"] = f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"


def export_environment(settings: Settings | None = None) -> Settings:
    """Put ``child_environment`` into this process's environment, for the processes it starts and the
    in-process Dagster runs of the CLI, the demo and the tests (their ``EnvVar`` fields, dbt's profile).

    Only entry points call it; library code takes a ``Settings``.
    """
    settings = settings or load_settings()
    os.environ.update(child_environment(settings))
    return settings
