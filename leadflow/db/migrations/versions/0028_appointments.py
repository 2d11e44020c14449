"""Appointments (issue 15): who takes visits and when, the slots offered to leads, the visits booked.

- ``broker_settings.appointments``: the broker's visiting rules (``leadflow.appointments.rules.ScheduleRules``),
  a settings section like the others (versioned by ``broker_settings_versions``).
- ``agent_schedules``: the people who take visits, each with their own hours (NULL: the broker's) and days off.
  A broker with nobody listed books on its own calendar (agent ``NULL``, key 0).
- ``calendar_busy``: busy times read from each person's Google Calendar (freeBusy), replaced per person.
- ``appointment_offers``: the slots written to a lead, so "the second one" means what the lead was shown.
- ``appointments``: one row per visit, start to end, with its status and calendar event. The exclusion
  constraint is what keeps two leads from booking one person at overlapping times (buffer included),
  however many agents, campaigns and pages book at once: the second insert fails and the caller offers others.
- ``appointment_events``: every status change, who made it and why.

The reports role reads these for the leads it may see (an AGENT: its own leads and its own visits) and
writes appointments and their events as the person acting; the schedules and the broker's rules are written
by the admin routes as the owner.

Revision ID: 0028_appointments
Revises: 0027_manual_enrollments
Create Date: 2026-12-06
"""

from alembic import op

revision = "0028_appointments"
down_revision = "0027_manual_enrollments"
branch_labels = None
depends_on = None

_ACTOR = "(SELECT leadflow.workspace_actor())"
_DEFAULT_ACTOR = "nullif(current_setting('leadflow.user_id', true), '')::bigint"
_LEAD_VISIBLE = ("EXISTS (SELECT 1 FROM leadflow.leads l WHERE l.lead_id = {t}.lead_id "
                 "AND l.broker_id = {t}.broker_id)")
ACTIVE = "('proposed', 'confirmed')"


def _visible(table: str) -> str:
    return f"leadflow.visible_broker(broker_id) AND {_LEAD_VISIBLE.format(t=table)}"


def upgrade() -> None:
    op.execute(
        f"""
        -- Trusted since PostgreSQL 13 (the owner may create it): equality on bigint inside a GiST exclusion.
        CREATE EXTENSION IF NOT EXISTS btree_gist;

        ALTER TABLE leadflow.broker_settings ADD COLUMN appointments jsonb NOT NULL DEFAULT '{{}}'::jsonb;
        ALTER TABLE leadflow.broker_settings_versions DROP CONSTRAINT broker_settings_versions_section_check;
        ALTER TABLE leadflow.broker_settings_versions ADD CONSTRAINT broker_settings_versions_section_check
            CHECK (section IN ('scoring', 'pipeline', 'llm', 'campaigns', 'agent', 'appointments'));

        CREATE TABLE leadflow.agent_schedules (
            user_id       bigint PRIMARY KEY REFERENCES leadflow.users (user_id),
            broker_id     bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            takes_visits  boolean NOT NULL DEFAULT true,
            hours         jsonb,             -- NULL: the broker's hours
            blocked       date[] NOT NULL DEFAULT '{{}}',
            updated_at    timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX agent_schedules_broker ON leadflow.agent_schedules (broker_id) WHERE takes_visits;

        CREATE TABLE leadflow.calendar_busy (
            broker_id   bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            agent_key   bigint NOT NULL,     -- the person's user id, 0 for the broker's own calendar
            starts_at   timestamptz NOT NULL,
            ends_at     timestamptz NOT NULL CHECK (ends_at > starts_at),
            fetched_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX calendar_busy_agent ON leadflow.calendar_busy (broker_id, agent_key, starts_at);

        CREATE TABLE leadflow.appointment_offers (
            offer_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            broker_id       bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            lead_id         bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            channel         text,
            source          text NOT NULL CHECK (source IN ('agent', 'campaign', 'person')),
            send_id         bigint REFERENCES leadflow.outbound_sends (send_id),
            kind            text NOT NULL CHECK (kind IN ('in_person', 'virtual')),
            slots           jsonb NOT NULL,  -- [{{"start", "end", "agents": [...]}}], in the order shown
            status          text NOT NULL DEFAULT 'open'
                            CHECK (status IN ('open', 'taken', 'declined', 'superseded', 'expired')),
            reschedules     bigint,          -- the appointment this offer would move
            offered_at      timestamptz NOT NULL,
            closed_at       timestamptz
        );
        CREATE UNIQUE INDEX appointment_offers_open ON leadflow.appointment_offers (lead_id) WHERE status = 'open';
        CREATE UNIQUE INDEX appointment_offers_send ON leadflow.appointment_offers (send_id) WHERE send_id IS NOT NULL;

        CREATE TABLE leadflow.appointments (
            appointment_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            broker_id         bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            lead_id           bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            agent_id          bigint REFERENCES leadflow.users (user_id),
            agent_key         bigint GENERATED ALWAYS AS (coalesce(agent_id, 0)) STORED,
            kind              text NOT NULL CHECK (kind IN ('in_person', 'virtual')),
            address           text,
            starts_at         timestamptz NOT NULL,
            ends_at           timestamptz NOT NULL CHECK (ends_at > starts_at),
            -- The end plus the buffer kept free after it: what no other visit of this person may overlap.
            held_until        timestamptz NOT NULL,
            timezone          text NOT NULL,  -- the broker's when booked: what the lead was told
            status            text NOT NULL CHECK (status IN ('proposed', 'confirmed', 'completed', 'no_show',
                                                              'cancelled', 'rescheduled')),
            source            text NOT NULL CHECK (source IN ('agent', 'campaign', 'person', 'lead')),
            channel           text,           -- where the lead was talking: reminders go there
            offer_id          bigint REFERENCES leadflow.appointment_offers (offer_id),
            rescheduled_from  bigint REFERENCES leadflow.appointments (appointment_id),
            created_by        bigint DEFAULT {_DEFAULT_ACTOR} REFERENCES leadflow.users (user_id),
            created_at        timestamptz NOT NULL,
            updated_at        timestamptz NOT NULL,
            -- The Google Calendar event: 'pending' until the sync has written the latest state there.
            calendar_state    text NOT NULL DEFAULT 'pending'
                              CHECK (calendar_state IN ('pending', 'synced', 'failed', 'not_connected')),
            calendar_event_id text,
            calendar_etag     text,
            calendar_error    text,
            meet_link         text,
            -- Reminders sent, by hours before (e.g. {{"24": "2026-12-07T10:00:00Z"}}).
            reminders         jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            CONSTRAINT appointments_held CHECK (held_until >= ends_at),
            CONSTRAINT appointments_no_double_booking EXCLUDE USING gist (
                broker_id WITH =, agent_key WITH =,
                tstzrange(starts_at, held_until) WITH &&)
                WHERE (status IN {ACTIVE})
        );
        CREATE INDEX appointments_lead ON leadflow.appointments (lead_id, starts_at DESC);
        CREATE INDEX appointments_calendar ON leadflow.appointments (broker_id, starts_at);
        CREATE INDEX appointments_to_sync ON leadflow.appointments (broker_id) WHERE calendar_state = 'pending';
        CREATE INDEX appointments_upcoming ON leadflow.appointments (starts_at) WHERE status IN {ACTIVE};
        ALTER TABLE leadflow.appointment_offers ADD CONSTRAINT appointment_offers_reschedules
            FOREIGN KEY (reschedules) REFERENCES leadflow.appointments (appointment_id);

        CREATE TABLE leadflow.appointment_events (
            event_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            appointment_id  bigint NOT NULL REFERENCES leadflow.appointments (appointment_id),
            broker_id       bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            lead_id         bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            from_status     text,
            to_status       text NOT NULL,
            -- Who: the lead (by writing), the bot, a campaign, a person (user_id), or the system (a sync, a batch).
            actor           text NOT NULL CHECK (actor IN ('lead', 'bot', 'campaign', 'person', 'system')),
            user_id         bigint REFERENCES leadflow.users (user_id),
            note            text,
            at              timestamptz NOT NULL
        );
        CREATE INDEX appointment_events_appointment ON leadflow.appointment_events (appointment_id, event_id);
        CREATE INDEX appointment_events_broker ON leadflow.appointment_events (broker_id, at);
        """
    )
    for table in ("appointments", "appointment_events", "appointment_offers"):
        op.execute(f"ALTER TABLE leadflow.{table} ENABLE ROW LEVEL SECURITY;")
    op.execute(
        f"""
        -- An AGENT sees the visits of the leads it may see, and its own visits.
        CREATE POLICY workspace_read ON leadflow.appointments FOR SELECT TO leadflow_reports
            USING (leadflow.visible_broker(broker_id) AND ({_LEAD_VISIBLE.format(t="appointments")}
                   OR agent_id = (SELECT leadflow.workspace_agent())));
        GRANT SELECT, INSERT (broker_id, lead_id, agent_id, kind, address, starts_at, ends_at, held_until,
                              timezone, status, source, channel, offer_id, rescheduled_from, created_at, updated_at,
                              calendar_state),
              UPDATE (status, updated_at, calendar_state, agent_id, address, kind)
            ON leadflow.appointments TO leadflow_reports;
        CREATE POLICY workspace_insert ON leadflow.appointments FOR INSERT TO leadflow_reports
            WITH CHECK ({_visible("appointments")} AND created_by = {_ACTOR});
        CREATE POLICY workspace_update ON leadflow.appointments FOR UPDATE TO leadflow_reports
            USING ({_visible("appointments")}) WITH CHECK ({_visible("appointments")});

        CREATE POLICY workspace_read ON leadflow.appointment_events FOR SELECT TO leadflow_reports
            USING ({_visible("appointment_events")});
        GRANT SELECT, INSERT (appointment_id, broker_id, lead_id, from_status, to_status, actor, user_id, note, at)
            ON leadflow.appointment_events TO leadflow_reports;
        CREATE POLICY workspace_insert ON leadflow.appointment_events FOR INSERT TO leadflow_reports
            WITH CHECK ({_visible("appointment_events")} AND actor = 'person' AND user_id = {_ACTOR});

        CREATE POLICY workspace_read ON leadflow.appointment_offers FOR SELECT TO leadflow_reports
            USING ({_visible("appointment_offers")});
        GRANT SELECT ON leadflow.appointment_offers TO leadflow_reports;

        -- Availability is read by whoever books (a person from the lead page): the broker's rows only.
        ALTER TABLE leadflow.agent_schedules ENABLE ROW LEVEL SECURITY;
        ALTER TABLE leadflow.calendar_busy ENABLE ROW LEVEL SECURITY;
        GRANT SELECT ON leadflow.agent_schedules, leadflow.calendar_busy TO leadflow_reports;
        CREATE POLICY broker_isolation ON leadflow.agent_schedules FOR SELECT TO leadflow_reports
            USING (leadflow.visible_broker(broker_id));
        CREATE POLICY broker_isolation ON leadflow.calendar_busy FOR SELECT TO leadflow_reports
            USING (leadflow.visible_broker(broker_id));
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE leadflow.appointment_events;
        ALTER TABLE leadflow.appointment_offers DROP CONSTRAINT appointment_offers_reschedules;
        DROP TABLE leadflow.appointments;
        DROP TABLE leadflow.appointment_offers;
        DROP TABLE leadflow.calendar_busy;
        DROP TABLE leadflow.agent_schedules;
        DELETE FROM leadflow.broker_settings_versions WHERE section = 'appointments';
        ALTER TABLE leadflow.broker_settings_versions DROP CONSTRAINT broker_settings_versions_section_check;
        ALTER TABLE leadflow.broker_settings_versions ADD CONSTRAINT broker_settings_versions_section_check
            CHECK (section IN ('scoring', 'pipeline', 'llm', 'campaigns', 'agent'));
        ALTER TABLE leadflow.broker_settings DROP COLUMN appointments;
        """
    )
