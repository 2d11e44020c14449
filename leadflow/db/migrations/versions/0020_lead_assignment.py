"""Automatic assignment of new leads, and a person's edits of a lead's name, phone and email.

- ``assignment_settings``: each broker's ``leadflow.leads.assignment.AssignmentConfig``, written by its ADMIN
  (or a SUPERADMIN) through the reports role. Its own table rather than a ``broker_settings`` column: any
  change to ``broker_settings`` bumps its ``updated_at`` (0011), which makes the funnel redo every lead of the
  broker (``int_funnel_visits``); changing who gets new leads must not. ``applies_after_lead_id``: turning
  assignment on concerns leads that come after, not the broker's whole backlog.
- ``assignment_cursors``: the round robin's last person per broker and pool, written by the leads job only.
- ``audit_log.user_id`` may be NULL: an automatic assignment is audited without a person. The reports role
  still cannot write such a row (its policy wants ``user_id`` = the person acting). At most one automatic
  assignment per lead, by a unique index: two runs at once cannot both give the lead away.
- ``lead_contact_edits``: a name, phone or email a person set. Identity resolution recomputes a lead's
  contact fields from its messages on every new message (``refresh_leads``); a trigger keeps what a person
  set. The reports role writes the edit, never ``leads`` itself (its only column there stays
  ``assigned_user_id``): a definer trigger copies the edit onto the lead, so the edit row, signed by the
  person acting under row security, is the one way in.
- ``lead_identities``: the reports role may add a phone or email identity to a lead it may see, so later
  messages from it resolve to that lead.

Revision ID: 0020_lead_assignment
Revises: 0018_dead_letter_digest
Create Date: 2026-12-05
"""

from alembic import op

revision = "0020_lead_assignment"
down_revision = "0018_dead_letter_digest"
branch_labels = None
depends_on = None

_DEFAULT_ACTOR = "nullif(current_setting('leadflow.user_id', true), '')::bigint"
_ACTOR = "(SELECT leadflow.workspace_actor())"
_NOT_AGENT = "(SELECT leadflow.workspace_agent()) IS NULL"
_LEAD_VISIBLE = ("EXISTS (SELECT 1 FROM leadflow.leads l WHERE l.lead_id = {table}.lead_id "
                 "AND l.broker_id = {table}.broker_id AND l.merged_into IS NULL)")


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE leadflow.assignment_settings (
            broker_id              bigint PRIMARY KEY REFERENCES leadflow.brokers (broker_id),
            config                 jsonb NOT NULL DEFAULT '{{"mode": "off"}}'::jsonb,
            applies_after_lead_id  bigint NOT NULL DEFAULT 0,
            updated_by             bigint DEFAULT {_DEFAULT_ACTOR} REFERENCES leadflow.users (user_id),
            updated_at             timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE leadflow.assignment_cursors (
            broker_id     bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            pool          text NOT NULL,
            last_user_id  bigint NOT NULL REFERENCES leadflow.users (user_id),
            updated_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (broker_id, pool)
        );

        ALTER TABLE leadflow.audit_log ALTER COLUMN user_id DROP NOT NULL;
        CREATE UNIQUE INDEX audit_log_one_automatic_assignment ON leadflow.audit_log (lead_id)
            WHERE action = 'lead.assign' AND user_id IS NULL;

        CREATE TABLE leadflow.lead_contact_edits (
            lead_id       bigint PRIMARY KEY REFERENCES leadflow.leads (lead_id),
            broker_id     bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            display_name  text CHECK (length(display_name) BETWEEN 1 AND 200),
            phone_e164    text CHECK (phone_e164 ~ '^\\+[1-9][0-9]{{6,14}}$'),
            email         text CHECK (length(email) BETWEEN 3 AND 254),
            edited_by     bigint NOT NULL DEFAULT {_DEFAULT_ACTOR} REFERENCES leadflow.users (user_id),
            edited_at     timestamptz NOT NULL DEFAULT now()
        );

        -- What a person set wins over what the messages say, whoever updates the lead afterwards.
        CREATE FUNCTION leadflow.keep_contact_edits() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE edit record;
            BEGIN
                SELECT e.display_name, e.phone_e164, e.email INTO edit
                FROM leadflow.lead_contact_edits e WHERE e.lead_id = NEW.lead_id;
                IF FOUND THEN
                    NEW.display_name := coalesce(edit.display_name, NEW.display_name);
                    NEW.phone_e164 := coalesce(edit.phone_e164, NEW.phone_e164);
                    NEW.email := coalesce(edit.email, NEW.email);
                END IF;
                RETURN NEW;
            END $$;
        CREATE TRIGGER leads_keep_contact_edits BEFORE UPDATE OF display_name, phone_e164, email ON leadflow.leads
            FOR EACH ROW WHEN ((NEW.display_name, NEW.phone_e164, NEW.email)
                               IS DISTINCT FROM (OLD.display_name, OLD.phone_e164, OLD.email))
            EXECUTE FUNCTION leadflow.keep_contact_edits();

        -- The edit onto the lead. Definer: the reports role has no UPDATE on these columns of leads; the
        -- edit row it wrote already passed row security (a lead it may see, signed by the person acting).
        CREATE FUNCTION leadflow.apply_contact_edit() RETURNS trigger LANGUAGE plpgsql
            SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
            BEGIN
                UPDATE leadflow.leads SET display_name = coalesce(NEW.display_name, display_name),
                                          phone_e164 = coalesce(NEW.phone_e164, phone_e164),
                                          email = coalesce(NEW.email, email)
                WHERE lead_id = NEW.lead_id AND broker_id = NEW.broker_id;
                RETURN NULL;
            END $$;
        REVOKE ALL ON FUNCTION leadflow.apply_contact_edit() FROM PUBLIC;
        CREATE TRIGGER lead_contact_edits_apply AFTER INSERT OR UPDATE ON leadflow.lead_contact_edits
            FOR EACH ROW EXECUTE FUNCTION leadflow.apply_contact_edit();

        ALTER TABLE leadflow.assignment_settings ENABLE ROW LEVEL SECURITY;
        ALTER TABLE leadflow.lead_contact_edits ENABLE ROW LEVEL SECURITY;

        -- Assignment settings: read by the broker's people, written by its ADMIN (or a SUPERADMIN), signed.
        GRANT SELECT, INSERT (broker_id, config, applies_after_lead_id),
              UPDATE (config, applies_after_lead_id, updated_by, updated_at)
            ON leadflow.assignment_settings TO leadflow_reports;
        CREATE POLICY workspace_read ON leadflow.assignment_settings FOR SELECT TO leadflow_reports
            USING (leadflow.visible_broker(broker_id));
        CREATE POLICY workspace_insert ON leadflow.assignment_settings FOR INSERT TO leadflow_reports
            WITH CHECK (leadflow.visible_broker(broker_id) AND {_NOT_AGENT} AND updated_by = {_ACTOR});
        CREATE POLICY workspace_update ON leadflow.assignment_settings FOR UPDATE TO leadflow_reports
            USING (leadflow.visible_broker(broker_id) AND {_NOT_AGENT})
            WITH CHECK (leadflow.visible_broker(broker_id) AND {_NOT_AGENT} AND updated_by = {_ACTOR});

        -- Contact edits: on a live lead the person may see (an AGENT: its own), signed by that person.
        GRANT SELECT, INSERT (lead_id, broker_id, display_name, phone_e164, email),
              UPDATE (display_name, phone_e164, email, edited_by, edited_at)
            ON leadflow.lead_contact_edits TO leadflow_reports;
        CREATE POLICY workspace_read ON leadflow.lead_contact_edits FOR SELECT TO leadflow_reports
            USING ({_LEAD_VISIBLE.format(table="lead_contact_edits")});
        CREATE POLICY workspace_insert ON leadflow.lead_contact_edits FOR INSERT TO leadflow_reports
            WITH CHECK ({_LEAD_VISIBLE.format(table="lead_contact_edits")} AND edited_by = {_ACTOR});
        CREATE POLICY workspace_update ON leadflow.lead_contact_edits FOR UPDATE TO leadflow_reports
            USING ({_LEAD_VISIBLE.format(table="lead_contact_edits")})
            WITH CHECK ({_LEAD_VISIBLE.format(table="lead_contact_edits")} AND edited_by = {_ACTOR});

        -- A phone or email a person gave the lead becomes one of its identities.
        GRANT INSERT (broker_id, identity_kind, identity_value, lead_id, reason) ON leadflow.lead_identities
            TO leadflow_reports;
        CREATE POLICY workspace_insert ON leadflow.lead_identities FOR INSERT TO leadflow_reports
            WITH CHECK ({_LEAD_VISIBLE.format(table="lead_identities")} AND identity_kind IN ('phone', 'email'));
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP POLICY workspace_insert ON leadflow.lead_identities;
        REVOKE INSERT (broker_id, identity_kind, identity_value, lead_id, reason) ON leadflow.lead_identities
            FROM leadflow_reports;
        DROP TRIGGER lead_contact_edits_apply ON leadflow.lead_contact_edits;
        DROP TRIGGER leads_keep_contact_edits ON leadflow.leads;
        DROP FUNCTION leadflow.apply_contact_edit();
        DROP FUNCTION leadflow.keep_contact_edits();
        DROP TABLE leadflow.lead_contact_edits;
        DROP INDEX leadflow.audit_log_one_automatic_assignment;
        -- Automatic assignments have no person, which the column cannot hold again; their leads stay assigned.
        DELETE FROM leadflow.audit_log WHERE user_id IS NULL;
        ALTER TABLE leadflow.audit_log ALTER COLUMN user_id SET NOT NULL;
        DROP TABLE leadflow.assignment_cursors;
        DROP TABLE leadflow.assignment_settings;
        """
    )
