"""Reports access hardened (issue 17, findings 1, 2 and 7): revocable sessions, a login limit shared by
every API process, and row-level security whose scope the reports role cannot forge.

Scope. The reports API logs in as ``leadflow_reports_login``, a LOGIN role with only the rights of
``leadflow_reports``: no owner connection switches role any more, so ``RESET ROLE`` has nowhere to go.
Each transaction's scope (broker or all brokers, the person acting, the AGENT whose leads alone are
visible) is recorded by ``leadflow.enter_reports_scope``, a SECURITY DEFINER function, in the table
``leadflow.reports_scopes`` keyed by backend pid and transaction id, which only the owner can write.
The function records a scope only with a proof: SHA-256(outer key ‖ SHA-256(inner key ‖ pid:xact:…)),
keys of a full hash block each, so it is HMAC's construction with independent keys. The keys are in
``leadflow.reports_scope_key``, which the reports role cannot read; the API reads them at start-up
as the owner. A proof names one transaction of one backend, so it cannot be replayed, and SQL running
as the reports role (a bug, an injection) can neither set another scope nor reuse one. Policies
read the scope through ``leadflow.reports_*()`` in sub-selects, which PostgreSQL evaluates once per
query (InitPlans); the GUCs ``leadflow.*`` that 0010 read are no longer trusted by any policy here.
``leadflow.visible_broker``/``visible_agent`` keep their names and read the same scope, for the
policies of other migrations and of marts built before this one.

Agents. Every table the reports role reads whose rows belong to a lead shows an AGENT only the rows
of its assigned leads (raw messages through ``message_leads``).

Accounts. ``users.password_hash`` is not readable by the reports role (column privileges).
``users.token_version`` goes up whenever the role, broker, email, password, disabled flag or removal
changes (a trigger, whoever makes the change), and tokens carry the version they were issued with.
``users.removed_at`` marks a removed account: rows stay, so ``leads.assigned_user_id``,
``lead_handlers.user_id`` and other references keep pointing at a real row. ``revoked_sessions``
holds the token ids ended by logging out until they expire. ``login_attempts`` and
``login_failures`` are the login limit every API process shares (UNLOGGED: losing them in a crash
only forgets recent failures).

Roles belong to the cluster: downgrade leaves ``leadflow_reports_login`` in place, as 0010 leaves
``leadflow_reports``, because other databases of the cluster may use it.

Revision ID: 0014_reports_hardening
Revises: 0013_agent_replies
Create Date: 2026-12-05
"""

from alembic import op

revision = "0014_reports_hardening"
down_revision = "0013_agent_replies"
branch_labels = None
depends_on = None

LOGIN_ROLE = "leadflow_reports_login"
# Tables the reports role reads whose rows belong to one lead (lead_id), as of 0013.
LEAD_TABLES = ("lead_qualifications", "lead_scores", "lead_stages", "stage_events", "campaign_enrollments",
               "outbound_sends", "message_leads", "lead_handlers", "agent_replies", "agent_notifications")
# Read by the reports role, not owned by one lead.
BROKER_TABLES = ("brokers", "campaigns", "users", "broker_settings")
USER_COLUMNS = "user_id, broker_id, email, display_name, role, disabled, created_at, removed_at"

# Each (SELECT leadflow.reports_…()) is an InitPlan: the scope is read once per query, not once per row.
BROKER = "(broker_id = (SELECT leadflow.reports_broker_id()) OR (SELECT leadflow.reports_all_brokers()))"
NO_AGENT = "(SELECT leadflow.reports_agent_id()) IS NULL"
# Read as the reports role, so leads' own policy applies inside too.
AGENT_LEADS = ("(SELECT l.lead_id FROM leadflow.leads l "
               "WHERE l.assigned_user_id = (SELECT leadflow.reports_agent_id()))")
POLICIES = {
    "leads": f"{BROKER} AND ({NO_AGENT} OR assigned_user_id = (SELECT leadflow.reports_agent_id()))",
    "raw_messages": f"{BROKER} AND ({NO_AGENT} OR message_id IN (SELECT ml.message_id FROM leadflow.message_leads ml "
                    f"WHERE ml.lead_id IN {AGENT_LEADS}))",
    **{table: f"{BROKER} AND ({NO_AGENT} OR lead_id IN {AGENT_LEADS})" for table in LEAD_TABLES},
    **{table: BROKER for table in BROKER_TABLES},
}
# What 0010, 0012 and 0013 had, for downgrade.
OLD_POLICIES = {table: "leadflow.visible_broker(broker_id)" for table in POLICIES} | {
    "leads": "leadflow.visible_broker(broker_id) AND leadflow.visible_agent(assigned_user_id)"}

# The definer functions resolve names in pg_catalog only: a caller's search_path cannot slip in its own
# operator or function.
_DEFINER = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
# The scope is keyed by the backend's pid: a parallel worker has another, so only the leader may read it.
_READER = f"LANGUAGE sql STABLE PARALLEL RESTRICTED {_DEFINER}"
_SCOPE = ("FROM leadflow.reports_scopes s WHERE s.pid = pg_backend_pid() "
          "AND s.xact = pg_current_xact_id_if_assigned()")
# 4 × 122 random bits (pg_strong_random) hashed into one 64-byte block.
_RANDOM_BLOCK = ("sha512(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || gen_random_uuid()::text "
                 "|| gen_random_uuid()::text, 'UTF8'))")


def _marts_policies(expression: str) -> None:
    """The marts' broker policy (dbt's post-hook writes it on every build) rewritten now, for marts built before."""
    op.execute(
        f"""
        DO $$ DECLARE t record; BEGIN
            FOR t IN SELECT schemaname, tablename FROM pg_policies
                     WHERE policyname = 'broker_isolation' AND schemaname NOT IN ('leadflow') LOOP
                EXECUTE format('DROP POLICY broker_isolation ON %I.%I', t.schemaname, t.tablename);
                EXECUTE format('CREATE POLICY broker_isolation ON %I.%I FOR SELECT TO leadflow_reports USING ({
                    expression.replace("'", "''")})', t.schemaname, t.tablename);
            END LOOP;
        END $$;
        """
    )


def upgrade() -> None:
    op.execute(
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{LOGIN_ROLE}') THEN
                -- No password here: the reports API sets it at start-up from LEADFLOW_REPORTS_DB_PASSWORD.
                CREATE ROLE {LOGIN_ROLE} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
            END IF;
        END $$;
        GRANT leadflow_reports TO {LOGIN_ROLE};

        CREATE TABLE leadflow.reports_scope_key (
            only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
            inner_key  bytea NOT NULL CHECK (length(inner_key) = 64),
            outer_key  bytea NOT NULL CHECK (length(outer_key) = 64)
        );
        INSERT INTO leadflow.reports_scope_key (inner_key, outer_key) VALUES ({_RANDOM_BLOCK}, {_RANDOM_BLOCK});

        -- One row per backend; a row counts only in the transaction that wrote it (xact).
        CREATE UNLOGGED TABLE leadflow.reports_scopes (
            pid          integer PRIMARY KEY,
            xact         xid8 NOT NULL,
            broker_id    bigint,
            all_brokers  boolean NOT NULL,
            user_id      bigint NOT NULL,
            agent_id     bigint
        );
        REVOKE ALL ON leadflow.reports_scope_key, leadflow.reports_scopes FROM PUBLIC;

        CREATE FUNCTION leadflow.enter_reports_scope(broker bigint, all_brokers boolean, acting_user bigint,
                                                     agent bigint, proof bytea) RETURNS void
            LANGUAGE plpgsql VOLATILE {_DEFINER} AS $$
            DECLARE
                this_xact xid8 := pg_current_xact_id();
                keys record;
                message bytea;
            BEGIN
                IF EXISTS (SELECT FROM leadflow.reports_scopes s WHERE s.pid = pg_backend_pid() AND s.xact = this_xact)
                THEN
                    RAISE EXCEPTION 'this transaction has its scope already' USING ERRCODE = 'insufficient_privilege';
                END IF;
                SELECT k.inner_key, k.outer_key INTO keys FROM leadflow.reports_scope_key k;
                message := convert_to(format('%s:%s:%s:%s:%s:%s', pg_backend_pid(), this_xact,
                                             coalesce(broker::text, ''), CASE WHEN all_brokers THEN 'all' ELSE '' END,
                                             coalesce(acting_user::text, ''), coalesce(agent::text, '')), 'UTF8');
                IF proof IS NULL OR keys IS NULL
                   OR proof <> sha256(keys.outer_key || sha256(keys.inner_key || message)) THEN
                    RAISE EXCEPTION 'no proof for this scope' USING ERRCODE = 'insufficient_privilege';
                END IF;
                IF all_brokers IS NULL OR acting_user IS NULL OR (broker IS NULL) <> all_brokers THEN
                    RAISE EXCEPTION 'a scope is one broker or all brokers, for one person'
                        USING ERRCODE = 'invalid_parameter_value';
                END IF;
                INSERT INTO leadflow.reports_scopes (pid, xact, broker_id, all_brokers, user_id, agent_id)
                VALUES (pg_backend_pid(), this_xact, broker, all_brokers, acting_user, agent)
                ON CONFLICT (pid) DO UPDATE SET xact = EXCLUDED.xact, broker_id = EXCLUDED.broker_id,
                    all_brokers = EXCLUDED.all_brokers, user_id = EXCLUDED.user_id, agent_id = EXCLUDED.agent_id;
                -- Mirrors for column defaults that read them; no policy of this migration trusts a GUC.
                PERFORM set_config('leadflow.broker_id', coalesce(broker::text, ''), true),
                        set_config('leadflow.user_id', acting_user::text, true),
                        set_config('leadflow.agent_id', coalesce(agent::text, ''), true);
            END $$;

        CREATE FUNCTION leadflow.reports_broker_id() RETURNS bigint {_READER} AS $$
            SELECT s.broker_id {_SCOPE} $$;
        CREATE FUNCTION leadflow.reports_all_brokers() RETURNS boolean {_READER} AS $$
            SELECT coalesce((SELECT s.all_brokers {_SCOPE}), false) $$;
        CREATE FUNCTION leadflow.reports_user_id() RETURNS bigint {_READER} AS $$
            SELECT s.user_id {_SCOPE} $$;
        CREATE FUNCTION leadflow.reports_agent_id() RETURNS bigint {_READER} AS $$
            SELECT s.agent_id {_SCOPE} $$;
        REVOKE ALL ON FUNCTION leadflow.enter_reports_scope(bigint, boolean, bigint, bigint, bytea),
            leadflow.reports_broker_id(), leadflow.reports_all_brokers(), leadflow.reports_user_id(),
            leadflow.reports_agent_id() FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION leadflow.enter_reports_scope(bigint, boolean, bigint, bigint, bytea),
            leadflow.reports_broker_id(), leadflow.reports_all_brokers(), leadflow.reports_user_id(),
            leadflow.reports_agent_id() TO leadflow_reports;

        -- Same names as 0010, now reading the recorded scope (called once per row: policies of this
        -- migration use the sub-selects above instead).
        CREATE OR REPLACE FUNCTION leadflow.visible_broker(row_broker bigint) RETURNS boolean
            LANGUAGE sql STABLE PARALLEL RESTRICTED AS $$
            SELECT coalesce(row_broker = leadflow.reports_broker_id(), false) OR leadflow.reports_all_brokers()
        $$;
        CREATE OR REPLACE FUNCTION leadflow.visible_agent(assigned bigint) RETURNS boolean
            LANGUAGE sql STABLE PARALLEL RESTRICTED AS $$
            SELECT leadflow.reports_agent_id() IS NULL OR assigned = leadflow.reports_agent_id()
        $$;

        ALTER TABLE leadflow.users ADD COLUMN token_version integer NOT NULL DEFAULT 0,
                                   ADD COLUMN removed_at timestamptz;
        CREATE FUNCTION leadflow.users_end_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF (NEW.role, NEW.broker_id, lower(NEW.email), NEW.password_hash, NEW.disabled, NEW.removed_at)
                   IS DISTINCT FROM
                   (OLD.role, OLD.broker_id, lower(OLD.email), OLD.password_hash, OLD.disabled, OLD.removed_at) THEN
                    NEW.token_version := OLD.token_version + 1;
                END IF;
                RETURN NEW;
            END $$;
        CREATE TRIGGER users_end_sessions BEFORE UPDATE ON leadflow.users
            FOR EACH ROW EXECUTE FUNCTION leadflow.users_end_sessions();
        REVOKE SELECT ON leadflow.users FROM leadflow_reports;
        GRANT SELECT ({USER_COLUMNS}) ON leadflow.users TO leadflow_reports;

        CREATE TABLE leadflow.revoked_sessions (
            session_id  text PRIMARY KEY,
            user_id     bigint NOT NULL REFERENCES leadflow.users (user_id),
            expires_at  timestamptz NOT NULL
        );
        CREATE INDEX revoked_sessions_expiry ON leadflow.revoked_sessions (expires_at);

        CREATE UNLOGGED TABLE leadflow.login_attempts (
            address       text NOT NULL,
            attempted_at  timestamptz NOT NULL
        );
        CREATE INDEX login_attempts_address ON leadflow.login_attempts (address, attempted_at);
        CREATE INDEX login_attempts_expiry ON leadflow.login_attempts (attempted_at);
        CREATE UNLOGGED TABLE leadflow.login_failures (
            email      text PRIMARY KEY,
            failures   integer NOT NULL,
            ready_at   timestamptz NOT NULL,
            forget_at  timestamptz NOT NULL
        );
        CREATE INDEX login_failures_expiry ON leadflow.login_failures (forget_at);
        REVOKE ALL ON leadflow.revoked_sessions, leadflow.login_attempts, leadflow.login_failures FROM PUBLIC;
        """
    )
    for table, using in POLICIES.items():
        op.execute(f"""DROP POLICY broker_isolation ON leadflow.{table};
                       CREATE POLICY broker_isolation ON leadflow.{table} FOR SELECT TO leadflow_reports
                           USING ({using});""")
    _marts_policies(BROKER)


def downgrade() -> None:
    _marts_policies("leadflow.visible_broker(broker_id)")
    for table, using in OLD_POLICIES.items():
        op.execute(f"""DROP POLICY broker_isolation ON leadflow.{table};
                       CREATE POLICY broker_isolation ON leadflow.{table} FOR SELECT TO leadflow_reports
                           USING ({using});""")
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION leadflow.visible_broker(row_broker bigint) RETURNS boolean
            LANGUAGE sql STABLE PARALLEL SAFE AS $$
            SELECT coalesce(current_setting('leadflow.all_brokers', true), '') = 'on'
                OR row_broker = nullif(current_setting('leadflow.broker_id', true), '')::bigint
        $$;
        CREATE OR REPLACE FUNCTION leadflow.visible_agent(assigned bigint) RETURNS boolean
            LANGUAGE sql STABLE PARALLEL SAFE AS $$
            SELECT coalesce(current_setting('leadflow.agent_id', true), '') = ''
                OR assigned = nullif(current_setting('leadflow.agent_id', true), '')::bigint
        $$;
        DROP FUNCTION leadflow.enter_reports_scope(bigint, boolean, bigint, bigint, bytea);
        DROP FUNCTION leadflow.reports_broker_id();
        DROP FUNCTION leadflow.reports_all_brokers();
        DROP FUNCTION leadflow.reports_user_id();
        DROP FUNCTION leadflow.reports_agent_id();
        DROP TABLE leadflow.reports_scopes;
        DROP TABLE leadflow.reports_scope_key;

        DROP TABLE leadflow.login_failures;
        DROP TABLE leadflow.login_attempts;
        DROP TABLE leadflow.revoked_sessions;
        REVOKE SELECT ({USER_COLUMNS}) ON leadflow.users FROM leadflow_reports;
        GRANT SELECT ON leadflow.users TO leadflow_reports;
        DROP TRIGGER users_end_sessions ON leadflow.users;
        DROP FUNCTION leadflow.users_end_sessions();
        -- A removed account stays unable to log in: it is disabled and its password hash was replaced.
        ALTER TABLE leadflow.users DROP COLUMN token_version, DROP COLUMN removed_at;
        """
    )
