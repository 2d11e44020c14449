"""Leads kept apart (an undone merge, or an operator's word) and when a merge was undone.

Revision ID: 0005_lead_separations
Revises: 0004_llm_usage
Create Date: 2026-11-26
"""

from alembic import op

revision = "0005_lead_separations"
down_revision = "0004_llm_usage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- Identity resolution never merges these two leads again, whatever a message names.
        CREATE TABLE leadflow.lead_separations (
            broker_id   bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            lead_a      bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            lead_b      bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            reason      text NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (lead_a, lead_b),
            CHECK (lead_a < lead_b)
        );
        CREATE INDEX lead_separations_broker ON leadflow.lead_separations (broker_id);

        ALTER TABLE leadflow.lead_merges ADD COLUMN undone_at timestamptz;
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE leadflow.lead_merges DROP COLUMN undone_at; DROP TABLE leadflow.lead_separations;")
