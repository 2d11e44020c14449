"""Join the two branches written side by side: the reports hardening (0014) and the workspace (0015).

Revision ID: 0016_merge_hardening_workspace
Revises: 0014_reports_hardening, 0015_workspace
Create Date: 2026-12-05
"""

revision = "0016_merge_hardening_workspace"
down_revision = ("0014_reports_hardening", "0015_workspace")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
