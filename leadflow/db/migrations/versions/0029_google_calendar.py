"""Google Calendar connections (issue 15): OAuth tokens per person or per broker, and the pending authorizations.

- ``google_calendar_connections``: one per broker and person (``agent_key``: the user id, 0 for the broker's own
  calendar, as in ``calendar_busy`` and ``appointments``). The tokens (refresh and access token, its expiry) are
  one JSON value sealed like the channel credentials (``leadflow.credentials.seal``: envelope encryption under
  the master key, bound to the broker and the connection), so a copied row does not open elsewhere. ``status``:
  ``connected``, or ``broken`` once Google refused a refreshed token (the admin is told: an audit row and the
  page); a disconnected one is deleted. Who connected it, the Google account's email when Google said it, the
  calendar written to (default ``primary``) and the last error are kept beside.
- ``appointments.calendar_owner``: the agent key of the calendar that holds the visit's event.
- ``google_oauth_states``: an authorization started on the page and not yet finished: the hash of its ``state``
  (bound to the broker, the person starting it and the connection it will make), its PKCE verifier (sealed), and
  when it expires. Used once.

Both are the admin routes' and the batch's (the owner): the reports role has no rights on them.

Revision ID: 0029_google_calendar
Revises: 0028_appointments
Create Date: 2026-12-06
"""

from alembic import op

revision = "0029_google_calendar"
down_revision = "0028_appointments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE leadflow.google_calendar_connections (
            connection_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            broker_id      bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            agent_key      bigint NOT NULL,   -- the person's user id, 0 for the broker's own calendar
            user_id        bigint REFERENCES leadflow.users (user_id),
            status         text NOT NULL CHECK (status IN ('connected', 'broken')),
            account_email  text,
            calendar_id    text NOT NULL DEFAULT 'primary',
            key_id         text NOT NULL,
            wrapped_key    bytea NOT NULL,
            ciphertext     bytea NOT NULL,
            scopes         text NOT NULL DEFAULT '',
            connected_by   bigint NOT NULL REFERENCES leadflow.users (user_id),
            connected_at   timestamptz NOT NULL,
            updated_at     timestamptz NOT NULL,
            last_error     text,
            last_busy_at   timestamptz,       -- the last freeBusy read into calendar_busy
            CONSTRAINT google_calendar_connections_person CHECK ((agent_key = 0) = (user_id IS NULL)),
            CONSTRAINT google_calendar_connections_user CHECK (user_id IS NULL OR agent_key = user_id),
            UNIQUE (broker_id, agent_key)
        );

        CREATE TABLE leadflow.google_oauth_states (
            state_hash     text PRIMARY KEY,  -- sha256 of the state sent to Google: the state itself is not kept
            broker_id      bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            user_id        bigint NOT NULL REFERENCES leadflow.users (user_id),
            agent_key      bigint NOT NULL,
            redirect_uri   text NOT NULL,
            key_id         text NOT NULL,
            wrapped_key    bytea NOT NULL,
            verifier       bytea NOT NULL,    -- the PKCE code verifier, sealed
            created_at     timestamptz NOT NULL,
            expires_at     timestamptz NOT NULL
        );
        CREATE INDEX google_oauth_states_expiry ON leadflow.google_oauth_states (expires_at);

        -- Whose calendar holds the appointment's event (agent key): when the visit's calendar changes (its person
        -- connects their own, or another person takes it), the event is taken out of the old one.
        ALTER TABLE leadflow.appointments ADD COLUMN calendar_owner bigint;
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE leadflow.appointments DROP COLUMN calendar_owner; "
               "DROP TABLE leadflow.google_oauth_states; DROP TABLE leadflow.google_calendar_connections;")
