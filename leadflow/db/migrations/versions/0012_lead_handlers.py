"""The lead agent's per-broker settings, and who answers each lead: the bot or a person.

Revision ID: 0012_lead_handlers
Revises: 0011_settings_touched
Create Date: 2026-12-02
"""

from alembic import op

revision = "0012_lead_handlers"
down_revision = "0011_settings_touched"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- leadflow.agent.config.AgentConfig, validated when saved; empty: the bot is off for the broker.
        ALTER TABLE leadflow.broker_settings ADD COLUMN agent jsonb NOT NULL DEFAULT '{}'::jsonb;

        -- Every switch between the bot and a person, with who made it and why; a lead's newest row says
        -- who answers it now (none: the bot).
        CREATE TABLE leadflow.lead_handlers (
            switch_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            broker_id    bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            lead_id      bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            handler      text NOT NULL CHECK (handler IN ('bot', 'person')),
            -- The person who switched; NULL when the bot handed the lead over itself.
            user_id      bigint REFERENCES leadflow.users (user_id),
            reason       text NOT NULL,
            switched_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX lead_handlers_latest ON leadflow.lead_handlers (lead_id, switch_id DESC);

        ALTER TABLE leadflow.lead_handlers ENABLE ROW LEVEL SECURITY;
        CREATE POLICY broker_isolation ON leadflow.lead_handlers FOR SELECT TO leadflow_reports
            USING (leadflow.visible_broker(broker_id));
        GRANT SELECT ON leadflow.lead_handlers TO leadflow_reports;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE leadflow.lead_handlers; ALTER TABLE leadflow.broker_settings DROP COLUMN agent;")
