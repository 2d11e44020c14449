"""Resources: each external system is one ConfigurableResource configured from the environment."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from dagster import ConfigurableResource

from leadflow.appointments.google import Google
from leadflow.config import ConfigurationError, Settings, Topics
from leadflow.credentials import CredentialSource, EnvironmentCredentials, MasterKeys, StoredCredentials
from leadflow.outbound.senders import (
    BlandCaller,
    Sender,
    TelegramSender,
    VapiCaller,
    WhatsAppSender,
)


class PostgresResource(ConfigurableResource):
    """The application database (``LEADFLOW_DATABASE_URL``)."""

    url: str


class KafkaResource(ConfigurableResource):
    """The Kafka cluster (``LEADFLOW_KAFKA_BOOTSTRAP_SERVERS``) and Leadflow's topic names."""

    bootstrap_servers: str
    topic_prefix: str = "leadflow"

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)


class ChannelSendersResource(ConfigurableResource):
    """The outbound channel APIs (``LEADFLOW_TELEGRAM_API_URL``, ``LEADFLOW_WHATSAPP_API_URL``; empty: the
    providers' public URLs). Credentials are per broker, read at send time from what each broker's admin
    stored in ``database_url`` (when given) and otherwise from the environment."""

    telegram_api_url: str = ""
    whatsapp_api_url: str = ""
    vapi_api_url: str = ""
    bland_api_url: str = ""
    timeout_s: float = 10.0
    database_url: str = ""

    def credentials(self) -> CredentialSource:
        if not self.database_url:
            return EnvironmentCredentials()
        settings = Settings.from_environment()
        return StoredCredentials(self.database_url, lambda: MasterKeys.from_settings(settings, self.database_url),
                                 settings.credentials_refresh_s)

    def senders(self, clock: Callable[[], datetime] | None = None) -> dict[str, Sender]:
        source = self.credentials()
        whatsapp = WhatsAppSender(self.whatsapp_api_url or None, self.timeout_s, credentials=source)
        if clock is not None:
            whatsapp.clock = clock
        return {"telegram": TelegramSender(self.telegram_api_url or None, self.timeout_s, credentials=source),
                "whatsapp": whatsapp,
                "vapi": VapiCaller(self.vapi_api_url or None, self.timeout_s, credentials=source),
                "bland": BlandCaller(self.bland_api_url or None, self.timeout_s, credentials=source)}


class GoogleCalendarResource(ConfigurableResource):
    """Google Calendar and Google's OAuth endpoints (``LEADFLOW_GOOGLE_CALENDAR_API_URL``,
    ``LEADFLOW_GOOGLE_OAUTH_TOKEN_URL``; empty: Google's). The OAuth client (``LEADFLOW_GOOGLE_OAUTH_CLIENT_ID`` /
    ``_SECRET``, or a broker's stored one) and the master key opening each connection's tokens are read when a run
    starts, so no secret is a field shown in the UI."""

    api_url: str = ""
    auth_url: str = ""
    token_url: str = ""
    timeout_s: float = 10.0

    def client(self, database_url: str) -> Google:
        settings = Settings.from_environment()
        stored = StoredCredentials(database_url, lambda: MasterKeys.from_settings(settings, database_url),
                                   settings.credentials_refresh_s)
        base = Google.from_settings(settings, stored)
        return Google(self.api_url.rstrip("/") or base.api_url, self.auth_url or base.auth_url,
                      self.token_url or base.token_url, base.client_id, base.client_secret, stored, self.timeout_s)

    def master_keys(self, database_url: str) -> MasterKeys | None:
        """None when no key can be had (then connections are reported, not opened)."""
        try:
            return MasterKeys.from_settings(Settings.from_environment(), database_url)
        except ConfigurationError:
            return None
