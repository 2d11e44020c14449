"""Backbone: brokers (tenants), landed messages and delivery statuses, dead letters, Kafka offsets.

Revision ID: 0001_backbone
Revises:
Create Date: 2026-11-26
"""

from alembic import op

revision = "0001_backbone"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE leadflow.brokers (
            broker_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
            name        text NOT NULL,
            country     char(2) NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
            timezone    text NOT NULL,
            -- Names of the environment variables that hold each channel secret; never the secrets.
            secret_env  jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at  timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE leadflow.raw_messages (
            message_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            broker_id           bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            event_id            uuid NOT NULL,
            channel             text NOT NULL,
            provider_message_id text NOT NULL,
            conversation_id     text,
            contact_channel_id  text,
            contact_phone       text,
            contact_name        text,
            contact_email       text,
            direction           text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
            message_type        text NOT NULL,
            body                text,
            sent_at             timestamptz NOT NULL,
            received_at         timestamptz NOT NULL,
            schema_version      integer NOT NULL,
            payload             jsonb NOT NULL,
            kafka_topic         text NOT NULL,
            kafka_partition     integer NOT NULL,
            kafka_offset        bigint NOT NULL,
            landed_at           timestamptz NOT NULL DEFAULT now(),
            -- The idempotence key: a redelivered webhook or a re-read record lands once.
            CONSTRAINT raw_messages_provider_key UNIQUE (broker_id, channel, provider_message_id)
        );
        CREATE INDEX raw_messages_broker_sent ON leadflow.raw_messages (broker_id, sent_at);
        CREATE INDEX raw_messages_landed ON leadflow.raw_messages (landed_at);

        CREATE TABLE leadflow.delivery_statuses (
            status_id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            broker_id           bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            event_id            uuid NOT NULL,
            channel             text NOT NULL,
            provider_message_id text NOT NULL,
            status              text NOT NULL CHECK (status IN ('sent', 'delivered', 'read', 'failed')),
            recipient_id        text,
            recipient_phone     text,
            status_at           timestamptz NOT NULL,
            error               text,
            received_at         timestamptz NOT NULL,
            payload             jsonb NOT NULL,
            kafka_topic         text NOT NULL,
            kafka_partition     integer NOT NULL,
            kafka_offset        bigint NOT NULL,
            landed_at           timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT delivery_statuses_key UNIQUE (broker_id, channel, provider_message_id, status)
        );

        CREATE TABLE leadflow.dead_letters (
            dead_letter_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            broker_id        bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            channel          text NOT NULL,
            reason           text NOT NULL,
            content_type     text,
            body             bytea NOT NULL,
            received_at      timestamptz NOT NULL,
            kafka_cluster_id text NOT NULL,
            kafka_topic      text NOT NULL,
            kafka_partition  integer NOT NULL,
            kafka_offset     bigint NOT NULL,
            landed_at        timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT dead_letters_record_key UNIQUE (kafka_cluster_id, kafka_topic, kafka_partition, kafka_offset)
        );
        CREATE INDEX dead_letters_broker ON leadflow.dead_letters (broker_id, received_at);

        -- Progress of each reader through each partition. Partitions are shared by all brokers
        -- (records are keyed by broker and contact), so an offset belongs to no tenant: this is the
        -- one table without broker_id. Keyed by cluster id so that offsets of a wiped cluster (the
        -- memory-only embedded broker) are never applied to a new log.
        CREATE TABLE leadflow.kafka_offsets (
            consumer     text NOT NULL,
            cluster_id   text NOT NULL,
            topic        text NOT NULL,
            partition    integer NOT NULL,
            next_offset  bigint NOT NULL CHECK (next_offset >= 0),
            updated_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (consumer, cluster_id, topic, partition)
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE leadflow.kafka_offsets;
        DROP TABLE leadflow.dead_letters;
        DROP TABLE leadflow.delivery_statuses;
        DROP TABLE leadflow.raw_messages;
        DROP TABLE leadflow.brokers;
        """
    )
