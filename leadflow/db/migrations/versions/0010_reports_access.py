"""Who may read the reports, and PostgreSQL's own guard that a broker only ever sees its rows.

Users log in to the reports API. Every request of theirs runs as the role ``leadflow_reports``
with ``leadflow.broker_id`` (or ``leadflow.all_brokers`` for a SUPERADMIN, ``leadflow.agent_id``
for an AGENT) set for the transaction, and row-level security filters each table on it: a bug in
the API's own filters still cannot return another broker's rows. The dbt marts get the same
policy from a post-hook (``dbt_project/macros/broker_row_security.sql``).

Revision ID: 0010_reports_access
Revises: 0009_visits
Create Date: 2026-11-26
"""

from alembic import op

revision = "0010_reports_access"
down_revision = "0009_visits"
branch_labels = None
depends_on = None

# Every table the reports API reads; each carries broker_id.
BROKER_TABLES = ("brokers", "leads", "lead_qualifications", "lead_scores", "lead_stages", "stage_events",
                 "campaigns", "campaign_enrollments", "outbound_sends", "raw_messages", "message_leads", "users",
                 "broker_settings")


def upgrade() -> None:
    op.execute(
        """
        -- Roles belong to the cluster, not the database: several Leadflow databases share it.
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'leadflow_reports') THEN
                CREATE ROLE leadflow_reports NOLOGIN;
            END IF;
        END $$;
        GRANT leadflow_reports TO CURRENT_USER;

        CREATE TABLE leadflow.users (
            user_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            -- NULL only for a SUPERADMIN, who reads every broker.
            broker_id      bigint REFERENCES leadflow.brokers (broker_id),
            email          text NOT NULL,
            display_name   text NOT NULL,
            role           text NOT NULL CHECK (role IN ('SUPERADMIN', 'ADMIN', 'AGENT')),
            password_hash  text NOT NULL,
            disabled       boolean NOT NULL DEFAULT false,
            created_at     timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT users_broker_by_role CHECK ((role = 'SUPERADMIN') = (broker_id IS NULL))
        );
        CREATE UNIQUE INDEX users_email ON leadflow.users (lower(email));

        -- The agent a lead is assigned to: an AGENT sees only these leads.
        ALTER TABLE leadflow.leads ADD COLUMN assigned_user_id bigint REFERENCES leadflow.users (user_id);
        CREATE INDEX leads_assigned ON leadflow.leads (assigned_user_id) WHERE assigned_user_id IS NOT NULL;

        -- Settings unset (a connection that never said who it serves) match no broker at all.
        CREATE FUNCTION leadflow.visible_broker(row_broker bigint) RETURNS boolean
            LANGUAGE sql STABLE PARALLEL SAFE AS $$
            SELECT coalesce(current_setting('leadflow.all_brokers', true), '') = 'on'
                OR row_broker = nullif(current_setting('leadflow.broker_id', true), '')::bigint
        $$;
        CREATE FUNCTION leadflow.visible_agent(assigned bigint) RETURNS boolean
            LANGUAGE sql STABLE PARALLEL SAFE AS $$
            SELECT coalesce(current_setting('leadflow.agent_id', true), '') = ''
                OR assigned = nullif(current_setting('leadflow.agent_id', true), '')::bigint
        $$;

        GRANT USAGE ON SCHEMA leadflow TO leadflow_reports;
        GRANT EXECUTE ON FUNCTION leadflow.visible_broker(bigint), leadflow.visible_agent(bigint)
            TO leadflow_reports;
        """
    )
    for table in BROKER_TABLES:
        agent = " AND leadflow.visible_agent(assigned_user_id)" if table == "leads" else ""
        op.execute(
            f"""
            ALTER TABLE leadflow.{table} ENABLE ROW LEVEL SECURITY;
            CREATE POLICY broker_isolation ON leadflow.{table} FOR SELECT TO leadflow_reports
                USING (leadflow.visible_broker(broker_id){agent});
            GRANT SELECT ON leadflow.{table} TO leadflow_reports;
            """
        )


def downgrade() -> None:
    for table in BROKER_TABLES:
        op.execute(f"DROP POLICY IF EXISTS broker_isolation ON leadflow.{table};"
                   f"ALTER TABLE leadflow.{table} DISABLE ROW LEVEL SECURITY;")
    op.execute(
        """
        REVOKE ALL ON ALL TABLES IN SCHEMA leadflow FROM leadflow_reports;
        REVOKE USAGE ON SCHEMA leadflow FROM leadflow_reports;
        DROP FUNCTION leadflow.visible_agent(bigint);
        DROP FUNCTION leadflow.visible_broker(bigint);
        ALTER TABLE leadflow.leads DROP COLUMN assigned_user_id;
        DROP TABLE leadflow.users;
        """
    )
