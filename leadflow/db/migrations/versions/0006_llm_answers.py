"""LLM answers kept by what they depend on, so a conversation seen before is never sent again.

Revision ID: 0006_llm_answers
Revises: 0005_lead_separations
Create Date: 2026-11-26
"""

from alembic import op

revision = "0006_llm_answers"
down_revision = "0005_lead_separations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- cache_key: provider:model:prompt hash:country:conversation hash. Per broker: never shared.
        CREATE TABLE leadflow.llm_answers (
            broker_id      bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            cache_key      text NOT NULL,
            qualifier      text NOT NULL,
            qualification  jsonb NOT NULL,
            created_at     timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (broker_id, cache_key)
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE leadflow.llm_answers;")
