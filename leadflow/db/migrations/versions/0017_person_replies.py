"""A person's replies from the workspace's lead page, and the reports role taking a lead over or handing it back.

``person_replies`` is claimed (keyed by the broker and the form's idempotency key) before the provider is
called, so a double click or a retried POST sends once; it then records the provider's answer and whether
the reply was produced onto the messages topic. The reports role may also append ``lead_handlers`` rows
signed by the person acting, on a lead that person may see: the same policies as the workspace's writes.

Revision ID: 0017_person_replies
Revises: 0016_merge_hardening_workspace
Create Date: 2026-12-05
"""

from alembic import op

revision = "0017_person_replies"
down_revision = "0016_merge_hardening_workspace"
branch_labels = None
depends_on = None

_LEAD_VISIBLE = ("EXISTS (SELECT 1 FROM leadflow.leads l WHERE l.lead_id = {table}.lead_id "
                 "AND l.broker_id = {table}.broker_id)")
_DEFAULT_ACTOR = "nullif(current_setting('leadflow.user_id', true), '')::bigint"
_ACTOR = "(SELECT leadflow.workspace_actor())"


def _visible(table: str) -> str:
    return f"leadflow.visible_broker(broker_id) AND {_LEAD_VISIBLE.format(table=table)}"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE leadflow.person_replies (
            reply_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            broker_id           bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            lead_id             bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            user_id             bigint NOT NULL DEFAULT {_DEFAULT_ACTOR} REFERENCES leadflow.users (user_id),
            idempotency_key     text NOT NULL CHECK (length(idempotency_key) BETWEEN 8 AND 100),
            channel             text NOT NULL CHECK (channel IN ('telegram', 'whatsapp')),
            destination         jsonb NOT NULL,  -- chat id / number and the contact, as the lead wrote from
            body                text NOT NULL,
            template            jsonb,           -- a WhatsApp template (name, language, parameters), if chosen
            -- sending: claimed, the provider is being called (a crash leaves it so: never resent blindly);
            -- failed: the provider refused or was unreachable (the same key may try again); sent.
            status              text NOT NULL CHECK (status IN ('sending', 'failed', 'sent')),
            attempts            integer NOT NULL DEFAULT 1,
            error               text,
            provider_message_id text,
            produced            boolean NOT NULL DEFAULT false,  -- on the messages topic (Kafka acked)
            created_at          timestamptz NOT NULL DEFAULT now(),
            updated_at          timestamptz NOT NULL DEFAULT now(),
            sent_at             timestamptz,
            CONSTRAINT person_replies_key UNIQUE (broker_id, idempotency_key)
        );
        CREATE INDEX person_replies_lead ON leadflow.person_replies (lead_id, reply_id);
        CREATE INDEX person_replies_unproduced ON leadflow.person_replies (broker_id)
            WHERE status = 'sent' AND NOT produced;

        ALTER TABLE leadflow.person_replies ENABLE ROW LEVEL SECURITY;
        GRANT SELECT, INSERT (broker_id, lead_id, idempotency_key, channel, destination, body, template, status),
              UPDATE (status, attempts, error, provider_message_id, produced, updated_at, sent_at)
            ON leadflow.person_replies TO leadflow_reports;
        CREATE POLICY workspace_read ON leadflow.person_replies FOR SELECT TO leadflow_reports
            USING ({_visible("person_replies")});
        CREATE POLICY workspace_insert ON leadflow.person_replies FOR INSERT TO leadflow_reports
            WITH CHECK ({_visible("person_replies")} AND user_id = {_ACTOR});
        CREATE POLICY workspace_update ON leadflow.person_replies FOR UPDATE TO leadflow_reports
            USING ({_visible("person_replies")}) WITH CHECK ({_visible("person_replies")});

        -- Taking over and handing back from the workspace: a switch signed by the person acting.
        GRANT INSERT (broker_id, lead_id, handler, user_id, reason) ON leadflow.lead_handlers TO leadflow_reports;
        CREATE POLICY workspace_insert ON leadflow.lead_handlers FOR INSERT TO leadflow_reports
            WITH CHECK ({_visible("lead_handlers")} AND user_id = {_ACTOR});
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP POLICY workspace_insert ON leadflow.lead_handlers;
        REVOKE INSERT (broker_id, lead_id, handler, user_id, reason) ON leadflow.lead_handlers FROM leadflow_reports;
        DROP TABLE leadflow.person_replies;
        """
    )
