"""The reports role's rights on appointments narrowed to what its code does (issue 15, from a security review).

The pages book through ``store.book`` (a person's booking: no offer, source 'person', proposed or confirmed) and
change a visit's status (``change_status``, ``reschedule``: status, updated_at, calendar_state back to 'pending').
Nothing in the reports service moves a visit to another person, address or kind, nor writes a calendar state of
its own, so those rights go; and every reference a person's row carries must stay inside its broker and lead:
the person taking the visit, the visit it replaces, the visit an event is about. Foreign keys ignore row
security, so without these checks another broker's ids would be accepted.

Revision ID: 0032_appointment_rights
Revises: 0031_appointment_conversation
Create Date: 2026-12-06
"""

from alembic import op

revision = "0032_appointment_rights"
down_revision = "0031_appointment_conversation"
branch_labels = None
depends_on = None

_ACTOR = "(SELECT leadflow.workspace_actor())"
_VISIBLE = ("leadflow.visible_broker(broker_id) AND EXISTS (SELECT 1 FROM leadflow.leads l "
            "WHERE l.lead_id = {t}.lead_id AND l.broker_id = {t}.broker_id)")
_APPOINTMENTS = _VISIBLE.format(t="appointments")
_EVENTS = _VISIBLE.format(t="appointment_events")


def upgrade() -> None:
    op.execute(
        f"""
        -- A policy of appointments cannot read appointments (PostgreSQL refuses the recursion): this function
        -- does, as its owner, for the broker the caller's scope shows only.
        CREATE FUNCTION leadflow.appointment_of(p_appointment bigint, p_broker bigint, p_lead bigint)
            RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
            SELECT leadflow.visible_broker(p_broker) AND EXISTS (
                SELECT 1 FROM leadflow.appointments
                WHERE appointment_id = p_appointment AND broker_id = p_broker AND lead_id = p_lead)
        $$;
        REVOKE ALL ON FUNCTION leadflow.appointment_of(bigint, bigint, bigint) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION leadflow.appointment_of(bigint, bigint, bigint) TO leadflow_reports;

        -- When each person of the broker is busy, whoever the visit's lead: an AGENT's row security hides its
        -- colleagues' leads' visits, and the slots it offers a lead must not land on them. Times only, no lead.
        CREATE FUNCTION leadflow.appointment_busy(p_broker bigint, p_from timestamptz, p_to timestamptz,
                                                  p_ignore bigint)
            RETURNS TABLE (agent_key bigint, starts_at timestamptz, ends_at timestamptz)
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
            SELECT a.agent_key, a.starts_at, a.ends_at FROM leadflow.appointments a
            WHERE leadflow.visible_broker(p_broker) AND a.broker_id = p_broker
              AND a.status IN ('proposed', 'confirmed') AND a.starts_at < p_to AND a.held_until > p_from
              AND a.appointment_id IS DISTINCT FROM p_ignore
        $$;
        REVOKE ALL ON FUNCTION leadflow.appointment_busy(bigint, timestamptz, timestamptz, bigint) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION leadflow.appointment_busy(bigint, timestamptz, timestamptz, bigint)
            TO leadflow_reports;

        REVOKE UPDATE (agent_id, address, kind) ON leadflow.appointments FROM leadflow_reports;
        REVOKE INSERT (calendar_state) ON leadflow.appointments FROM leadflow_reports;

        DROP POLICY workspace_insert ON leadflow.appointments;
        CREATE POLICY workspace_insert ON leadflow.appointments FOR INSERT TO leadflow_reports
            WITH CHECK ({_APPOINTMENTS} AND created_by = {_ACTOR}
                        AND source = 'person' AND offer_id IS NULL AND status IN ('proposed', 'confirmed')
                        AND (agent_id IS NULL OR EXISTS (SELECT 1 FROM leadflow.users u
                             WHERE u.user_id = appointments.agent_id AND u.broker_id = appointments.broker_id))
                        AND (rescheduled_from IS NULL
                             OR leadflow.appointment_of(rescheduled_from, broker_id, lead_id)));
        DROP POLICY workspace_update ON leadflow.appointments;
        CREATE POLICY workspace_update ON leadflow.appointments FOR UPDATE TO leadflow_reports
            USING ({_APPOINTMENTS}) WITH CHECK ({_APPOINTMENTS} AND calendar_state = 'pending');

        DROP POLICY workspace_insert ON leadflow.appointment_events;
        CREATE POLICY workspace_insert ON leadflow.appointment_events FOR INSERT TO leadflow_reports
            WITH CHECK ({_EVENTS} AND actor = 'person' AND user_id = {_ACTOR}
                        AND leadflow.appointment_of(appointment_id, broker_id, lead_id));
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        DROP POLICY workspace_insert ON leadflow.appointment_events;
        CREATE POLICY workspace_insert ON leadflow.appointment_events FOR INSERT TO leadflow_reports
            WITH CHECK ({_EVENTS} AND actor = 'person' AND user_id = {_ACTOR});
        DROP POLICY workspace_update ON leadflow.appointments;
        CREATE POLICY workspace_update ON leadflow.appointments FOR UPDATE TO leadflow_reports
            USING ({_APPOINTMENTS}) WITH CHECK ({_APPOINTMENTS});
        DROP POLICY workspace_insert ON leadflow.appointments;
        CREATE POLICY workspace_insert ON leadflow.appointments FOR INSERT TO leadflow_reports
            WITH CHECK ({_APPOINTMENTS} AND created_by = {_ACTOR});
        GRANT UPDATE (agent_id, address, kind), INSERT (calendar_state) ON leadflow.appointments TO leadflow_reports;
        DROP FUNCTION leadflow.appointment_of(bigint, bigint, bigint);
        DROP FUNCTION leadflow.appointment_busy(bigint, timestamptz, timestamptz, bigint);
        """
    )
