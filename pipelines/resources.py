"""Resources: each external system is one ConfigurableResource configured from the environment."""

from __future__ import annotations

from dagster import ConfigurableResource

from leadflow.config import Topics


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
