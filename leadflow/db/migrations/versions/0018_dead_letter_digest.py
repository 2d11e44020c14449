"""One dead letter per broker, channel and body: a redelivered or replayed malformed delivery is kept once.

Dead letters were unique per Kafka record only, so the same bad body sent again (a provider's retry, a
second `make demo`) became a second row. ``body_digest`` is the SHA-256 of the body, computed by
PostgreSQL for every writer; the landing's ``ON CONFLICT DO NOTHING`` now drops a copy by either key.
Copies already stored are removed first, keeping the earliest (the one landed first), since they are the
same bytes and the index could not be built over them.

Revision ID: 0018_dead_letter_digest
Revises: 0017_person_replies
Create Date: 2026-12-05
"""

from alembic import op

revision = "0018_dead_letter_digest"
down_revision = "0017_person_replies"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE leadflow.dead_letters
            ADD COLUMN body_digest bytea GENERATED ALWAYS AS (sha256(body)) STORED;
        DELETE FROM leadflow.dead_letters d
        USING leadflow.dead_letters kept
        WHERE kept.broker_id = d.broker_id AND kept.channel = d.channel AND kept.body_digest = d.body_digest
          AND kept.dead_letter_id < d.dead_letter_id;
        CREATE UNIQUE INDEX dead_letters_content_key ON leadflow.dead_letters (broker_id, channel, body_digest);
        """
    )


def downgrade() -> None:
    # The copies removed on upgrade are not restored: they were byte-for-byte the row that was kept.
    op.execute(
        """
        DROP INDEX leadflow.dead_letters_content_key;
        ALTER TABLE leadflow.dead_letters DROP COLUMN body_digest;
        """
    )
