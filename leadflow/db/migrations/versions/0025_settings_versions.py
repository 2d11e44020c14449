"""Versions of each broker's settings (issue 14), and when its scoring or pipeline last changed.

``broker_settings_versions`` keeps every value an admin saved for a section of ``broker_settings``, who saved
it and when, and which version a revert brought back. The reports role gets no right on it: the admin routes
read and write it as the owner after their own checks (``reports_api.admin.access``).

``scoring_changed_at`` and ``pipeline_changed_at`` are stamped by a trigger whenever that column's value
changes, however it is written (admin page, CLI, SQL): the leads job rescores a broker's leads scored before
its scoring changed, and re-evaluates the stages of leads evaluated before its pipeline changed.

Revision ID: 0025_settings_versions
Revises: 0024_user_invitations
Create Date: 2026-12-07
"""

from alembic import op

revision = "0025_settings_versions"
down_revision = "0024_user_invitations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE leadflow.broker_settings_versions (
            broker_id      bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            section        text NOT NULL CHECK (section IN ('scoring', 'pipeline', 'llm', 'campaigns', 'agent')),
            version        integer NOT NULL CHECK (version > 0),
            value          jsonb NOT NULL,
            -- NULL: version 1 recorded as it stood before the first change made here.
            changed_by     bigint REFERENCES leadflow.users (user_id),
            changed_at     timestamptz NOT NULL DEFAULT now(),
            reverted_from  integer CHECK (reverted_from > 0 AND reverted_from < version),
            PRIMARY KEY (broker_id, section, version)
        );
        REVOKE ALL ON leadflow.broker_settings_versions FROM PUBLIC;

        ALTER TABLE leadflow.broker_settings ADD COLUMN scoring_changed_at timestamptz,
                                             ADD COLUMN pipeline_changed_at timestamptz;
        CREATE FUNCTION leadflow.stamp_settings_changes() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                IF NEW.scoring <> '{}'::jsonb THEN NEW.scoring_changed_at := now(); END IF;
                IF NEW.pipeline <> '{}'::jsonb THEN NEW.pipeline_changed_at := now(); END IF;
            ELSE
                IF NEW.scoring IS DISTINCT FROM OLD.scoring THEN NEW.scoring_changed_at := now(); END IF;
                IF NEW.pipeline IS DISTINCT FROM OLD.pipeline THEN NEW.pipeline_changed_at := now(); END IF;
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER broker_settings_changes BEFORE INSERT OR UPDATE ON leadflow.broker_settings
            FOR EACH ROW EXECUTE FUNCTION leadflow.stamp_settings_changes();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TRIGGER broker_settings_changes ON leadflow.broker_settings;
        DROP FUNCTION leadflow.stamp_settings_changes();
        ALTER TABLE leadflow.broker_settings DROP COLUMN scoring_changed_at, DROP COLUMN pipeline_changed_at;
        DROP TABLE leadflow.broker_settings_versions;
        """
    )
