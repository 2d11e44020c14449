"""Leads put into a ``manual`` campaign by hand (issue 14): ``manual_enrollments``.

A person applies a campaign to chosen leads; each (campaign, lead) is one request, ever (the key makes applying
twice harmless). The next campaign batch takes the requests of its active campaigns: the lead is enrolled
(``campaign_enrollments``, then every step decided as for any trigger) or refused with the reason (opted out,
merged since, outside the campaign's segment), so the campaign's log can say what became of each lead. The
reports role gets no right on it: the admin routes write it as the owner, after checking the caller.

Revision ID: 0027_manual_enrollments
Revises: 0026_dead_letter_replay
Create Date: 2026-12-06
"""

from alembic import op

revision = "0027_manual_enrollments"
down_revision = "0026_dead_letter_replay"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE leadflow.manual_enrollments (
            campaign_id   bigint NOT NULL REFERENCES leadflow.campaigns (campaign_id),
            broker_id     bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            lead_id       bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            requested_at  timestamptz NOT NULL DEFAULT now(),
            requested_by  bigint REFERENCES leadflow.users (user_id),
            status        text NOT NULL DEFAULT 'requested' CHECK (status IN ('requested', 'enrolled', 'refused')),
            reason        text,
            decided_at    timestamptz,
            PRIMARY KEY (campaign_id, lead_id)
        );
        CREATE INDEX manual_enrollments_waiting ON leadflow.manual_enrollments (campaign_id)
            WHERE status = 'requested';
        REVOKE ALL ON leadflow.manual_enrollments FROM PUBLIC;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE leadflow.manual_enrollments;")
