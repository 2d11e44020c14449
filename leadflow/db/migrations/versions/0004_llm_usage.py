"""LLM usage per broker, day, provider and model: calls, fallbacks, tokens and cost; and LLM settings.

Revision ID: 0004_llm_usage
Revises: 0003_stages
Create Date: 2026-11-26
"""

from alembic import op

revision = "0004_llm_usage"
down_revision = "0003_stages"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- {"provider": "anthropic"|"openai"|"gemini"|"rules", "model": "...", "prompt_additions": "..."}
        ALTER TABLE leadflow.broker_settings ADD COLUMN llm jsonb NOT NULL DEFAULT '{}'::jsonb;

        CREATE TABLE leadflow.llm_usage (
            broker_id      bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            day            date NOT NULL,
            provider       text NOT NULL,
            model          text NOT NULL,
            calls          integer NOT NULL DEFAULT 0,
            fallbacks      integer NOT NULL DEFAULT 0,
            input_tokens   bigint NOT NULL DEFAULT 0,
            output_tokens  bigint NOT NULL DEFAULT 0,
            cost_usd       numeric(14, 6) NOT NULL DEFAULT 0,
            PRIMARY KEY (broker_id, day, provider, model)
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE leadflow.llm_usage; ALTER TABLE leadflow.broker_settings DROP COLUMN llm;")
