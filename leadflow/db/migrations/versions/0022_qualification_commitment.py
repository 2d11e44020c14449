"""Qualifications say what the lead accepted or put off, why they are in a hurry, and a seller's price.

``commitment`` (visit, valuation, call) with ``commitment_at`` (the lead's local wall-clock time, as
the appointments will book it) and ``commitment_when`` (the words); ``hesitation`` (declined,
postponed); ``urgency_reason`` (contract_ending, moving); ``asking_price`` and ``asking_currency``,
kept apart from the budget. Rows qualified before have them null until their conversation changes.

Revision ID: 0022_qualification_commitment
Revises: 0021_workspace_at_scale
Create Date: 2026-12-06
"""

from alembic import op

revision = "0022_qualification_commitment"
down_revision = "0021_workspace_at_scale"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE leadflow.lead_qualifications
            ADD COLUMN commitment      text CHECK (commitment IN ('visit', 'valuation', 'call')),
            ADD COLUMN commitment_at   timestamp,
            ADD COLUMN commitment_when text,
            ADD COLUMN hesitation      text CHECK (hesitation IN ('declined', 'postponed')),
            ADD COLUMN urgency_reason  text CHECK (urgency_reason IN ('contract_ending', 'moving')),
            ADD COLUMN asking_price    numeric CHECK (asking_price >= 0),
            ADD COLUMN asking_currency text CHECK (asking_currency IN ('UF', 'CLP', 'USD', 'MXN', 'ARS', 'EUR'));
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE leadflow.lead_qualifications
            DROP COLUMN commitment, DROP COLUMN commitment_at, DROP COLUMN commitment_when, DROP COLUMN hesitation,
            DROP COLUMN urgency_reason, DROP COLUMN asking_price, DROP COLUMN asking_currency;
        """
    )
