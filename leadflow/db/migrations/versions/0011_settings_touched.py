"""broker_settings.updated_at follows every change, so the analytics redo a broker whose pipeline changed.

Revision ID: 0011_settings_touched
Revises: 0010_reports_access
Create Date: 2026-11-26
"""

from alembic import op

revision = "0011_settings_touched"
down_revision = "0010_reports_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION leadflow.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.updated_at := now();
            RETURN NEW;
        END $$;
        CREATE TRIGGER broker_settings_touched BEFORE UPDATE ON leadflow.broker_settings
            FOR EACH ROW EXECUTE FUNCTION leadflow.touch_updated_at();
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER broker_settings_touched ON leadflow.broker_settings; "
               "DROP FUNCTION leadflow.touch_updated_at();")
