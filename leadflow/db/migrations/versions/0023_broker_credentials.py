"""Channel credentials stored encrypted in PostgreSQL (issue 14): ``broker_credentials``.

Envelope encryption (``leadflow.credentials``): each secret is sealed with a data key of its own
(AES-256-GCM, bound to its broker and kind), and the data key is sealed under a master key that
only the processes hold (LEADFLOW_MASTER_KEY); ``key_id`` names which master key, so a rotation
can re-seal the rows one by one while both keys are configured. ``hint`` is what a page may show
back (the last characters of a long secret, never a short one's). The reports role gets no right
on the table: the admin routes write it as the owner, after checking the caller themselves.

Revision ID: 0023_broker_credentials
Revises: 0022_qualification_commitment
Create Date: 2026-12-05
"""

from alembic import op

revision = "0023_broker_credentials"
down_revision = "0022_qualification_commitment"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE leadflow.broker_credentials (
            broker_id    bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            kind         text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{1,62}$'),
            key_id       text NOT NULL,
            wrapped_key  bytea NOT NULL,
            ciphertext   bytea NOT NULL,
            hint         text NOT NULL DEFAULT '',
            version      integer NOT NULL DEFAULT 1,
            updated_at   timestamptz NOT NULL DEFAULT now(),
            updated_by   bigint REFERENCES leadflow.users (user_id),
            PRIMARY KEY (broker_id, kind)
        );
        REVOKE ALL ON leadflow.broker_credentials FROM PUBLIC;
        -- What a process's cache compares to know whether anything changed since it last read.
        CREATE INDEX broker_credentials_updated ON leadflow.broker_credentials (updated_at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE leadflow.broker_credentials;")
