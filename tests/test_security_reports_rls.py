"""Row-level security from the reports role's side (issue 17, finding 7): every escape the review tried, and
the agent rule on every table that belongs to a lead. On real PostgreSQL, over the reports world.

Each test runs SQL on the API's own pool, as a bug or an injection in a report query would: it is the
reports login role, with a recorded scope, and must not get out of it.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.errors
import pytest

from leadflow.agent.store import take_over
from leadflow.config import ConfigurationError, Settings, database_parts
from leadflow.db.connection import transaction
from reports_api.scope import LOCAL_PASSWORD, LOGIN_ROLE, ScopedPool, login_password, prepare_login, scope_message
from reports_api.security import Principal
from tests.reports_world import World, build_world
from tests.test_leads_pipeline import rows

LEAD_TABLES: tuple[str, ...] = importlib.import_module(
    "leadflow.db.migrations.versions.0014_reports_hardening").LEAD_TABLES


@pytest.fixture(scope="module")
def world(settings: Settings) -> World:
    built = build_world(settings)
    a, url = built.a, settings.database_url
    mine, other = built.agent_leads[0], _other_lead(settings, built)
    agent_email, admin_email = built.users["agent_a"].email, built.users["admin_a"].email
    # Rows of the agent's lead and of another lead in the tables the pipeline leaves empty here.
    take_over(url, a.slug, mine, agent_email, "the agent's own lead")
    take_over(url, a.slug, other, admin_email, "a lead of someone else")
    with transaction(url) as conn, conn.cursor() as cur:
        for lead in (mine, other):
            cur.execute("""INSERT INTO leadflow.agent_replies (broker_id, channel, contact_key, reply_to, destination,
                               lead_id, status, policy, action, inbound_at)
                           VALUES (%s, 'whatsapp', %s, %s, '{}', %s, 'silent', 'rules', 'none', now())
                           RETURNING reply_id""",
                        (a.broker_id, f"c{lead}", f"m{uuid.uuid4().hex}", lead))
            reply = cur.fetchone()
            assert reply is not None
            cur.execute("""INSERT INTO leadflow.agent_notifications (broker_id, reply_id, lead_id, status, body)
                           VALUES (%s, %s, %s, 'pending', 'a lead waits')""", (a.broker_id, reply[0], lead))
    return built


@pytest.fixture(scope="module")
def pool(settings: Settings, world: World) -> Iterator[ScopedPool]:
    # One connection: every transaction of a test reuses the connection the previous one left behind.
    scoped = ScopedPool(settings.database_url, 1)
    yield scoped
    scoped.close()


def _other_lead(settings: Settings, world: World) -> int:
    return int(rows(settings, """SELECT min(lead_id) FROM leadflow.leads WHERE broker_id = %s AND merged_into IS NULL
                                 AND NOT lead_id = ANY(%s)""", world.a.broker_id, world.agent_leads)[0][0])


def principal(world: World, who: str) -> Principal:
    user = world.users[who]
    return Principal(user.user_id, user.email, user.role, user.broker_id)


def brokers_seen(cur: psycopg2.extensions.cursor) -> set[int]:
    cur.execute("SELECT broker_id FROM leadflow.leads UNION SELECT broker_id FROM leadflow.brokers "
                "UNION SELECT broker_id FROM marts.fct_funnel_daily")
    return {int(b) for (b,) in cur.fetchall()}


def refused(pool: ScopedPool, world: World, sql: str, params: tuple[Any, ...] = ()) -> psycopg2.Error:
    """The error ``sql`` gets on admin A's cursor (the test fails if it runs)."""
    with pytest.raises(psycopg2.Error) as caught, pool.cursor(principal(world, "admin_a"), world.a.broker_id) as cur:
        cur.execute(sql, params)
    return caught.value


def test_the_pool_logs_in_as_a_role_with_only_the_reports_rights(pool: ScopedPool, world: World,
                                                                 settings: Settings) -> None:
    owner = database_parts(settings.database_url)["user"]
    with pool.cursor(principal(world, "admin_a"), world.a.broker_id) as cur:
        cur.execute("""SELECT session_user, current_user, r.rolsuper, r.rolbypassrls, r.rolcreaterole,
                              pg_has_role(session_user, %s, 'MEMBER')
                       FROM pg_roles r WHERE r.rolname = session_user""", (owner,))
        assert cur.fetchone() == (LOGIN_ROLE, LOGIN_ROLE, False, False, False, False)
        assert brokers_seen(cur) == {world.a.broker_id}


def test_setting_the_old_gucs_widens_nothing(pool: ScopedPool, world: World) -> None:
    with pool.cursor(principal(world, "admin_a"), world.a.broker_id) as cur:
        for local in (True, False):
            cur.execute("SELECT set_config('leadflow.all_brokers', 'on', %s), set_config('leadflow.broker_id', %s, %s),"
                        " set_config('leadflow.agent_id', '', %s)", (local, str(world.b.broker_id), local, local))
            assert brokers_seen(cur) == {world.a.broker_id}
    with pool.cursor(principal(world, "agent_a"), world.a.broker_id) as cur:
        cur.execute("SET leadflow.agent_id = ''; SET leadflow.all_brokers = 'on'")
        cur.execute("SELECT lead_id FROM leadflow.leads")
        assert sorted(lead for (lead,) in cur.fetchall()) == world.agent_leads


def test_reset_role_and_set_role_lead_nowhere(pool: ScopedPool, world: World, settings: Settings) -> None:
    owner = database_parts(settings.database_url)["user"]
    with pool.cursor(principal(world, "admin_a"), world.a.broker_id) as cur:
        cur.execute("RESET ROLE; SELECT current_user")
        assert cur.fetchone() == (LOGIN_ROLE,)
        assert brokers_seen(cur) == {world.a.broker_id}
        cur.execute("SET ROLE leadflow_reports")
        assert brokers_seen(cur) == {world.a.broker_id}
    for sql in (f'SET ROLE "{owner}"', f'SET SESSION AUTHORIZATION "{owner}"', "SET ROLE pg_read_all_data",
                "SELECT set_config('role', 'postgres', false)"):
        assert isinstance(refused(pool, world, sql), psycopg2.errors.InsufficientPrivilege), sql


def test_row_security_cannot_be_switched_off(pool: ScopedPool, world: World) -> None:
    error = refused(pool, world, "SET LOCAL row_security = off; SELECT count(*) FROM leadflow.leads")
    assert "row-level security" in str(error)


def test_what_one_transaction_sets_for_the_session_is_gone_in_the_next(pool: ScopedPool, world: World) -> None:
    with pool.cursor(principal(world, "admin_a"), world.a.broker_id) as cur:
        cur.execute("SET row_security = off; SET search_path = pg_temp, public; SET ROLE leadflow_reports")
    with pool.cursor(principal(world, "admin_b"), world.b.broker_id) as cur:
        cur.execute("SELECT current_user, current_setting('row_security'), current_setting('search_path')")
        assert cur.fetchone() == (LOGIN_ROLE, "on", '"$user", public')
        assert brokers_seen(cur) == {world.b.broker_id}


def test_password_hashes_and_the_scope_tables_are_not_readable(pool: ScopedPool, world: World) -> None:
    for sql in ("SELECT password_hash FROM leadflow.users", "SELECT * FROM leadflow.users",
                "SELECT token_version FROM leadflow.users", "SELECT * FROM leadflow.reports_scope_key",
                "SELECT * FROM leadflow.reports_scopes", "SELECT * FROM leadflow.revoked_sessions",
                "SELECT * FROM leadflow.login_failures"):
        assert isinstance(refused(pool, world, sql), psycopg2.errors.InsufficientPrivilege), sql
    # What the reports need of a user is there.
    with pool.cursor(principal(world, "admin_a"), world.a.broker_id) as cur:
        cur.execute("SELECT email, role FROM leadflow.users WHERE user_id = %s", (world.users["agent_a"].user_id,))
        assert cur.fetchone() == (world.users["agent_a"].email, "AGENT")


def test_the_scope_cannot_be_set_again_forged_or_replayed(pool: ScopedPool, world: World) -> None:
    forged = psycopg2.Binary(b"\0" * 32)
    # A second scope in the same transaction, even with a right-looking call.
    error = refused(pool, world, "SELECT leadflow.enter_reports_scope(NULL, true, 1, NULL, %s)", (forged,))
    assert "has its scope already" in str(error)
    # A new transaction has no scope at all, and a forged proof does not give it one.
    with pool.cursor(principal(world, "admin_a"), world.a.broker_id) as cur:
        cur.execute("COMMIT; BEGIN")
        assert brokers_seen(cur) == set()
        with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="no proof"):
            cur.execute("SELECT leadflow.enter_reports_scope(NULL, true, 1, NULL, %s)", (forged,))
    # A genuine proof is good for its own backend and transaction only.
    key = pool._key
    with pool.cursor(principal(world, "admin_a"), world.a.broker_id) as cur:
        cur.execute("COMMIT; BEGIN; SELECT pg_backend_pid(), pg_current_xact_id()::text")
        pid, xact = cur.fetchone() or (0, "")
        proof = psycopg2.Binary(key.proof(scope_message(pid, xact, None, True, 1, None)))
        cur.execute("COMMIT; BEGIN")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="no proof"):
            cur.execute("SELECT leadflow.enter_reports_scope(NULL, true, 1, NULL, %s)", (proof,))


def test_writes_are_refused(pool: ScopedPool, world: World) -> None:
    for sql in ("UPDATE leadflow.leads SET display_name = 'x'", "DELETE FROM leadflow.users",
                "INSERT INTO leadflow.reports_scopes VALUES (1, '1', NULL, true, 1, NULL)"):
        assert isinstance(refused(pool, world, sql), psycopg2.errors.ReadOnlySqlTransaction), sql


def _lead_rows(cur: psycopg2.extensions.cursor, table: str, broker_id: int) -> list[int]:
    """The lead of each of the broker's rows in ``table`` (raw messages: through message_leads)."""
    if table == "raw_messages":
        cur.execute("""SELECT ml.lead_id FROM leadflow.raw_messages m
                       JOIN leadflow.message_leads ml USING (message_id) WHERE m.broker_id = %s""", (broker_id,))
    else:
        cur.execute(f"SELECT lead_id FROM leadflow.{table} WHERE broker_id = %s", (broker_id,))
    return sorted(lead for (lead,) in cur.fetchall())


@pytest.mark.parametrize("table", ["raw_messages", *LEAD_TABLES])
def test_an_agent_reads_only_the_rows_of_its_own_leads_in_every_lead_table(
        pool: ScopedPool, world: World, settings: Settings, table: str) -> None:
    with transaction(settings.database_url) as conn, conn.cursor() as cur:  # as the owner: everything
        everything = _lead_rows(cur, table, world.a.broker_id)
        if table == "raw_messages":
            cur.execute("SELECT count(*) FROM leadflow.raw_messages WHERE broker_id = %s", (world.a.broker_id,))
            all_messages = int((cur.fetchone() or (0,))[0])
    with pool.cursor(principal(world, "agent_a"), world.a.broker_id) as cur:
        seen = _lead_rows(cur, table, world.a.broker_id) if table != "raw_messages" else None
        if table == "raw_messages":
            cur.execute("SELECT message_id FROM leadflow.raw_messages")
            messages = [m for (m,) in cur.fetchall()]
            cur.execute("SELECT lead_id FROM leadflow.message_leads WHERE message_id = ANY(%s)", (messages,))
            seen = sorted(lead for (lead,) in cur.fetchall())
            assert len(messages) == len(seen) < all_messages  # not a message the agent cannot tie to its leads
    assert seen == [lead for lead in everything if lead in world.agent_leads], table
    if table in ("raw_messages", "message_leads", "lead_qualifications", "lead_scores", "lead_stages", "stage_events",
                 "lead_handlers", "agent_replies", "agent_notifications"):
        # The broker has rows of other leads, and the agent has rows of its own: the rule is what hides them.
        assert set(everything) - set(world.agent_leads) and seen, table
    with pool.cursor(principal(world, "admin_a"), world.a.broker_id) as cur:
        if table == "raw_messages":
            cur.execute("SELECT count(*) FROM leadflow.raw_messages")
            assert (cur.fetchone() or (0,))[0] == all_messages
        else:
            assert _lead_rows(cur, table, world.a.broker_id) == everything


def test_an_agent_cannot_read_another_agents_conversation_or_qualification(
        pool: ScopedPool, world: World, settings: Settings) -> None:
    other = _other_lead(settings, world)
    with pool.cursor(principal(world, "agent_a"), world.a.broker_id) as cur:
        cur.execute("""SELECT m.body FROM leadflow.raw_messages m JOIN leadflow.message_leads ml USING (message_id)
                       WHERE ml.lead_id = %s""", (other,))
        assert cur.fetchall() == []
        cur.execute("SELECT count(*) FROM leadflow.lead_qualifications WHERE lead_id = %s", (other,))
        assert cur.fetchone() == (0,)
        cur.execute("SELECT count(*) FROM leadflow.lead_qualifications WHERE lead_id = %s", (world.agent_leads[0],))
        assert cur.fetchone() == (1,)


def test_the_marts_keep_their_broker_policy(pool: ScopedPool, world: World, settings: Settings) -> None:
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("""SELECT tablename, qual FROM pg_policies WHERE schemaname = 'marts'
                       AND policyname = 'broker_isolation'""")
        policies = dict(cur.fetchall())
    assert {"fct_funnel_daily", "fct_cohorts_weekly", "fct_campaign_attribution"} <= set(policies)
    assert all("reports_broker_id" in qual for qual in policies.values()), policies
    with pool.all_brokers_cursor(principal(world, "superadmin")) as cur:
        cur.execute("SELECT DISTINCT broker_id FROM marts.fct_funnel_daily")
        assert {world.a.broker_id, world.b.broker_id} <= {b for (b,) in cur.fetchall()}


def test_the_login_roles_password_is_a_setting_required_off_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    unset = Settings.from_environment({})
    assert login_password(unset, "postgresql://leadflow@127.0.0.1:5432/leadflow") == LOCAL_PASSWORD
    assert login_password(unset, "postgresql://leadflow@localhost/leadflow") == LOCAL_PASSWORD
    with pytest.raises(ConfigurationError, match="LEADFLOW_REPORTS_DB_PASSWORD must be set"):
        login_password(unset, "postgresql://leadflow:x@postgres:5432/leadflow")
    given = Settings.from_environment({"LEADFLOW_REPORTS_DB_PASSWORD": "s3cret-enough-for-prod"})
    assert login_password(given, "postgresql://leadflow:x@postgres:5432/leadflow") == "s3cret-enough-for-prod"
    with pytest.raises(ConfigurationError, match="16 characters"):
        prepare_login("postgresql://nobody@127.0.0.1:1/none", "short")
    with pytest.raises(ConfigurationError, match=r"LEADFLOW_REPORTS_DB_PASSWORD=\(hidden\)") as caught:
        Settings.from_environment({"LEADFLOW_REPORTS_DB_PASSWORD": "with space-secret"})
    assert "space-secret" not in str(caught.value)
    assert "hunter" not in repr(Settings.from_environment({"LEADFLOW_REPORTS_DB_PASSWORD": "hunter2-hunter2-x"}))


def test_the_role_gets_a_scram_verifier_never_the_password(settings: Settings, world: World) -> None:
    ScopedPool(settings.database_url, 1).close()
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if not (cur.fetchone() or (False,))[0]:
            pytest.skip("only a superuser reads pg_authid")
        cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (LOGIN_ROLE,))
        stored = str((cur.fetchone() or ("",))[0])
    assert stored.startswith("SCRAM-SHA-256$4096:") and LOCAL_PASSWORD not in stored
