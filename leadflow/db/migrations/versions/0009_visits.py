"""Visits proposed by campaigns, accepted by leads and put in the broker's calendar.

Revision ID: 0009_visits
Revises: 0008_send_outcomes
Create Date: 2026-11-26
"""

from alembic import op

revision = "0009_visits"
down_revision = "0008_send_outcomes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE leadflow.visits (
            send_id            bigint PRIMARY KEY REFERENCES leadflow.outbound_sends (send_id),
            broker_id          bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            lead_id            bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            starts_at          timestamptz NOT NULL,
            ends_at            timestamptz NOT NULL,
            accepted_at        timestamptz NOT NULL,
            status             text NOT NULL CHECK (status IN ('accepted', 'scheduled', 'failed')),
            calendar_event_id  text,
            reason             text,
            updated_at         timestamptz NOT NULL DEFAULT now()
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE leadflow.visits;")
