"""Answers about visits read by the batch (brokers without the bot): each lead message read once.

``appointment_answers``: one row per inbound message the batch read against an open campaign offer or a
coming visit, with what came of it and the confirmation queued for the lead (an ``outbound_sends`` row of
the campaign that offered the visit, at a negative step: a reply, not a step of the campaign). The message
id is the key, so a batch run twice answers nothing twice.

Revision ID: 0031_appointment_conversation
Revises: 0030_appointment_reminders
Create Date: 2026-12-06
"""

from alembic import op

revision = "0031_appointment_conversation"
down_revision = "0030_appointment_reminders"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE leadflow.appointment_answers (
            message_id      bigint PRIMARY KEY,
            broker_id       bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            lead_id         bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            outcome         text NOT NULL,  -- dialog.Outcome kind, or 'unrelated'
            appointment_id  bigint REFERENCES leadflow.appointments (appointment_id),
            offer_id        bigint REFERENCES leadflow.appointment_offers (offer_id),
            send_id         bigint REFERENCES leadflow.outbound_sends (send_id),
            reason          text,            -- why no answer was queued, when none was
            answered_at     timestamptz NOT NULL
        );
        CREATE INDEX appointment_answers_lead ON leadflow.appointment_answers (lead_id, answered_at);
        ALTER TABLE leadflow.appointment_answers ENABLE ROW LEVEL SECURITY;
        GRANT SELECT ON leadflow.appointment_answers TO leadflow_reports;
        CREATE POLICY workspace_read ON leadflow.appointment_answers FOR SELECT TO leadflow_reports
            USING (leadflow.visible_broker(broker_id) AND EXISTS (SELECT 1 FROM leadflow.leads l
                   WHERE l.lead_id = appointment_answers.lead_id AND l.broker_id = appointment_answers.broker_id));
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE leadflow.appointment_answers")
