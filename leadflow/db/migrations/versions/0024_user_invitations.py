"""Invitations to set a first password (issue 14): ``user_invitations``.

An ADMIN (or a SUPERADMIN registering a broker) creates an account without a password and gets a one-time
link; the link's token is shown once and only its SHA-256 is kept, with an expiry. One invitation per
account: a new one replaces the old (the old link stops working). Using it deletes the row. The reports
role gets no right on the table: the admin routes read and write it as the owner, after checking the
caller themselves.

Revision ID: 0024_user_invitations
Revises: 0023_broker_credentials
Create Date: 2026-12-06
"""

from alembic import op

revision = "0024_user_invitations"
down_revision = "0023_broker_credentials"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE leadflow.user_invitations (
            user_id       bigint PRIMARY KEY REFERENCES leadflow.users (user_id),
            token_sha256  bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
            expires_at    timestamptz NOT NULL,
            created_at    timestamptz NOT NULL DEFAULT now(),
            created_by    bigint REFERENCES leadflow.users (user_id)
        );
        REVOKE ALL ON leadflow.user_invitations FROM PUBLIC;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE leadflow.user_invitations;")
