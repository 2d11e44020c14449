"""Appointment reminders (issue 15): one row per visit and lead time, the key that makes a rerun send nothing twice.

``appointment_reminders`` is written by the scheduled batch (``leadflow.appointments.reminders``): a reminder
is planned once (``pending``, or ``skipped`` with why: booked too late for it, a later one due too, the lead
opted out), claimed (``sending``, committed) before the provider is called, and settled ``sent`` with the
provider's id, ``pending`` again with a later attempt (429, 5xx, timeouts), or ``failed`` with the reason.
A crash during the call leaves ``sending``: reported, never resent blindly. ``appointments.reminders`` keeps
the sent ones ({"24": "<sent at>"}) for the pages.

The reports role reads the reminders of the leads it may see.

Revision ID: 0030_appointment_reminders
Revises: 0029_google_calendar
Create Date: 2026-12-06
"""

from alembic import op

revision = "0030_appointment_reminders"
down_revision = "0029_google_calendar"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE leadflow.appointment_reminders (
            appointment_id       bigint NOT NULL REFERENCES leadflow.appointments (appointment_id),
            hours_before         integer NOT NULL CHECK (hours_before > 0),
            broker_id            bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            lead_id              bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            due_at               timestamptz NOT NULL,
            status               text NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped')),
            reason               text,
            channel              text,
            -- Where it goes ({"chat_id"} on Telegram, {"to"} on WhatsApp), the text, and the WhatsApp
            -- template sent instead outside the 24-hour window ({"name", "language", "parameters"}).
            destination          jsonb,
            body                 text,
            template             jsonb,
            attempts             integer NOT NULL DEFAULT 0,
            next_attempt_at      timestamptz,
            provider_message_id  text,
            created_at           timestamptz NOT NULL,
            sent_at              timestamptz,
            updated_at           timestamptz NOT NULL,
            -- A sent reminder is also produced onto the messages topic (the lead's conversation shows it);
            -- false until Kafka acknowledged it, produced again by the next run.
            produced             boolean NOT NULL DEFAULT false,
            PRIMARY KEY (appointment_id, hours_before)
        );
        CREATE INDEX appointment_reminders_due ON leadflow.appointment_reminders (next_attempt_at)
            WHERE status = 'pending';
        CREATE INDEX appointment_reminders_broker ON leadflow.appointment_reminders (broker_id, due_at);
        CREATE INDEX appointment_reminders_unproduced ON leadflow.appointment_reminders (sent_at)
            WHERE status = 'sent' AND NOT produced;

        ALTER TABLE leadflow.appointment_reminders ENABLE ROW LEVEL SECURITY;
        GRANT SELECT ON leadflow.appointment_reminders TO leadflow_reports;
        CREATE POLICY workspace_read ON leadflow.appointment_reminders FOR SELECT TO leadflow_reports
            USING (leadflow.visible_broker(broker_id) AND EXISTS (
                SELECT 1 FROM leadflow.leads l
                WHERE l.lead_id = appointment_reminders.lead_id AND l.broker_id = appointment_reminders.broker_id));
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE leadflow.appointment_reminders;")
