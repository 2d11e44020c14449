"""The broker workspace: notes, who tagged and who moved a lead, one audit table, the inbox's indexes, and
what the reports role may write — under row-level security that keeps the broker and agent rules for writes.

The reports API writes as ``leadflow_reports`` in a transaction scoped to one broker and one acting person
(``ScopedPool.cursor(..., write=True)``). Every policy here asks PostgreSQL whether the row's lead is
visible through ``leadflow.leads``' own policy (broker and, for an AGENT, assignment), and that the author
or actor recorded is the person acting (``leadflow.workspace_actor()``): a bug in the API's SQL can
neither write another broker's or agent's lead nor sign a write with someone else's name. Policies are
named ``workspace_*`` and every read policy has the agent rule too, so they widen nothing next to other
migrations' ``broker_isolation`` policies on the same tables.

This revision branches from 0013 beside 0014 (the hardened reports scope). Whichever runs first, the
acting person and agent are read from 0014's recorded scope when it exists (``leadflow.reports_user_id()``,
``reports_agent_id()``), else from the transaction settings 0010's scope used; ``visible_broker`` is
whichever 0010 or 0014 defined last.

Revision ID: 0015_workspace
Revises: 0013_agent_replies
Create Date: 2026-12-05
"""

from alembic import op

revision = "0015_workspace"
down_revision = "0013_agent_replies"
branch_labels = None
depends_on = None

# The lead of the row is one the caller may see: leads' own policy (broker, agent) decides inside EXISTS.
_LEAD_VISIBLE = ("EXISTS (SELECT 1 FROM leadflow.leads l WHERE l.lead_id = {table}.lead_id "
                 "AND l.broker_id = {table}.broker_id)")
# Column defaults: the transaction setting (0014 mirrors its scope into it). Policies: the trusted scope.
_DEFAULT_ACTOR = "nullif(current_setting('leadflow.user_id', true), '')::bigint"
_ACTOR = "(SELECT leadflow.workspace_actor())"
_IS_AGENT = "(SELECT leadflow.workspace_agent()) IS NOT NULL"

# Tables the workspace reads that no earlier migration opened to the reports role.
READ_TABLES = ("lead_tags", "lead_identities", "delivery_statuses")


def _visible(table: str) -> str:
    return f"leadflow.visible_broker(broker_id) AND {_LEAD_VISIBLE.format(table=table)}"


def upgrade() -> None:
    op.execute(
        f"""
        -- Trusted since PostgreSQL 13: the database owner may create it. Left in place by downgrade
        -- (other indexes may use it).
        CREATE EXTENSION IF NOT EXISTS pg_trgm;

        -- The person acting, and the agent whose leads alone are visible (NULL: not an agent). Resolved when
        -- called, so the policies below hold with or without 0014, in either order of the two branches.
        CREATE FUNCTION leadflow.workspace_actor() RETURNS bigint LANGUAGE plpgsql STABLE AS $$
            BEGIN
                IF to_regprocedure('leadflow.reports_user_id()') IS NOT NULL THEN
                    RETURN leadflow.reports_user_id();
                END IF;
                RETURN nullif(current_setting('leadflow.user_id', true), '')::bigint;
            END $$;
        CREATE FUNCTION leadflow.workspace_agent() RETURNS bigint LANGUAGE plpgsql STABLE AS $$
            BEGIN
                IF to_regprocedure('leadflow.reports_agent_id()') IS NOT NULL THEN
                    RETURN leadflow.reports_agent_id();
                END IF;
                RETURN nullif(current_setting('leadflow.agent_id', true), '')::bigint;
            END $$;
        GRANT EXECUTE ON FUNCTION leadflow.workspace_actor(), leadflow.workspace_agent() TO leadflow_reports;

        CREATE TABLE leadflow.lead_notes (
            note_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            broker_id   bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            lead_id     bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            author_id   bigint NOT NULL DEFAULT {_DEFAULT_ACTOR} REFERENCES leadflow.users (user_id),
            body        text NOT NULL CHECK (length(body) BETWEEN 1 AND 5000),
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX lead_notes_lead ON leadflow.lead_notes (lead_id, note_id);

        -- Every write a person makes in the workspace: who, what, when, the row before and after.
        -- Append-only for the reports role (no UPDATE or DELETE granted).
        CREATE TABLE leadflow.audit_log (
            audit_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            broker_id   bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            user_id     bigint NOT NULL DEFAULT {_DEFAULT_ACTOR} REFERENCES leadflow.users (user_id),
            action      text NOT NULL,
            lead_id     bigint REFERENCES leadflow.leads (lead_id),
            before      jsonb,
            after       jsonb,
            at          timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX audit_log_broker ON leadflow.audit_log (broker_id, audit_id DESC);
        CREATE INDEX audit_log_lead ON leadflow.audit_log (lead_id, audit_id DESC) WHERE lead_id IS NOT NULL;

        -- Who put a tag on and when (NULL: a tag from before the workspace, or not put on by a person).
        -- Defaults set after the columns exist, so older tags are not stamped with this migration's time.
        ALTER TABLE leadflow.lead_tags ADD COLUMN added_by bigint REFERENCES leadflow.users (user_id),
                                       ADD COLUMN added_at timestamptz;
        ALTER TABLE leadflow.lead_tags ALTER COLUMN added_by SET DEFAULT {_DEFAULT_ACTOR},
                                       ALTER COLUMN added_at SET DEFAULT now();
        -- The person who moved a lead by hand (NULL: automatic, a campaign or a visit).
        ALTER TABLE leadflow.stage_events ADD COLUMN moved_by bigint REFERENCES leadflow.users (user_id);

        -- The inbox: newest message first, keyset-paged on (last message, lead id). A lead with no message
        -- yet sorts last; the expression keeps the key NOT NULL so a row comparison can seek the index.
        -- INCLUDE: a page is chosen by an index-only scan (row security reads assigned_user_id); without
        -- it the planner preferred sorting the broker's every lead.
        CREATE INDEX leads_inbox ON leadflow.leads
            (broker_id, coalesce(last_message_at, '-infinity'::timestamptz) DESC, lead_id DESC)
            INCLUDE (last_message_at, assigned_user_id) WHERE merged_into IS NULL;
        -- "Mine" and "unassigned" in the same order.
        CREATE INDEX leads_inbox_assigned ON leadflow.leads
            (broker_id, assigned_user_id, coalesce(last_message_at, '-infinity'::timestamptz) DESC, lead_id DESC)
            WHERE merged_into IS NULL;
        -- Text search over name, email and phone, and over what leads wrote.
        CREATE INDEX leads_search ON leadflow.leads USING gin
            ((coalesce(display_name, '') || ' ' || coalesce(email, '') || ' ' || coalesce(phone_e164, ''))
             gin_trgm_ops)
            WHERE merged_into IS NULL;
        CREATE INDEX raw_messages_search ON leadflow.raw_messages USING gin (body gin_trgm_ops)
            WHERE direction = 'inbound';
        -- A lead's conversation, and the live stream's "anything after message m?".
        CREATE INDEX message_leads_lead_message ON leadflow.message_leads (lead_id, message_id);
        -- Delivery state of a message the bot or a person sent.
        CREATE INDEX delivery_statuses_message ON leadflow.delivery_statuses (broker_id, channel, provider_message_id);
        -- A lead page's merges, from either side.
        CREATE INDEX lead_merges_into ON leadflow.lead_merges (into_lead_id);
        CREATE INDEX lead_merges_merged ON leadflow.lead_merges (merged_lead_id);
        -- The board: each column's most recently entered cards.
        CREATE INDEX lead_stages_board ON leadflow.lead_stages (broker_id, stage, entered_at DESC, lead_id DESC);
        """
    )
    for table in (*READ_TABLES, "lead_notes", "audit_log"):
        op.execute(f"ALTER TABLE leadflow.{table} ENABLE ROW LEVEL SECURITY;")
    for table in ("lead_tags", "lead_identities", "lead_notes"):
        op.execute(f"""CREATE POLICY workspace_read ON leadflow.{table} FOR SELECT TO leadflow_reports
                       USING ({_visible(table)});""")
    op.execute(
        f"""
        -- Receipts name a recipient: an AGENT sees those of messages and sends it may see.
        CREATE POLICY workspace_read ON leadflow.delivery_statuses FOR SELECT TO leadflow_reports
            USING (leadflow.visible_broker(broker_id) AND (NOT {_IS_AGENT}
                   OR EXISTS (SELECT 1 FROM leadflow.raw_messages m WHERE m.broker_id = delivery_statuses.broker_id
                              AND m.channel = delivery_statuses.channel
                              AND m.provider_message_id = delivery_statuses.provider_message_id)
                   OR EXISTS (SELECT 1 FROM leadflow.outbound_sends o
                              WHERE o.provider_message_id = delivery_statuses.provider_message_id
                              AND o.broker_id = delivery_statuses.broker_id)));
        -- Merges name two leads: seen when either is visible.
        ALTER TABLE leadflow.lead_merges ENABLE ROW LEVEL SECURITY;
        CREATE POLICY workspace_read ON leadflow.lead_merges FOR SELECT TO leadflow_reports
            USING (leadflow.visible_broker(broker_id) AND EXISTS (
                SELECT 1 FROM leadflow.leads l WHERE l.lead_id IN (lead_merges.merged_lead_id, lead_merges.into_lead_id)
                AND l.broker_id = lead_merges.broker_id));
        GRANT SELECT ON leadflow.lead_tags, leadflow.lead_identities, leadflow.delivery_statuses,
                        leadflow.lead_merges, leadflow.lead_notes, leadflow.audit_log TO leadflow_reports;

        -- Notes: written by the person acting, on a lead they may see.
        GRANT INSERT (broker_id, lead_id, body) ON leadflow.lead_notes TO leadflow_reports;
        CREATE POLICY workspace_insert ON leadflow.lead_notes FOR INSERT TO leadflow_reports
            WITH CHECK ({_visible("lead_notes")} AND author_id = {_ACTOR});

        -- Tags: put on and taken off.
        GRANT INSERT (broker_id, lead_id, tag), DELETE ON leadflow.lead_tags TO leadflow_reports;
        CREATE POLICY workspace_insert ON leadflow.lead_tags FOR INSERT TO leadflow_reports
            WITH CHECK ({_visible("lead_tags")} AND added_by = {_ACTOR});
        CREATE POLICY workspace_delete ON leadflow.lead_tags FOR DELETE TO leadflow_reports
            USING ({_visible("lead_tags")});

        -- Assignment: only the column; the lead must stay visible to the caller (an AGENT cannot give its
        -- lead away) and its new owner must be an active person of the lead's broker.
        GRANT UPDATE (assigned_user_id) ON leadflow.leads TO leadflow_reports;
        CREATE POLICY workspace_assign ON leadflow.leads FOR UPDATE TO leadflow_reports
            USING (leadflow.visible_broker(broker_id) AND leadflow.visible_agent(assigned_user_id))
            WITH CHECK (leadflow.visible_broker(broker_id) AND leadflow.visible_agent(assigned_user_id)
                        AND (assigned_user_id IS NULL OR EXISTS (
                            SELECT 1 FROM leadflow.users u WHERE u.user_id = leads.assigned_user_id
                            AND u.broker_id = leads.broker_id AND u.role IN ('ADMIN', 'AGENT') AND NOT u.disabled)));

        -- Stage moves by a person: a manual event signed by them, and the lead's current stage.
        GRANT INSERT (broker_id, lead_id, from_stage, to_stage, occurred_at, reason, automatic, sequence, moved_by)
            ON leadflow.stage_events TO leadflow_reports;
        CREATE POLICY workspace_insert ON leadflow.stage_events FOR INSERT TO leadflow_reports
            WITH CHECK ({_visible("stage_events")} AND NOT automatic AND moved_by = {_ACTOR});
        GRANT INSERT (lead_id, broker_id, stage, entered_at, evaluated_at, stalled, stalled_days),
              UPDATE (stage, entered_at, evaluated_at, stalled, stalled_days) ON leadflow.lead_stages
            TO leadflow_reports;
        CREATE POLICY workspace_insert ON leadflow.lead_stages FOR INSERT TO leadflow_reports
            WITH CHECK ({_visible("lead_stages")});
        CREATE POLICY workspace_update ON leadflow.lead_stages FOR UPDATE TO leadflow_reports
            USING ({_visible("lead_stages")}) WITH CHECK ({_visible("lead_stages")});

        -- The audit: appended by the person acting, for their broker; an AGENT reads the entries of its leads.
        GRANT INSERT (broker_id, action, lead_id, before, after) ON leadflow.audit_log TO leadflow_reports;
        CREATE POLICY workspace_insert ON leadflow.audit_log FOR INSERT TO leadflow_reports
            WITH CHECK (leadflow.visible_broker(broker_id) AND user_id = {_ACTOR});
        CREATE POLICY workspace_read ON leadflow.audit_log FOR SELECT TO leadflow_reports
            USING (leadflow.visible_broker(broker_id) AND (NOT {_IS_AGENT} OR (lead_id IS NOT NULL AND
                   {_LEAD_VISIBLE.format(table="audit_log")})));
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP POLICY workspace_assign ON leadflow.leads;
        REVOKE UPDATE (assigned_user_id) ON leadflow.leads FROM leadflow_reports;
        DROP POLICY workspace_insert ON leadflow.stage_events;
        REVOKE INSERT (broker_id, lead_id, from_stage, to_stage, occurred_at, reason, automatic, sequence, moved_by)
            ON leadflow.stage_events FROM leadflow_reports;
        DROP POLICY workspace_insert ON leadflow.lead_stages;
        DROP POLICY workspace_update ON leadflow.lead_stages;
        REVOKE INSERT (lead_id, broker_id, stage, entered_at, evaluated_at, stalled, stalled_days),
               UPDATE (stage, entered_at, evaluated_at, stalled, stalled_days) ON leadflow.lead_stages
            FROM leadflow_reports;
        DROP POLICY workspace_insert ON leadflow.lead_tags;
        DROP POLICY workspace_delete ON leadflow.lead_tags;
        REVOKE INSERT (broker_id, lead_id, tag), DELETE ON leadflow.lead_tags FROM leadflow_reports;

        DROP INDEX leadflow.lead_stages_board;
        DROP INDEX leadflow.lead_merges_merged;
        DROP INDEX leadflow.lead_merges_into;
        DROP INDEX leadflow.delivery_statuses_message;
        DROP INDEX leadflow.message_leads_lead_message;
        DROP INDEX leadflow.raw_messages_search;
        DROP INDEX leadflow.leads_search;
        DROP INDEX leadflow.leads_inbox_assigned;
        DROP INDEX leadflow.leads_inbox;
        ALTER TABLE leadflow.stage_events DROP COLUMN moved_by;
        ALTER TABLE leadflow.lead_tags DROP COLUMN added_by, DROP COLUMN added_at;
        DROP TABLE leadflow.audit_log;
        DROP TABLE leadflow.lead_notes;
        """
    )
    # Read access: dropped with this migration's policies; row security and the grant go only where no
    # other migration's policy (e.g. a later broker_isolation) still relies on them.
    for table in (*READ_TABLES, "lead_merges"):
        op.execute(
            f"""
            DROP POLICY workspace_read ON leadflow.{table};
            DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_policies WHERE schemaname = 'leadflow' AND tablename = '{table}') THEN
                    ALTER TABLE leadflow.{table} DISABLE ROW LEVEL SECURITY;
                    REVOKE SELECT ON leadflow.{table} FROM leadflow_reports;
                END IF;
            END $$;
            """
        )
    op.execute("DROP FUNCTION leadflow.workspace_actor(); DROP FUNCTION leadflow.workspace_agent();")
