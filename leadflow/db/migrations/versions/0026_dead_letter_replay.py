"""Dead letters replayed by an admin (issue 14): who, when, how often, and the ids of the events produced.

A replay re-submits a fixed payload through its channel's parser onto the messages topic; the dead letter
stays (it is what arrived), marked with its latest replay. Each replay is also an ``audit_log`` row.

Revision ID: 0026_dead_letter_replay
Revises: 0025_settings_versions
Create Date: 2026-12-06
"""

from alembic import op

revision = "0026_dead_letter_replay"
down_revision = "0025_settings_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE leadflow.dead_letters
            ADD COLUMN replayed_at      timestamptz,
            ADD COLUMN replayed_by      bigint REFERENCES leadflow.users (user_id),
            ADD COLUMN replay_event_ids text[],
            ADD COLUMN replays          integer NOT NULL DEFAULT 0;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE leadflow.dead_letters DROP COLUMN replayed_at, DROP COLUMN replayed_by,
            DROP COLUMN replay_event_ids, DROP COLUMN replays;
        """
    )
