"""What happened after a send: delivered, read and replied times (closing the loop).

Revision ID: 0008_send_outcomes
Revises: 0007_campaigns
Create Date: 2026-11-26
"""

from alembic import op

revision = "0008_send_outcomes"
down_revision = "0007_campaigns"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE leadflow.outbound_sends ADD COLUMN delivered_at timestamptz,
                                            ADD COLUMN read_at timestamptz,
                                            ADD COLUMN replied_at timestamptz;
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE leadflow.outbound_sends DROP COLUMN delivered_at, DROP COLUMN read_at, "
               "DROP COLUMN replied_at;")
