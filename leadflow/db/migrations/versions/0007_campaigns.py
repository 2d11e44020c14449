"""Segments, campaigns, enrollments, outbound sends, consent and lead tags.

Revision ID: 0007_campaigns
Revises: 0006_llm_answers
Create Date: 2026-11-26
"""

from alembic import op

revision = "0007_campaigns"
down_revision = "0006_llm_answers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- {"quiet_start": 21, "quiet_end": 9, "cap_messages": 3, "cap_days": 7}
        ALTER TABLE leadflow.broker_settings ADD COLUMN campaigns jsonb NOT NULL DEFAULT '{}'::jsonb;

        CREATE TABLE leadflow.lead_tags (
            lead_id    bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            broker_id  bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            tag        text NOT NULL,
            PRIMARY KEY (lead_id, tag)
        );

        -- A lead who asked not to be contacted, and the message that said so: stops every campaign.
        CREATE TABLE leadflow.lead_consent (
            lead_id       bigint PRIMARY KEY REFERENCES leadflow.leads (lead_id),
            broker_id     bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            opted_out_at  timestamptz NOT NULL,
            message_id    bigint REFERENCES leadflow.raw_messages (message_id),
            reason        text NOT NULL
        );

        CREATE TABLE leadflow.segments (
            segment_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            broker_id   bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            name        text NOT NULL,
            rules       jsonb NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            UNIQUE (broker_id, name)
        );
        -- Membership history: one row per stay in a segment.
        CREATE TABLE leadflow.segment_memberships (
            segment_id  bigint NOT NULL REFERENCES leadflow.segments (segment_id),
            broker_id   bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            lead_id     bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            entered_at  timestamptz NOT NULL,
            exited_at   timestamptz,
            PRIMARY KEY (segment_id, lead_id, entered_at)
        );
        CREATE UNIQUE INDEX segment_memberships_open ON leadflow.segment_memberships (segment_id, lead_id)
            WHERE exited_at IS NULL;

        CREATE TABLE leadflow.campaigns (
            campaign_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            broker_id     bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            name          text NOT NULL,
            status        text NOT NULL CHECK (status IN ('draft', 'active', 'paused', 'completed')),
            definition    jsonb NOT NULL,
            activated_at  timestamptz,
            created_at    timestamptz NOT NULL DEFAULT now(),
            UNIQUE (broker_id, name)
        );
        CREATE TABLE leadflow.campaign_enrollments (
            campaign_id     bigint NOT NULL REFERENCES leadflow.campaigns (campaign_id),
            broker_id       bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            lead_id         bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            enrolled_at     timestamptz NOT NULL,
            next_step       integer NOT NULL,
            next_due_at     timestamptz,
            status          text NOT NULL CHECK (status IN ('active', 'done', 'stopped')),
            stopped_reason  text,
            PRIMARY KEY (campaign_id, lead_id)
        );
        CREATE INDEX campaign_enrollments_due ON leadflow.campaign_enrollments (next_due_at) WHERE status = 'active';

        -- One row per lead and step, ever: the key that makes a batch run twice send nothing twice.
        CREATE TABLE leadflow.outbound_sends (
            send_id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            broker_id            bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            campaign_id          bigint NOT NULL REFERENCES leadflow.campaigns (campaign_id),
            lead_id              bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            step                 integer NOT NULL,
            action               text NOT NULL,
            channel              text,
            status               text NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped',
                                                                 'delivered', 'read', 'replied')),
            reason               text,
            payload              jsonb,
            provider_message_id  text,
            attempts             integer NOT NULL DEFAULT 0,
            next_attempt_at      timestamptz,
            created_at           timestamptz NOT NULL,
            sent_at              timestamptz,
            updated_at           timestamptz NOT NULL,
            UNIQUE (campaign_id, lead_id, step)
        );
        CREATE INDEX outbound_sends_pending ON leadflow.outbound_sends (next_attempt_at) WHERE status = 'pending';
        CREATE INDEX outbound_sends_provider ON leadflow.outbound_sends (provider_message_id);
        CREATE INDEX outbound_sends_lead ON leadflow.outbound_sends (lead_id, created_at);

        -- How far the consent scan has read raw_messages.
        CREATE TABLE leadflow.scan_watermarks (
            name             text PRIMARY KEY,
            last_message_id  bigint NOT NULL
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE leadflow.scan_watermarks; DROP TABLE leadflow.outbound_sends;
        DROP TABLE leadflow.campaign_enrollments; DROP TABLE leadflow.campaigns;
        DROP TABLE leadflow.segment_memberships; DROP TABLE leadflow.segments;
        DROP TABLE leadflow.lead_consent; DROP TABLE leadflow.lead_tags;
        ALTER TABLE leadflow.broker_settings DROP COLUMN campaigns;
        """
    )
