"""Lead imports: a CSV file (or one lead typed in by a person) entering through Kafka like every channel.

``lead_imports`` is one row per import with its status and counts, the single truth of its progress:
``produced_upto`` is the last row produced onto the messages topic, so a reports API restarted mid-import
carries on from there (a row produced twice is harmless: its provider id, ``<import_id>:<row>``, is landed
once). ``lead_import_rows`` holds each row as parsed, its errors, and its outcome once landed and resolved:
a new lead, merged into an existing one, or rejected with the reason.

The reports role reads and writes both for the broker in scope only (the workspace's ``visible_broker``),
never as an AGENT (imports are an administrator's), and signs an import with the person acting.

Revision ID: 0019_lead_imports
Revises: 0018_dead_letter_digest
Create Date: 2026-12-05
"""

from alembic import op

revision = "0019_lead_imports"
down_revision = "0018_dead_letter_digest"
branch_labels = None
depends_on = None

_DEFAULT_ACTOR = "nullif(current_setting('leadflow.user_id', true), '')::bigint"
_ACTOR = "(SELECT leadflow.workspace_actor())"
_NOT_AGENT = "(SELECT leadflow.workspace_agent()) IS NULL"
_IMPORT_VISIBLE = ("EXISTS (SELECT 1 FROM leadflow.lead_imports i WHERE i.import_id = lead_import_rows.import_id "
                   "AND i.broker_id = lead_import_rows.broker_id)")


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE leadflow.lead_imports (
            import_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            broker_id      bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            created_by     bigint NOT NULL DEFAULT {_DEFAULT_ACTOR} REFERENCES leadflow.users (user_id),
            kind           text NOT NULL CHECK (kind IN ('csv', 'manual')),
            filename       text CHECK (length(filename) <= 255),
            encoding       text,
            delimiter      text,
            columns        jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            -- preview: parsed, waiting for the person to confirm; queued → producing → waiting (for the landing
            -- and identity resolution) → done; cancelled before it started; failed with the error.
            status         text NOT NULL DEFAULT 'preview'
                           CHECK (status IN ('preview', 'queued', 'producing', 'waiting', 'done', 'cancelled',
                                             'failed')),
            total_rows     integer NOT NULL DEFAULT 0,
            valid_rows     integer NOT NULL DEFAULT 0,
            rejected_rows  integer NOT NULL DEFAULT 0,
            produced_upto  integer NOT NULL DEFAULT 0,
            new_leads      integer NOT NULL DEFAULT 0,
            merged_leads   integer NOT NULL DEFAULT 0,
            error          text,
            created_at     timestamptz NOT NULL DEFAULT now(),
            started_at     timestamptz,
            finished_at    timestamptz,
            -- The process running it: a lease renewed while it works, taken over once it is stale.
            worker         text,
            heartbeat_at   timestamptz
        );
        CREATE INDEX lead_imports_broker ON leadflow.lead_imports (broker_id, import_id DESC);
        CREATE INDEX lead_imports_active ON leadflow.lead_imports (status)
            WHERE status IN ('queued', 'producing', 'waiting');

        CREATE TABLE leadflow.lead_import_rows (
            import_id         bigint NOT NULL REFERENCES leadflow.lead_imports (import_id) ON DELETE CASCADE,
            row_number        integer NOT NULL,
            broker_id         bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            status            text NOT NULL CHECK (status IN ('pending', 'produced', 'new', 'merged', 'rejected')),
            reason            text,
            -- At preview: the lead the row's phone or email already belongs to (it will merge into it).
            existing_lead_id  bigint,
            lead_id           bigint REFERENCES leadflow.leads (lead_id),
            data              jsonb NOT NULL,
            PRIMARY KEY (import_id, row_number)
        );
        CREATE INDEX lead_import_rows_status ON leadflow.lead_import_rows (import_id, status, row_number);

        ALTER TABLE leadflow.lead_imports ENABLE ROW LEVEL SECURITY;
        ALTER TABLE leadflow.lead_import_rows ENABLE ROW LEVEL SECURITY;
        GRANT SELECT, DELETE ON leadflow.lead_imports, leadflow.lead_import_rows TO leadflow_reports;
        GRANT INSERT (broker_id, kind, filename, encoding, delimiter, columns, total_rows, valid_rows,
                      rejected_rows) ON leadflow.lead_imports TO leadflow_reports;
        GRANT UPDATE (status, produced_upto, new_leads, merged_leads, rejected_rows, error, started_at, finished_at,
                      worker, heartbeat_at) ON leadflow.lead_imports TO leadflow_reports;
        GRANT INSERT (import_id, row_number, broker_id, status, reason, existing_lead_id, data)
            ON leadflow.lead_import_rows TO leadflow_reports;
        GRANT UPDATE (status, reason, lead_id) ON leadflow.lead_import_rows TO leadflow_reports;

        CREATE POLICY workspace_read ON leadflow.lead_imports FOR SELECT TO leadflow_reports
            USING (leadflow.visible_broker(broker_id) AND {_NOT_AGENT});
        CREATE POLICY workspace_insert ON leadflow.lead_imports FOR INSERT TO leadflow_reports
            WITH CHECK (leadflow.visible_broker(broker_id) AND {_NOT_AGENT} AND created_by = {_ACTOR});
        CREATE POLICY workspace_update ON leadflow.lead_imports FOR UPDATE TO leadflow_reports
            USING (leadflow.visible_broker(broker_id) AND {_NOT_AGENT})
            WITH CHECK (leadflow.visible_broker(broker_id) AND {_NOT_AGENT});
        CREATE POLICY workspace_delete ON leadflow.lead_imports FOR DELETE TO leadflow_reports
            USING (leadflow.visible_broker(broker_id) AND {_NOT_AGENT} AND status = 'preview');

        CREATE POLICY workspace_read ON leadflow.lead_import_rows FOR SELECT TO leadflow_reports
            USING (leadflow.visible_broker(broker_id) AND {_NOT_AGENT} AND {_IMPORT_VISIBLE});
        CREATE POLICY workspace_insert ON leadflow.lead_import_rows FOR INSERT TO leadflow_reports
            WITH CHECK (leadflow.visible_broker(broker_id) AND {_NOT_AGENT} AND {_IMPORT_VISIBLE});
        CREATE POLICY workspace_update ON leadflow.lead_import_rows FOR UPDATE TO leadflow_reports
            USING (leadflow.visible_broker(broker_id) AND {_NOT_AGENT} AND {_IMPORT_VISIBLE})
            WITH CHECK (leadflow.visible_broker(broker_id) AND {_NOT_AGENT} AND {_IMPORT_VISIBLE}
                        AND (lead_id IS NULL OR EXISTS (SELECT 1 FROM leadflow.leads l
                             WHERE l.lead_id = lead_import_rows.lead_id AND l.broker_id = lead_import_rows.broker_id)));
        CREATE POLICY workspace_delete ON leadflow.lead_import_rows FOR DELETE TO leadflow_reports
            USING (leadflow.visible_broker(broker_id) AND {_NOT_AGENT} AND {_IMPORT_VISIBLE});
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE leadflow.lead_import_rows; DROP TABLE leadflow.lead_imports;")
