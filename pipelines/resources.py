"""Resources: each external system is one ConfigurableResource configured from the environment."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from dagster import ConfigurableResource

from leadflow.config import Topics
from leadflow.outbound.senders import (
    BlandCaller,
    GoogleCalendar,
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
    providers' public URLs). Credentials are per broker, read from the environment at send time."""

    telegram_api_url: str = ""
    whatsapp_api_url: str = ""
    vapi_api_url: str = ""
    bland_api_url: str = ""
    google_calendar_api_url: str = ""
    timeout_s: float = 10.0

    def senders(self, clock: Callable[[], datetime] | None = None) -> dict[str, Sender]:
        whatsapp = WhatsAppSender(self.whatsapp_api_url or None, self.timeout_s)
        if clock is not None:
            whatsapp.clock = clock
        return {"telegram": TelegramSender(self.telegram_api_url or None, self.timeout_s), "whatsapp": whatsapp,
                "vapi": VapiCaller(self.vapi_api_url or None, self.timeout_s),
                "bland": BlandCaller(self.bland_api_url or None, self.timeout_s)}

    def calendar(self) -> GoogleCalendar:
        return GoogleCalendar(self.google_calendar_api_url or None, self.timeout_s)
