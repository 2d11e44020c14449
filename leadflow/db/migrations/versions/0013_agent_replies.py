"""The lead agent at work: each reply it decided (claimed before it is sent), who answers a contact
the agent met before identity resolution made it a lead, and the handoff notifications to people.

Revision ID: 0013_agent_replies
Revises: 0012_lead_handlers
Create Date: 2026-12-05
"""

from alembic import op

revision = "0013_agent_replies"
down_revision = "0012_lead_handlers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- One row per burst of a contact's messages the agent read: the decision and its fate. The key
        -- is the newest inbound message it answers, so a burst read twice (a restart, a rerun) is
        -- answered once: the row is claimed before the provider is called.
        CREATE TABLE leadflow.agent_replies (
            reply_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            broker_id           bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            channel             text NOT NULL,
            contact_key         text NOT NULL,
            reply_to            text NOT NULL,
            lead_id             bigint REFERENCES leadflow.leads (lead_id),
            -- claimed: decided, not sent yet; sending: the provider is being called (a crash here
            -- leaves it, reported, never resent blindly); silent: the decision was to say nothing.
            status              text NOT NULL CHECK (status IN ('claimed', 'sending', 'sent', 'retry', 'dropped',
                                                                 'failed', 'silent')),
            policy              text NOT NULL,
            action              text NOT NULL,
            asks                text,
            reasons             text[] NOT NULL DEFAULT '{}',
            body                text,
            -- Where the reply goes (chat id, the contact as the channel gave it): what a retry needs.
            destination         jsonb NOT NULL,
            -- The inbound messages this burst held, as the agent read them: until they land, they are
            -- the agent's memory of what the lead said.
            heard               jsonb NOT NULL DEFAULT '[]'::jsonb,
            provider_message_id text,
            attempts            integer NOT NULL DEFAULT 0,
            reason              text,
            inbound_at          timestamptz NOT NULL,
            decided_at          timestamptz NOT NULL DEFAULT now(),
            next_attempt_at     timestamptz,
            sent_at             timestamptz,
            CONSTRAINT agent_replies_key UNIQUE (broker_id, channel, reply_to)
        );
        CREATE INDEX agent_replies_contact ON leadflow.agent_replies (broker_id, channel, contact_key, reply_id);
        CREATE INDEX agent_replies_due ON leadflow.agent_replies (next_attempt_at)
            WHERE status IN ('claimed', 'retry');

        -- The agent reads one contact's history on every burst.
        CREATE INDEX raw_messages_contact ON leadflow.raw_messages (broker_id, channel, contact_channel_id, sent_at);

        -- A handoff can come before identity resolution made the contact a lead: it is recorded by
        -- the contact (channel + key) too, and applies to the lead that contact becomes.
        ALTER TABLE leadflow.lead_handlers ALTER COLUMN lead_id DROP NOT NULL;
        ALTER TABLE leadflow.lead_handlers ADD COLUMN channel text, ADD COLUMN contact_key text;
        ALTER TABLE leadflow.lead_handlers ADD CONSTRAINT lead_handlers_whom
            CHECK (lead_id IS NOT NULL OR (channel IS NOT NULL AND contact_key IS NOT NULL));
        CREATE INDEX lead_handlers_contact ON leadflow.lead_handlers (broker_id, channel, contact_key, switch_id DESC)
            WHERE contact_key IS NOT NULL;

        -- A person told that a lead is waiting for them (the assigned agent, else the broker's admins).
        CREATE TABLE leadflow.agent_notifications (
            notification_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            broker_id        bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            reply_id         bigint NOT NULL REFERENCES leadflow.agent_replies (reply_id),
            lead_id          bigint REFERENCES leadflow.leads (lead_id),
            recipients       text[] NOT NULL DEFAULT '{}',
            target           text,
            status           text NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'no_target')),
            detail           text,
            body             text NOT NULL,
            created_at       timestamptz NOT NULL DEFAULT now(),
            sent_at          timestamptz,
            CONSTRAINT agent_notifications_once UNIQUE (reply_id)
        );

        ALTER TABLE leadflow.agent_replies ENABLE ROW LEVEL SECURITY;
        CREATE POLICY broker_isolation ON leadflow.agent_replies FOR SELECT TO leadflow_reports
            USING (leadflow.visible_broker(broker_id));
        GRANT SELECT ON leadflow.agent_replies TO leadflow_reports;
        ALTER TABLE leadflow.agent_notifications ENABLE ROW LEVEL SECURITY;
        CREATE POLICY broker_isolation ON leadflow.agent_notifications FOR SELECT TO leadflow_reports
            USING (leadflow.visible_broker(broker_id));
        GRANT SELECT ON leadflow.agent_notifications TO leadflow_reports;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE leadflow.agent_notifications;
        DROP INDEX leadflow.lead_handlers_contact;
        ALTER TABLE leadflow.lead_handlers DROP CONSTRAINT lead_handlers_whom;
        DELETE FROM leadflow.lead_handlers WHERE lead_id IS NULL;
        ALTER TABLE leadflow.lead_handlers DROP COLUMN channel, DROP COLUMN contact_key;
        ALTER TABLE leadflow.lead_handlers ALTER COLUMN lead_id SET NOT NULL;
        DROP INDEX leadflow.raw_messages_contact;
        DROP TABLE leadflow.agent_replies;
        """
    )
