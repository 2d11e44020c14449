"""Join the imports (0019) and assignment (0020) branches, and make the workspace's reads planable at 1M leads
and 20M messages (measured by bench/workspace.py).

- The agent arm of the lead tables' and raw_messages' row policies (0014) becomes a correlated EXISTS. As
  ``IN (SELECT … FROM leads …)`` it was a hashed sub-plan whose whole cost PostgreSQL charged to every scan of
  the table, even for an ADMIN whose scope never evaluates it: a lookup of one message by its key looked
  dearer than reading all 20M, and the inbox's "last message" and the lead page's conversation became
  sequential scans (150 s for an inbox page). As EXISTS the arm costs a key lookup per row, paid only by
  an AGENT's rows.
- ``workspace_search``: PostgreSQL applies a row policy before any condition that is not leakproof, and
  ILIKE is not, so under row security the trigram indexes of 0015 were never used and a search read every
  message of the broker. This definer function runs the search with the indexes, on the broker and agent
  of the calling transaction's scope only, and returns lead ids; the inbox filters its (row-secured) leads
  by them. Its indexes lead with the broker (btree_gin, trusted like pg_trgm): a common word ("depto")
  matches millions of messages across brokers, and only the broker's own should be read.

Revision ID: 0021_workspace_at_scale
Revises: 0019_lead_imports, 0020_lead_assignment
Create Date: 2026-12-05
"""

from alembic import op

revision = "0021_workspace_at_scale"
down_revision = ("0019_lead_imports", "0020_lead_assignment")
branch_labels = None
depends_on = None

LEAD_TABLES = ("lead_qualifications", "lead_scores", "lead_stages", "stage_events", "campaign_enrollments",
               "outbound_sends", "message_leads", "lead_handlers", "agent_replies", "agent_notifications")
BROKER = "(broker_id = (SELECT leadflow.reports_broker_id()) OR (SELECT leadflow.reports_all_brokers()))"
NO_AGENT = "(SELECT leadflow.reports_agent_id()) IS NULL"
AGENT = "(SELECT leadflow.reports_agent_id())"


def _agent_lead(table: str) -> str:
    return f"EXISTS (SELECT 1 FROM leadflow.leads l WHERE l.lead_id = {table}.lead_id AND l.assigned_user_id = {AGENT})"


POLICIES = {
    **{table: f"{BROKER} AND ({NO_AGENT} OR {_agent_lead(table)})" for table in LEAD_TABLES},
    "raw_messages": (f"{BROKER} AND ({NO_AGENT} OR EXISTS (SELECT 1 FROM leadflow.message_leads ml "
                     "JOIN leadflow.leads l ON l.lead_id = ml.lead_id WHERE ml.message_id = raw_messages.message_id "
                     f"AND l.assigned_user_id = {AGENT}))"),
}
# 0014's, for downgrade.
_AGENT_LEADS = f"(SELECT l.lead_id FROM leadflow.leads l WHERE l.assigned_user_id = {AGENT})"
OLD_POLICIES = {
    **{table: f"{BROKER} AND ({NO_AGENT} OR lead_id IN {_AGENT_LEADS})" for table in LEAD_TABLES},
    "raw_messages": (f"{BROKER} AND ({NO_AGENT} OR message_id IN (SELECT ml.message_id FROM leadflow.message_leads ml "
                     f"WHERE ml.lead_id IN {_AGENT_LEADS}))"),
}


def _policies(policies: dict[str, str]) -> None:
    for table, using in policies.items():
        op.execute(f"""DROP POLICY broker_isolation ON leadflow.{table};
                       CREATE POLICY broker_isolation ON leadflow.{table} FOR SELECT TO leadflow_reports
                           USING ({using});""")


def upgrade() -> None:
    _policies(POLICIES)
    op.execute(
        """
        CREATE EXTENSION IF NOT EXISTS btree_gin;
        CREATE INDEX leads_broker_search ON leadflow.leads USING gin
            (broker_id, (coalesce(display_name, '') || ' ' || coalesce(email, '') || ' ' || coalesce(phone_e164, ''))
             gin_trgm_ops)
            WHERE merged_into IS NULL;
        CREATE INDEX raw_messages_broker_search ON leadflow.raw_messages USING gin (broker_id, body gin_trgm_ops)
            WHERE direction = 'inbound';
        DROP INDEX leadflow.leads_search;
        DROP INDEX leadflow.raw_messages_search;

        -- Lead ids of the scope's broker (and, for an AGENT, its leads) whose name, email or phone matches
        -- pattern or phone, or who wrote a message matching pattern. Outside a scope: none.
        CREATE FUNCTION leadflow.workspace_search(pattern text, phone text) RETURNS SETOF bigint
            LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp ROWS 200 AS $$
            -- plpgsql, the scope read into variables first: the queries are then planned for this broker's
            -- values (as parameters of a SQL function they were planned for any broker, and read them all).
            DECLARE
                broker bigint := leadflow.reports_broker_id();
                agent bigint := leadflow.reports_agent_id();
            BEGIN
                IF broker IS NULL THEN
                    RETURN;
                END IF;
                RETURN QUERY
                    SELECT f.lead_id FROM leadflow.leads f
                    WHERE f.broker_id = broker AND f.merged_into IS NULL
                      AND (agent IS NULL OR f.assigned_user_id = agent)
                      AND (coalesce(f.display_name, '') || ' ' || coalesce(f.email, '') || ' '
                           || coalesce(f.phone_e164, '')) ILIKE ANY (ARRAY[pattern, coalesce(phone, pattern)])
                    UNION
                    SELECT ml.lead_id FROM leadflow.raw_messages m
                    JOIN leadflow.message_leads ml ON ml.message_id = m.message_id
                    JOIN leadflow.leads l ON l.lead_id = ml.lead_id
                    WHERE m.broker_id = broker AND m.direction = 'inbound' AND m.body ILIKE pattern
                      AND (agent IS NULL OR l.assigned_user_id = agent);
            END $$;
        REVOKE ALL ON FUNCTION leadflow.workspace_search(text, text) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION leadflow.workspace_search(text, text) TO leadflow_reports;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP FUNCTION leadflow.workspace_search(text, text);
        CREATE INDEX leads_search ON leadflow.leads USING gin
            ((coalesce(display_name, '') || ' ' || coalesce(email, '') || ' ' || coalesce(phone_e164, ''))
             gin_trgm_ops)
            WHERE merged_into IS NULL;
        CREATE INDEX raw_messages_search ON leadflow.raw_messages USING gin (body gin_trgm_ops)
            WHERE direction = 'inbound';
        DROP INDEX leadflow.leads_broker_search;
        DROP INDEX leadflow.raw_messages_broker_search;
        """
    )
    _policies(OLD_POLICIES)
