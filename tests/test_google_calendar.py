"""Google Calendar for appointments against a local fake Google (OAuth + Calendar API on 127.0.0.1), with the real
httpx client: tokens sealed, the refresh-token flow, a connection that breaks and the admin told, etag conflicts,
backoff, Meet links, deletions, and freeBusy into the availability the agent offers."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest

from leadflow.appointments import google, store
from leadflow.appointments.calendar_sync import SyncResult, event_id, sync_calendars
from leadflow.appointments.slots import Slot
from leadflow.brokers import Broker
from leadflow.config import Settings
from leadflow.credentials import MasterKeys
from leadflow.db.connection import transaction
from leadflow.users import add_user
from tests.conftest import BrokerFactory
from tests.fake_google import CLIENT_ID, CLIENT_SECRET, FakeGoogle, Scripted
from tests.lead_rows import give_first_messages

pytestmark = pytest.mark.services
SANTIAGO = ZoneInfo("America/Santiago")
# A Monday far from any daylight-saving change; "now" is always passed, never read from the clock.
NOW = datetime(2027, 3, 1, 8, 0, tzinfo=SANTIAGO)
REDIRECT = "http://127.0.0.1:9/dashboard/google-calendar/callback"


@pytest.fixture
def fake() -> Iterator[FakeGoogle]:
    server = FakeGoogle().start()
    yield server
    server.stop()


@dataclass
class Rig:
    url: str
    keys: MasterKeys
    fake: FakeGoogle
    client: google.Google
    waits: list[float]

    def sync(self, broker: Broker, now: datetime = NOW) -> SyncResult:
        return sync_calendars(self.url, self.keys, self.client, now, [broker.broker_id])

    def rows(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        with transaction(self.url) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()


@pytest.fixture
def rig(settings: Settings, fake: FakeGoogle, monkeypatch: pytest.MonkeyPatch) -> Rig:
    monkeypatch.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")  # people are made by the dozen here; their passwords unused
    waits: list[float] = []
    client = google.Google(fake.api_url, fake.auth_url, fake.token_url, CLIENT_ID, CLIENT_SECRET,
                           sleep=waits.append, max_wait_s=20.0)
    return Rig(settings.database_url, MasterKeys.from_settings(settings), fake, client, waits)


def person(rig: Rig, broker: Broker, name: str, role: str = "AGENT", schedule: bool = True) -> int:
    user = add_user(rig.url, f"{name.lower()}-{broker.slug}@example.com", "a-long-password-1", role=role,
                    broker_slug=broker.slug, display_name=name)
    if schedule:
        rig.rows("INSERT INTO leadflow.agent_schedules (user_id, broker_id) VALUES (%s, %s) RETURNING 1",
                 user.user_id, broker.broker_id)
    return user.user_id


def connect(rig: Rig, broker: Broker, agent_key: int, by: int) -> google.Connection:
    """The whole OAuth dance as the page does it, minus the page: begin → consent → take → exchange → save."""
    oauth = rig.client.oauth(broker.slug)
    with transaction(rig.url) as conn, conn.cursor() as cur:
        where = google.begin(cur, rig.keys, oauth, broker.broker_id, by, agent_key, REDIRECT, NOW)
    consent = httpx.get(where, follow_redirects=False)
    assert consent.status_code == 302, consent.text
    answer = {k: v[0] for k, v in parse_qs(urlsplit(consent.headers["location"]).query).items()}
    with transaction(rig.url) as conn, conn.cursor() as cur:
        pending = google.take(cur, rig.keys, answer["state"], by, NOW)
        assert pending is not None and pending.agent_key == agent_key
        with httpx.Client() as http:
            tokens = google.exchange(http, oauth, answer["code"], pending.verifier, pending.redirect_uri, NOW)
        return google.save(cur, rig.keys, broker.broker_id, agent_key, tokens, by, NOW)


def lead(rig: Rig, broker: Broker, name: str = "Carla Rojas") -> int:
    with transaction(rig.url) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.leads (lead_id, broker_id, display_name, phone_e164)
                       VALUES (nextval('leadflow.lead_id_seq'), %s, %s, '+56911112222') RETURNING lead_id""",
                    (broker.broker_id, name))
        lead_id = int(cur.fetchone()[0])  # type: ignore[index]
        give_first_messages(cur, broker.broker_id, [lead_id], NOW)
    return lead_id


def book(rig: Rig, broker: Broker, lead_id: int, hour: int = 11, *, agent: int | None = None,
         kind: str = "in_person", day: int = 2) -> store.Appointment:
    start = datetime(2027, 3, day, hour, 0, tzinfo=SANTIAGO)
    with transaction(rig.url) as conn, conn.cursor() as cur:
        booked = store.book(cur, broker.broker_id, lead_id, Slot(start, start + timedelta(hours=1), (agent,)), NOW,
                            source="person", actor="system", status="proposed", kind=kind,  # type: ignore[arg-type]
                            address="Av. Providencia 1234", agent_id=agent, check_free=False)
    assert isinstance(booked, store.Appointment)
    return booked


def calendar_row(rig: Rig, appointment_id: int) -> tuple[object, ...]:
    return rig.rows("""SELECT calendar_state, calendar_event_id, calendar_etag, meet_link, calendar_error
                       FROM leadflow.appointments WHERE appointment_id = %s""", appointment_id)[0]


def change(rig: Rig, broker: Broker, appointment_id: int, to: str, now: datetime = NOW) -> None:
    with transaction(rig.url) as conn, conn.cursor() as cur:
        store.change_status(cur, broker.broker_id, appointment_id, to, now, actor="system")  # type: ignore[arg-type]


def test_a_connection_keeps_its_tokens_sealed_and_never_shows_them(rig: Rig, make_broker: BrokerFactory,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broker = make_broker()
    admin = person(rig, broker, "Admin", role="ADMIN", schedule=False)
    saved = connect(rig, broker, 0, admin)
    assert (saved.status, saved.account_email, saved.calendar_id) == ("connected", rig.fake.email, "primary")
    issued = rig.fake.secrets_issued()
    assert len(issued) == 2
    with transaction(rig.url) as conn, conn.cursor() as cur:
        assert all(secret not in repr(google.tokens_of(cur, rig.keys, saved)) for secret in issued)
    (row,) = rig.rows("SELECT wrapped_key, ciphertext, scopes, coalesce(last_error, '') FROM "
                      "leadflow.google_calendar_connections WHERE broker_id = %s", broker.broker_id)
    stored = b"".join(bytes(v) if isinstance(v, memoryview) else str(v).encode() for v in row)
    assert all(secret.encode() not in stored for secret in issued)
    audit = json.dumps(rig.rows("SELECT action, before, after FROM leadflow.audit_log WHERE broker_id = %s",
                                broker.broker_id), default=str)
    assert "calendar.connected" in audit and rig.fake.email in audit
    assert all(secret not in audit and secret not in caplog.text for secret in issued)
    # The PKCE verifier went to the token endpoint and matched the challenge; the state was used once.
    assert rig.fake.token_calls()[0].body["code_verifier"]
    assert rig.rows("SELECT count(*) FROM leadflow.google_oauth_states WHERE broker_id = %s",
                    broker.broker_id) == [(0,)]
    # A sealed row moved to another broker does not open there.
    other = make_broker()
    with transaction(rig.url) as conn, conn.cursor() as cur:
        moved = replace(saved, broker_id=other.broker_id)
        with pytest.raises(Exception, match="does not open"):
            google.tokens_of(cur, rig.keys, moved)


def test_an_unknown_expired_or_someone_elses_state_is_refused_and_consumes_nothing(
        rig: Rig, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    ana = person(rig, broker, "Ana")
    ben = person(rig, broker, "Ben")
    oauth = rig.client.oauth(broker.slug)
    with transaction(rig.url) as conn, conn.cursor() as cur:
        where = google.begin(cur, rig.keys, oauth, broker.broker_id, ana, ana, REDIRECT, NOW)
    state = parse_qs(urlsplit(where).query)["state"][0]
    with transaction(rig.url) as conn, conn.cursor() as cur:
        assert google.take(cur, rig.keys, state + "x", ana, NOW) is None
        assert google.take(cur, rig.keys, state, ben, NOW) is None  # Ben holding Ana's link
        assert google.take(cur, rig.keys, state, ana, NOW + google.STATE_TTL + timedelta(seconds=1)) is None
        # Expired: spent, and gone.
        assert google.take(cur, rig.keys, state, ana, NOW) is None


def test_an_expired_access_token_is_refreshed_stored_and_the_call_retried_once(
        rig: Rig, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    admin = person(rig, broker, "Admin", role="ADMIN", schedule=False)
    conn_before = connect(rig, broker, 0, admin)
    visit = book(rig, broker, lead(rig, broker))
    rig.fake.expire_access_tokens()
    with transaction(rig.url) as conn, conn.cursor() as cur:
        old = google.tokens_of(cur, rig.keys, conn_before)

    result = rig.sync(broker)

    assert result.created == 1 and not result.broken
    inserts = rig.fake.calendar_calls("POST")
    assert [r.status for r in inserts if r.path.endswith("/events")] == [401, 200]
    assert [r.body["grant_type"] for r in rig.fake.token_calls()] == ["authorization_code", "refresh_token"]
    with transaction(rig.url) as conn, conn.cursor() as cur:
        new = google.tokens_of(cur, rig.keys, conn_before)
    assert new.access_token != old.access_token and new.refresh_token == old.refresh_token
    assert rig.fake.access[new.access_token]
    state, ident, etag, _meet, error = calendar_row(rig, visit.appointment_id)
    assert (state, ident, error) == ("synced", event_id(broker.broker_id, visit.appointment_id), None)
    event = rig.fake.calendar()[str(ident)]
    assert event["etag"] == etag and event["transparency"] == "transparent"
    assert event["summary"] == "Visita: Carla Rojas" and event["location"] == "Av. Providencia 1234"
    assert event["start"] == {"dateTime": "2027-03-02T11:00:00-03:00", "timeZone": "America/Santiago"}


def test_a_second_401_marks_the_connection_broken_tells_the_admin_and_keeps_the_visit_pending(
        rig: Rig, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    admin = person(rig, broker, "Admin", role="ADMIN", schedule=False)
    connect(rig, broker, 0, admin)
    first, second = book(rig, broker, lead(rig, broker), 11), book(rig, broker, lead(rig, broker, "Diego"), 15)
    rig.fake.refuse_all = True

    result = rig.sync(broker)

    assert result.broken == [f"{broker.broker_id}/0"] and result.created == 0
    for visit in (first, second):
        state, ident, _etag, _meet, error = calendar_row(rig, visit.appointment_id)
        assert state == "pending" and ident is None and "rota" in str(error)
    (status, last_error), = rig.rows("SELECT status, last_error FROM leadflow.google_calendar_connections "
                                     "WHERE broker_id = %s", broker.broker_id)
    assert status == "broken" and "401" in str(last_error)
    # One refresh and one retry, then no more calls for this connection in the run.
    assert [r.status for r in rig.fake.calendar_calls()] == [401, 401]
    told = rig.rows("SELECT user_id, after FROM leadflow.audit_log WHERE broker_id = %s AND action = 'calendar.broken'",
                    broker.broker_id)
    assert len(told) == 1 and told[0][0] == admin
    assert all(s not in json.dumps(told, default=str) for s in rig.fake.secrets_issued())
    # A later run neither calls Google nor tells the admin again; reconnecting sends the visits.
    calls = len(rig.fake.requests)
    rig.sync(broker)
    assert len(rig.fake.requests) == calls
    assert len(rig.rows("SELECT 1 FROM leadflow.audit_log WHERE broker_id = %s AND action = 'calendar.broken'",
                        broker.broker_id)) == 1
    rig.fake.refuse_all = False
    connect(rig, broker, 0, admin)
    assert rig.sync(broker).created == 2


def test_a_revoked_refresh_token_breaks_the_connection(rig: Rig, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    admin = person(rig, broker, "Admin", role="ADMIN", schedule=False)
    connect(rig, broker, 0, admin)
    visit = book(rig, broker, lead(rig, broker))
    rig.fake.expire_access_tokens()
    rig.fake.revoke()
    result = rig.sync(broker)
    assert result.broken and "invalid_grant" in str(calendar_row(rig, visit.appointment_id)[4])


def test_an_event_edited_in_google_is_read_again_and_the_update_retried(rig: Rig, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    admin = person(rig, broker, "Admin", role="ADMIN", schedule=False)
    connect(rig, broker, 0, admin)
    visit = book(rig, broker, lead(rig, broker), kind="in_person")
    rig.sync(broker)
    _state, ident, etag, _meet, _error = calendar_row(rig, visit.appointment_id)
    # Someone adds a note in Google: the etag we hold is stale now.
    event = rig.fake.calendar()[str(ident)]
    event["etag"], event["colorId"] = '"edited-in-google"', "5"
    change(rig, broker, visit.appointment_id, "confirmed")
    before = len(rig.fake.requests)

    result = rig.sync(broker)

    calls = [(r.method, r.status, r.headers.get("if-match")) for r in rig.fake.requests[before:]
             if r.path.startswith("/calendar/v3/calendars")]
    assert calls == [("PATCH", 412, etag), ("GET", 200, None), ("PATCH", 200, '"edited-in-google"')]
    assert result.updated == 1
    state, _ident, new_etag, _meet, _error = calendar_row(rig, visit.appointment_id)
    assert state == "synced" and new_etag == rig.fake.calendar()[str(ident)]["etag"]
    assert rig.fake.calendar()[str(ident)]["colorId"] == "5"  # their edit kept, ours applied


def test_429_and_5xx_back_off_as_told_then_leave_the_visit_pending_with_the_reason(
        rig: Rig, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    admin = person(rig, broker, "Admin", role="ADMIN", schedule=False)
    connect(rig, broker, 0, admin)
    visit = book(rig, broker, lead(rig, broker))
    # A 429 asking for 7 s, then a 503: the third try gets in.
    rig.fake.script(Scripted(429, retry_after=7), Scripted(503))
    assert rig.sync(broker).created == 1
    assert rig.waits == [7.0, 2.0]
    # Down for good: three tries (Retry-After 120 capped at 20 s), then pending with the reason, nothing lost; the
    # next visit on that calendar waits too, without three more tries; no freeBusy either.
    rig.waits.clear()
    other = book(rig, broker, lead(rig, broker, "Elena"), 15)
    third = book(rig, broker, lead(rig, broker, "Fabián"), 17)
    rig.fake.script(Scripted(500), Scripted(429, retry_after=120), Scripted(500))
    calls = len(rig.fake.calendar_calls())
    result = rig.sync(broker)
    assert rig.waits == [1.0, 20.0] and len(rig.fake.calendar_calls()) == calls + 3
    for waiting in (other, third):
        state, ident, _etag, _meet, error = calendar_row(rig, waiting.appointment_id)
        assert state == "pending" and ident is None and error == "Google Calendar answered 500 after 3 tries"
    assert sum(result.pending.values()) == 2 and result.busy_read == 0
    assert calendar_row(rig, visit.appointment_id)[0] == "synced"
    # The next run, Google back: written.
    assert rig.sync(broker).created == 2 and calendar_row(rig, other.appointment_id)[0] == "synced"


def test_a_virtual_visit_gets_a_meet_link_a_cancelled_one_is_deleted_a_held_one_marked(
        rig: Rig, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    admin = person(rig, broker, "Admin", role="ADMIN", schedule=False)
    connect(rig, broker, 0, admin)
    online = book(rig, broker, lead(rig, broker), 10, kind="virtual")
    dropped = book(rig, broker, lead(rig, broker, "Felipe"), 13)
    held = book(rig, broker, lead(rig, broker, "Gabriela"), 16)
    rig.sync(broker)
    insert = next(r for r in rig.fake.calendar_calls("POST") if r.body.get("id") == event_id(broker.broker_id,
                                                                                               online.appointment_id))
    assert insert.query == {"conferenceDataVersion": "1"}
    assert insert.body["conferenceData"]["createRequest"]["conferenceSolutionKey"] == {"type": "hangoutsMeet"}
    meet = calendar_row(rig, online.appointment_id)[3]
    assert str(meet).startswith("https://meet.google.com/")
    assert rig.rows("SELECT meet_link FROM leadflow.appointments WHERE appointment_id = %s",
                    online.appointment_id) == [(meet,)]

    change(rig, broker, dropped.appointment_id, "cancelled")
    change(rig, broker, held.appointment_id, "confirmed")
    change(rig, broker, held.appointment_id, "completed", NOW + timedelta(days=2))
    result = rig.sync(broker, NOW + timedelta(days=2))
    assert result.deleted == 1
    assert event_id(broker.broker_id, dropped.appointment_id) not in rig.fake.calendar()
    assert calendar_row(rig, dropped.appointment_id)[:2] == ("synced", None)
    assert rig.fake.calendar()[event_id(broker.broker_id, held.appointment_id)]["summary"] == \
        "[Realizada] Visita: Gabriela"
    # Deleted in Google already (by a person): a later delete is fine, 404/410 means gone.
    with transaction(rig.url) as conn, conn.cursor() as cur:
        found = google.connection(cur, broker.broker_id, 0)
        assert found is not None
        tokens = google.tokens_of(cur, rig.keys, found)
    with httpx.Client() as http:
        session = google.CalendarSession(rig.client, http, rig.client.oauth(broker.slug), tokens, "primary",
                                         lambda t: None, NOW)
        assert session.delete(event_id(broker.broker_id, dropped.appointment_id)) is False


def test_a_crash_between_insert_and_commit_does_not_make_a_second_event(rig: Rig, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    admin = person(rig, broker, "Admin", role="ADMIN", schedule=False)
    connect(rig, broker, 0, admin)
    visit = book(rig, broker, lead(rig, broker))
    rig.sync(broker)
    # As if the run died before storing the event: the next run inserts again, gets 409 and patches the same one.
    rig.rows("UPDATE leadflow.appointments SET calendar_state = 'pending', calendar_event_id = NULL, "
             "calendar_etag = NULL WHERE appointment_id = %s RETURNING 1", visit.appointment_id)
    result = rig.sync(broker)
    assert (result.created, result.updated) == (0, 1)
    assert list(rig.fake.calendar()) == [event_id(broker.broker_id, visit.appointment_id)]
    assert calendar_row(rig, visit.appointment_id)[0] == "synced"


def test_busy_times_come_from_each_persons_calendar_and_are_no_longer_offered(
        rig: Rig, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    ana = person(rig, broker, "Ana")
    ben = person(rig, broker, "Ben")
    connect(rig, broker, ana, ana)
    own = book(rig, broker, lead(rig, broker), 11, agent=ana)
    # Ana's own calendar: a dentist at 15:00 on Tuesday, and our own visit at 11:00 shown busy (made opaque by hand).
    dentist = (datetime(2027, 3, 2, 15, 0, tzinfo=SANTIAGO), datetime(2027, 3, 2, 16, 0, tzinfo=SANTIAGO))
    rig.fake.busy["primary"] = [{"start": dentist[0].isoformat(), "end": dentist[1].isoformat()},
                                {"start": own.starts_at.isoformat(), "end": own.ends_at.isoformat()}]
    with transaction(rig.url) as conn, conn.cursor() as cur:
        before = store.available(cur, broker.broker_id, NOW)
    at_three = next(s for s in before if s.start == dentist[0])
    assert set(at_three.agents) == {ana, ben}

    result = rig.sync(broker)

    assert (result.busy_read, result.busy_intervals) == (1, 1)
    freebusy = next(r for r in rig.fake.calendar_calls("POST") if r.path.endswith("/freeBusy"))
    assert freebusy.body["items"] == [{"id": "primary"}]
    assert rig.rows("SELECT agent_key, starts_at, ends_at FROM leadflow.calendar_busy WHERE broker_id = %s",
                    broker.broker_id) == [(ana, *dentist)]
    with transaction(rig.url) as conn, conn.cursor() as cur:
        after = store.available(cur, broker.broker_id, NOW)
    assert next(s for s in after if s.start == dentist[0]).agents == (ben,)
    # Ana's 11:00 is blocked by the visit itself (the appointments table), not twice.
    assert all(ana not in s.agents for s in after if s.start == own.starts_at)
    # Replaced, not added to: the dentist cancelled, Ana is free at 15:00 again.
    rig.fake.busy["primary"] = []
    rig.sync(broker)
    assert rig.rows("SELECT count(*) FROM leadflow.calendar_busy WHERE broker_id = %s", broker.broker_id) == [(0,)]


def test_a_visit_goes_to_its_persons_calendar_else_the_brokers_and_never_another_brokers(
        rig: Rig, make_broker: BrokerFactory) -> None:
    a, b = make_broker(), make_broker()
    ana = person(rig, a, "Ana")
    ben = person(rig, a, "Ben")
    admin_a = person(rig, a, "AdminA", role="ADMIN", schedule=False)
    connect(rig, a, ana, ana)
    rig.fake.email = "corredora@a.example"
    connect(rig, a, 0, admin_a)
    anas, bens = book(rig, a, lead(rig, a), 11, agent=ana), book(rig, a, lead(rig, a, "Hugo"), 11, agent=ben)
    rig.fake.busy["primary"] = [{"start": "2027-03-03T12:00:00Z", "end": "2027-03-03T13:00:00Z"}]
    orphan = book(rig, b, lead(rig, b, "Inés"))

    rig.sync(a)
    result_b = rig.sync(b)

    assert calendar_row(rig, anas.appointment_id)[0] == calendar_row(rig, bens.appointment_id)[0] == "synced"
    # Ben has no calendar of his own: his visit went to the broker's, through the broker's tokens.
    tokens_used = {r.headers["authorization"] for r in rig.fake.calendar_calls("POST") if r.path.endswith("/events")}
    assert len(tokens_used) == 2
    # Broker B has no connection: its visit is not_connected, nothing of A's calendar reached B's availability.
    assert result_b.not_connected == 1 and calendar_row(rig, orphan.appointment_id)[0] == "not_connected"
    assert rig.rows("SELECT count(*) FROM leadflow.calendar_busy WHERE broker_id = %s", b.broker_id) == [(0,)]
    assert rig.rows("SELECT count(*) FROM leadflow.calendar_busy WHERE broker_id = %s", a.broker_id) == [(2,)]
    # B connects: the visit goes back to the sync and is written.
    admin_b = person(rig, b, "AdminB", role="ADMIN", schedule=False)
    connect(rig, b, 0, admin_b)
    assert calendar_row(rig, orphan.appointment_id)[0] == "pending"
    assert rig.sync(b).created == 1


def test_the_dagster_asset_and_the_cli_run_the_sync(rig: Rig, make_broker: BrokerFactory, settings: Settings,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from dagster import materialize

    from assets.appointment_calendar import appointment_calendar
    from leadflow.cli import main
    from pipelines.resources import GoogleCalendarResource, PostgresResource

    for name, value in (("LEADFLOW_GOOGLE_CALENDAR_API_URL", rig.fake.api_url),
                        ("LEADFLOW_GOOGLE_OAUTH_TOKEN_URL", rig.fake.token_url),
                        ("LEADFLOW_GOOGLE_OAUTH_CLIENT_ID", CLIENT_ID),
                        ("LEADFLOW_GOOGLE_OAUTH_CLIENT_SECRET", CLIENT_SECRET)):
        monkeypatch.setenv(name, value)
    broker = make_broker()
    admin = person(rig, broker, "Admin", role="ADMIN", schedule=False)
    connect(rig, broker, 0, admin)
    first = book(rig, broker, lead(rig, broker), 11)
    run = materialize([appointment_calendar], run_config={"ops": {"appointment_calendar": {"config": {
        "as_of": NOW.isoformat()}}}}, resources={
        "postgres": PostgresResource(url=settings.database_url),
        "google_calendar": GoogleCalendarResource(api_url=rig.fake.api_url, token_url=rig.fake.token_url)})
    assert run.success
    [materialized] = run.asset_materializations_for_node("appointment_calendar")
    assert materialized.metadata["created"].value == 1
    assert calendar_row(rig, first.appointment_id)[0] == "synced"

    second = book(rig, broker, lead(rig, broker, "Juana"), 15)
    assert main(["calendar", "sync", "--broker", broker.slug]) == 0
    assert "1 created" in capsys.readouterr().out
    assert calendar_row(rig, second.appointment_id)[0] == "synced"
    assert main(["calendar", "sync", "--broker", "no-such-broker"]) == 1


def test_a_visit_moves_to_its_persons_calendar_once_they_connect_it(rig: Rig, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    admin = person(rig, broker, "Admin", role="ADMIN", schedule=False)
    ana = person(rig, broker, "Ana")
    rig.fake.email = "oficina@corredora.example"
    connect(rig, broker, 0, admin)
    visit = book(rig, broker, lead(rig, broker), 11, agent=ana)
    rig.sync(broker)
    ident = event_id(broker.broker_id, visit.appointment_id)
    office, anas = rig.fake.calendar("oficina@corredora.example"), rig.fake.calendar("ana@corredora.example")
    assert ident in office
    # Ana connects her own calendar; the visit is confirmed: it leaves the office's calendar for hers.
    rig.fake.email = "ana@corredora.example"
    connect(rig, broker, ana, ana)
    change(rig, broker, visit.appointment_id, "confirmed")
    rig.sync(broker)
    assert ident not in office and ident in anas
    assert rig.rows("SELECT calendar_state, calendar_owner FROM leadflow.appointments WHERE appointment_id = %s",
                    visit.appointment_id) == [("synced", ana)]
    # Cancelled: deleted from where it is, Ana's.
    change(rig, broker, visit.appointment_id, "cancelled")
    assert rig.sync(broker).deleted == 1 and ident not in anas


def test_only_a_google_meet_link_is_kept_for_leads() -> None:
    # Whoever edits the event in Google could point the link that reminders send to leads anywhere.
    from leadflow.appointments.calendar_sync import _meet

    assert _meet("https://meet.google.com/abc-defg-hij") == "https://meet.google.com/abc-defg-hij"
    for link in ("https://evil.example/meet.google.com/x", "http://meet.google.com/abc", "javascript:alert(1)",
                 None, 7):
        assert _meet(link) is None
