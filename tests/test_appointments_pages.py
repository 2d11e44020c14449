"""Visits in the reports app (issue 15): the visiting rules as a settings section, each person's schedule, the JSON
routes and the pages (calendar, booking from the lead page, status changes, rescheduling) on real PostgreSQL.

The app's clock is fixed (``app.state.clock``) on a Monday far from any daylight-saving change, so what is free
does not depend on the day the tests run. Tenancy: another broker's admin is refused everything and sees none of
these visits; an AGENT sees and changes only its own leads' visits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg2
import psycopg2.errors
import pytest
from fastapi.testclient import TestClient

from leadflow.brokers import Broker, add_broker
from leadflow.db.connection import transaction
from leadflow.settings_schema import SettingsError, effective, validate
from leadflow.users import User, add_user, assign_leads
from reports_api.app import create_app
from reports_api.dashboard import COOKIE
from reports_api.routes.appointments_pages import person_hours_parsed, rules_parsed, rules_shown
from reports_api.security import Principal, TokenSettings, issue_token
from reports_api.workspace import appointments, csrf
from reports_api.workspace.db import write_cursor
from tests.lead_rows import give_first_messages

SANTIAGO = ZoneInfo("America/Santiago")
# A Monday in March 2027, weeks from Chile's change in April; "now" for the app.
NOW = datetime(2027, 3, 1, 8, 0, tzinfo=SANTIAGO)
PASSWORD = "una-clave-larga-de-prueba"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2027, 3, day, hour, minute, tzinfo=SANTIAGO)


# --- the section, pure ------------------------------------------------------------------------------------------

def refused(value: Any) -> dict[str, str]:
    with pytest.raises(SettingsError) as caught:
        validate("appointments", value)
    return {p.field: p.message for p in caught.value.problems}


def test_the_visiting_rules_store_only_what_differs_and_read_back_with_the_defaults() -> None:
    assert validate("appointments", effective("appointments", {})) == {}
    two_windows = {"mon": [{"start": "09:00", "end": "13:00"}, {"start": "15:00", "end": "19:00"}]}
    stored = validate("appointments", {"hours": two_windows, "visit_minutes": 45, "holidays": ["2027-09-18"]})
    assert stored == {"hours": two_windows, "visit_minutes": 45, "holidays": ["2027-09-18"]}
    shown = effective("appointments", stored)
    assert shown["buffer_minutes"] == 30 and shown["hours"] == two_windows and shown["reminder_hours"] == [24, 1]


def test_bad_visiting_rules_name_each_field() -> None:
    problems = refused({"hours": {"mon": [{"start": "10:00", "end": "09:00"}]},
                        "visit_minutes": 5, "step_minutes": 25, "holidays": ["el 18"], "colour": "red"})
    assert problems["hours.mon[0]"] == "ends (09:00) before it starts (10:00)"
    overlap = refused({"hours": {"tue": [{"start": "09:00", "end": "12:00"}, {"start": "11:00", "end": "13:00"}]}})
    assert overlap["hours"] == "tue: 09:00–12:00 and 11:00–13:00 overlap"  # about the day's windows together
    assert set(problems) >= {"visit_minutes", "step_minutes", "holidays[0]", "colour"}
    assert "long enough" in refused({"visit_minutes": 240, "hours": {"sat": [{"start": "10:00", "end": "13:00"}]}})[
        "hours"]


def test_the_form_reads_one_or_two_windows_a_day_and_names_what_it_cannot_read() -> None:
    shown = rules_shown(effective("appointments", {}))
    assert shown["mon_start1"] == "09:00" and shown["sat_end1"] == "14:00" and shown["sun_start1"] == ""
    form = {k: [v] for k, v in shown.items()}
    form.update({"tue_start2": ["15:00"], "tue_end2": ["18:00"], "tue_end1": ["13:00"]})
    value, bad = rules_parsed(form)
    assert not bad and value["hours"]["tue"] == [{"start": "09:00", "end": "13:00"}, {"start": "15:00", "end": "18:00"}]
    assert validate("appointments", value)["hours"]["tue"][1] == {"start": "15:00", "end": "18:00"}
    _, bad = rules_parsed({**form, "wed_end1": [""], "visit_minutes": ["una hora"], "holidays": ["18-09"]})
    assert set(bad) == {"hours.wed", "visit_minutes", "holidays"}
    assert person_hours_parsed("mon 9:00-13:00 15:00-19:00\nsat 10:00-14:00") == {
        "mon": [{"start": "09:00", "end": "13:00"}, {"start": "15:00", "end": "19:00"}],
        "sat": [{"start": "10:00", "end": "14:00"}]}
    with pytest.raises(ValueError, match="no es una franja"):
        person_hours_parsed("mon 9-13")


# --- the app ---------------------------------------------------------------------------------------------------

@dataclass
class App:
    client: TestClient
    tokens: TokenSettings
    clock: list[datetime] = field(default_factory=lambda: [NOW])


@dataclass
class Tenant:
    a: Broker
    b: Broker
    users: dict[str, User]  # admin_a, agent_a, admin_b
    leads: list[int]  # of broker a; the first is the AGENT's
    app: App

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.app.tokens, self.users[who])}"}

    def get(self, who: str, path: str, **params: Any) -> Any:
        return self.app.client.get(path, headers=self.headers(who), params=params)

    def post(self, who: str, path: str, body: dict[str, Any]) -> Any:
        return self.app.client.post(path, headers=self.headers(who), json=body)

    def book(self, who: str, lead: int, start: datetime, **body: Any) -> Any:
        return self.post(who, f"/brokers/{self.a.broker_id}/leads/{lead}/appointments",
                         {"start": start.isoformat(), **body})


@pytest.fixture(scope="module")
def app(database_url: str) -> Iterator[App]:
    tokens = TokenSettings.ephemeral()
    state = App(None, tokens)  # type: ignore[arg-type]
    application = create_app(database_url, tokens)
    application.state.clock = lambda: state.clock[0]
    with TestClient(application) as client:
        state.client = client
        yield state


@pytest.fixture
def tenant(database_url: str, app: App, monkeypatch: pytest.MonkeyPatch) -> Tenant:
    app.clock[0] = NOW
    monkeypatch.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
    tag = uuid.uuid4().hex[:8]
    a = add_broker(database_url, f"visitas-a-{tag}", name="Propiedades Andes", country="CL",
                   timezone="America/Santiago")
    b = add_broker(database_url, f"visitas-b-{tag}", name="Bienes Raíces Bajío", country="MX",
                   timezone="America/Mexico_City")
    users = {"admin_a": add_user(database_url, f"admin-{tag}@andes.test", PASSWORD, role="ADMIN", broker_slug=a.slug,
                                 display_name="Ana Admin"),
             "agent_a": add_user(database_url, f"agente-{tag}@andes.test", PASSWORD, role="AGENT",
                                 broker_slug=a.slug, display_name="Beto Agente"),
             "admin_b": add_user(database_url, f"admin-{tag}@bajio.test", PASSWORD, role="ADMIN", broker_slug=b.slug)}
    with transaction(database_url) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.leads (lead_id, broker_id, display_name)
                       SELECT nextval('leadflow.lead_id_seq'), %s, name FROM unnest(%s::text[]) AS name
                       RETURNING lead_id""", (a.broker_id, ["Camila Rojas", "Tomás Pérez", "Rosa Díaz"]))
        leads = sorted(row[0] for row in cur.fetchall())
        give_first_messages(cur, a.broker_id, leads, NOW)
    assign_leads(database_url, users["agent_a"].email, leads[:1])
    return Tenant(a, b, users, leads, app)


def rows(database_url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with transaction(database_url) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


pytestmark = pytest.mark.services


def test_free_slots_follow_the_rules_and_a_booked_time_is_refused_with_nothing_written(
        tenant: Tenant, database_url: str) -> None:
    a = tenant.a.broker_id
    slots = tenant.get("admin_a", f"/brokers/{a}/availability", days=2).json()
    # 08:00 now + two hours' notice: Monday's first slot is 10:00, on the 30-minute grid.
    assert datetime.fromisoformat(slots[0]["start"]) == at(1, 10)
    assert datetime.fromisoformat(slots[1]["start"]) == at(1, 10, 30)
    booked = tenant.book("admin_a", tenant.leads[1], at(1, 11), status="confirmed")
    assert booked.status_code == 201, booked.text
    visit = booked.json()
    assert visit["status"] == "confirmed" and visit["lead_name"] == "Tomás Pérez"
    assert visit["events"][0]["user_id"] == tenant.users["admin_a"].user_id and visit["events"][0]["actor"] == "person"
    assert rows(database_url, "SELECT to_stage, moved_by, automatic FROM leadflow.stage_events WHERE lead_id = %s",
                tenant.leads[1]) == [("agendado", tenant.users["admin_a"].user_id, False)]

    # The same time, and one inside its buffer (11:00 + 60 + 30 minutes), are no longer offered nor bookable.
    starts = {datetime.fromisoformat(s["start"]) for s in tenant.get("admin_a", f"/brokers/{a}/availability",
                                                                    days=1).json()}
    assert at(1, 11) not in starts and at(1, 12) not in starts and at(1, 13, 30) in starts
    again = tenant.book("admin_a", tenant.leads[2], at(1, 11))
    assert again.status_code == 409 and "Ese horario ya no está libre" in again.json()["detail"]
    forced = tenant.book("admin_a", tenant.leads[2], at(1, 12), outside_grid=True)
    assert forced.status_code == 409 and forced.json()["detail"] == appointments.MESSAGES["taken"]
    assert rows(database_url, "SELECT count(*) FROM leadflow.appointments WHERE broker_id = %s", a) == [(1,)]
    assert rows(database_url, "SELECT count(*) FROM leadflow.audit_log WHERE broker_id = %s AND action = %s",
                a, "appointment.book") == [(1,)]


def test_another_brokers_admin_is_refused_and_an_agent_sees_only_its_own_leads_visits(tenant: Tenant) -> None:
    a = tenant.a.broker_id
    own = tenant.book("admin_a", tenant.leads[0], at(1, 10)).json()
    other = tenant.book("admin_a", tenant.leads[1], at(1, 15)).json()
    listed = tenant.get("admin_a", f"/brokers/{a}/appointments", **{"from": "2027-03-01"}).json()
    assert [v["appointment_id"] for v in listed] == [own["appointment_id"], other["appointment_id"]]

    for path in (f"/brokers/{a}/appointments", f"/brokers/{a}/appointments/{own['appointment_id']}",
                 f"/brokers/{a}/availability", f"/brokers/{a}/leads/{tenant.leads[0]}/appointments",
                 f"/brokers/{a}/schedules"):
        assert tenant.get("admin_b", path).status_code == 403, path
    assert tenant.post("admin_b", f"/brokers/{a}/appointments/{own['appointment_id']}/status",
                       {"status": "cancelled"}).status_code == 403
    assert tenant.book("admin_b", tenant.leads[1], at(1, 16)).status_code == 403
    # Broker b's own calendar holds nothing of a's.
    assert tenant.get("admin_b", f"/brokers/{tenant.b.broker_id}/appointments",
                      **{"from": "2027-03-01"}).json() == []

    seen = tenant.get("agent_a", f"/brokers/{a}/appointments", **{"from": "2027-03-01"}).json()
    assert [v["appointment_id"] for v in seen] == [own["appointment_id"]]
    assert tenant.get("agent_a", f"/brokers/{a}/appointments/{other['appointment_id']}").status_code == 404
    assert tenant.post("agent_a", f"/brokers/{a}/appointments/{other['appointment_id']}/status",
                       {"status": "cancelled"}).status_code == 404
    assert tenant.book("agent_a", tenant.leads[1], at(1, 17)).status_code == 404  # not its lead
    outside = tenant.book("agent_a", tenant.leads[0], at(1, 20, 15), outside_grid=True)
    assert outside.status_code == 422 and outside.json()["detail"] == appointments.MESSAGES["admins_only"]
    cancelled = tenant.post("agent_a", f"/brokers/{a}/appointments/{own['appointment_id']}/status",
                            {"status": "cancelled", "note": "el lead viaja"})
    assert cancelled.status_code == 200 and cancelled.json()["events"][-1]["by_name"] == "Beto Agente"
    # Days off of its own do not make it take visits it did not take.
    agent = tenant.users["agent_a"].user_id
    assert tenant.app.client.put(f"/brokers/{a}/schedules/{agent}/days-off", headers=tenant.headers("agent_a"),
                                 json={"days_off": ["2027-03-03"]}).status_code == 200
    listed = {p["user_id"]: p for p in tenant.get("admin_a", f"/brokers/{a}/schedules").json()}
    assert listed[agent]["days_off"] == ["2027-03-03"] and not listed[agent]["takes_visits"]
    # Its own lead, at a free slot: booked, signed by the AGENT.
    rebooked = tenant.book("agent_a", tenant.leads[0], at(1, 17))
    assert rebooked.status_code == 201, rebooked.text
    assert rebooked.json()["events"][0]["user_id"] == tenant.users["agent_a"].user_id


def test_a_visit_is_marked_held_only_once_it_started_and_moves_the_lead_signed_by_the_person(
        tenant: Tenant, database_url: str) -> None:
    a = tenant.a.broker_id
    visit = tenant.book("admin_a", tenant.leads[1], at(2, 10), status="confirmed").json()
    path = f"/brokers/{a}/appointments/{visit['appointment_id']}/status"
    early = tenant.post("admin_a", path, {"status": "completed"})
    assert early.status_code == 409 and early.json()["detail"] == appointments.MESSAGES["not_started"]
    tenant.app.clock[0] = at(2, 10, 5)
    held = tenant.post("admin_a", path, {"status": "completed"})
    assert held.status_code == 200 and held.json()["status"] == "completed"
    assert tenant.post("admin_a", path, {"status": "cancelled"}).status_code == 409
    # A visit marked the wrong way is corrected.
    assert tenant.post("admin_a", path, {"status": "no_show"}).json()["status"] == "no_show"
    assert [(e["from_status"], e["to_status"]) for e in held.json()["events"]] == [(None, "confirmed"),
                                                                                 ("confirmed", "completed")]
    assert rows(database_url, "SELECT to_stage, moved_by FROM leadflow.stage_events WHERE lead_id = %s "
                              "ORDER BY occurred_at, sequence", tenant.leads[1]) == [
        ("agendado", tenant.users["admin_a"].user_id), ("seguimiento", tenant.users["admin_a"].user_id)]


def test_a_reschedule_takes_a_free_slot_and_a_taken_one_leaves_the_visit_where_it_was(tenant: Tenant) -> None:
    a = tenant.a.broker_id
    visit = tenant.book("admin_a", tenant.leads[1], at(2, 10)).json()
    tenant.book("admin_a", tenant.leads[2], at(2, 15))
    path = f"/brokers/{a}/appointments/{visit['appointment_id']}/reschedule"
    taken = tenant.post("admin_a", path, {"start": at(2, 15).isoformat()})
    assert taken.status_code == 409
    assert tenant.get("admin_a", f"/brokers/{a}/appointments/{visit['appointment_id']}").json()["status"] == "proposed"
    moved = tenant.post("admin_a", path, {"start": at(3, 12).isoformat()})
    assert moved.status_code == 200, moved.text
    assert moved.json()["rescheduled_from"] == visit["appointment_id"] and moved.json()["status"] == "proposed"
    history = tenant.get("admin_a", f"/brokers/{a}/leads/{tenant.leads[1]}/appointments").json()
    assert [(v["status"], datetime.fromisoformat(v["starts_at"])) for v in history] == [
        ("proposed", at(3, 12)), ("rescheduled", at(2, 10))]


def test_the_rules_and_each_persons_schedule_decide_what_is_free(tenant: Tenant, database_url: str) -> None:
    a = tenant.a.broker_id
    settings_path = f"/admin/brokers/{a}/settings/appointments"
    bad = tenant.app.client.put(settings_path, headers=tenant.headers("admin_a"), json={
        "based_on": 1, "value": {"visit_minutes": 5, "hours": {"mon": [{"start": "12:00", "end": "11:00"}]}}})
    assert bad.status_code == 422
    assert {p["field"] for p in bad.json()["detail"]} == {"visit_minutes", "hours.mon[0]"}
    # Mondays 15:00–18:00 only, 90-minute visits.
    saved = tenant.app.client.put(settings_path, headers=tenant.headers("admin_a"), json={
        "based_on": 1, "value": {"visit_minutes": 90, "hours": {"mon": [{"start": "15:00", "end": "18:00"}]}}})
    assert saved.status_code == 200 and saved.json()["version"] == 2
    slots = tenant.get("admin_a", f"/brokers/{a}/availability", days=7).json()
    assert [datetime.fromisoformat(s["start"]) for s in slots] == [at(1, 15), at(1, 15, 30), at(1, 16), at(1, 16, 30)]
    assert tenant.app.client.put(settings_path, headers=tenant.headers("agent_a"),
                                 json={"based_on": 2, "value": {}}).status_code == 403

    # The AGENT takes visits on its own hours; the admin is listed too but off that Monday.
    agent, admin = tenant.users["agent_a"].user_id, tenant.users["admin_a"].user_id
    put = tenant.app.client.put(f"/brokers/{a}/schedules/{agent}", headers=tenant.headers("admin_a"), json={
        "hours": {"mon": [{"start": "17:00", "end": "19:00"}]}})
    assert put.status_code == 200 and put.json()["takes_visits"]
    assert tenant.app.client.put(f"/brokers/{a}/schedules/{admin}", headers=tenant.headers("admin_a"),
                                 json={"days_off": ["2027-03-01"]}).status_code == 200
    slots = tenant.get("admin_a", f"/brokers/{a}/availability", days=1).json()
    assert [(datetime.fromisoformat(s["start"]), s["agents"]) for s in slots] == [
        (at(1, 17), [agent]), (at(1, 17, 30), [agent])]
    # An AGENT sets its own days off, nobody else's, nor its hours.
    days_off = f"/brokers/{a}/schedules/{agent}/days-off"
    assert tenant.app.client.put(days_off, headers=tenant.headers("agent_a"),
                                 json={"days_off": ["2027-03-01"]}).status_code == 200
    assert tenant.get("admin_a", f"/brokers/{a}/availability", days=1).json() == []
    assert tenant.app.client.put(f"/brokers/{a}/schedules/{admin}/days-off", headers=tenant.headers("agent_a"),
                                 json={"days_off": []}).status_code == 403
    assert tenant.app.client.put(f"/brokers/{a}/schedules/{agent}", headers=tenant.headers("agent_a"),
                                 json={}).status_code == 403
    assert tenant.app.client.put(f"/brokers/{a}/schedules/{agent}", headers=tenant.headers("admin_b"),
                                 json={}).status_code == 403
    assert [r[0] for r in rows(database_url, "SELECT action FROM leadflow.audit_log WHERE broker_id = %s "
                                             "AND action LIKE 'schedule.%%' ORDER BY audit_id", a)] == [
        "schedule.person", "schedule.person", "schedule.days_off"]


# --- the pages ---------------------------------------------------------------------------------------------------

def logged_in(tenant: Tenant, who: str) -> str:
    cookie = issue_token(tenant.app.tokens, tenant.users[who])
    tenant.app.client.cookies.update({COOKIE: cookie})
    return csrf.token_for(tenant.app.tokens.secret, cookie)


def test_booking_from_the_lead_page_and_the_calendar_week(tenant: Tenant, database_url: str) -> None:
    a = tenant.a.broker_id
    lead_path = f"/dashboard/brokers/{a}/leads/{tenant.leads[1]}"
    token = logged_in(tenant, "admin_a")
    try:
        shown = tenant.app.client.get(lead_path)
        assert shown.status_code == 200 and 'id="book-form"' in shown.text
        assert f'value="{at(1, 10).astimezone(ZoneInfo("UTC")).isoformat()}"' in shown.text  # the first free slot
        form = {"slot": at(1, 11).isoformat(), "status": "confirmed", "kind": "in_person", "address": "Irarrázaval 100"}
        assert tenant.app.client.post(f"{lead_path}/appointments", data=form,
                                      follow_redirects=False).status_code == 403  # no CSRF token
        booked = tenant.app.client.post(f"{lead_path}/appointments", data={**form, "csrf": token},
                                        follow_redirects=False)
        assert booked.status_code == 303 and "saved=booked" in booked.headers["location"]
        # The same time for another lead: back to its page with the reason, nothing written.
        other = f"/dashboard/brokers/{a}/leads/{tenant.leads[2]}"
        taken = tenant.app.client.post(f"{other}/appointments", data={**form, "csrf": token}, follow_redirects=False)
        assert taken.status_code == 303 and "error=not_free" in taken.headers["location"]
        assert appointments.MESSAGES["not_free"] in tenant.app.client.get(taken.headers["location"]).text
        typed = tenant.app.client.post(f"{other}/appointments", data={
            "date": "2027-03-01", "time": "11:30", "csrf": token}, follow_redirects=False)
        assert "error=taken" in typed.headers["location"]
        assert rows(database_url, "SELECT count(*) FROM leadflow.appointments WHERE broker_id = %s", a) == [(1,)]

        week = tenant.app.client.get(f"/dashboard/brokers/{a}/calendar")
        assert week.status_code == 200
        day = week.text.split('data-day="2027-03-01"')[1].split('data-day="2027-03-02"')[0]
        assert "Tomás Pérez" in day and "11:00–12:00" in day and "Irarrázaval 100" in day and "confirmada" in day
        assert "por sincronizar" in day and 'class="to-completed"' not in day  # not started yet
        assert f'href="/dashboard/brokers/{a}/calendar"' in week.text  # the navigation's "Calendario"
        assert "Sin visitas." in tenant.app.client.get(f"/dashboard/brokers/{a}/calendar?day=2027-03-08").text
        # The filter form's "everyone" is an empty value; one person's calendar leaves out the broker's own.
        one_day = tenant.app.client.get(f"/dashboard/brokers/{a}/calendar?view=day&day=2027-03-01&agent=")
        assert one_day.status_code == 200 and one_day.text.count('class="day') == 1 and "Tomás Pérez" in one_day.text
        agent = tenant.users["agent_a"].user_id
        assert "Tomás Pérez" not in tenant.app.client.get(f"/dashboard/brokers/{a}/calendar?agent={agent}").text
    finally:
        tenant.app.client.cookies.clear()
    logged_in(tenant, "admin_b")
    try:
        assert tenant.app.client.get(f"/dashboard/brokers/{a}/calendar").status_code == 403
        assert tenant.app.client.get(lead_path).status_code == 403
    finally:
        tenant.app.client.cookies.clear()


def test_the_availability_page_names_the_field_and_saves_a_version(tenant: Tenant, database_url: str) -> None:
    a = tenant.a.broker_id
    path = f"/dashboard/brokers/{a}/admin/appointments"
    token = logged_in(tenant, "admin_a")
    try:
        shown = tenant.app.client.get(path)
        assert shown.status_code == 200 and 'name="mon_start1" value="09:00"' in shown.text
        form = {**rules_shown(effective("appointments", {})), "based_on": "1", "csrf": token}
        bad = tenant.app.client.post(path, data={**form, "tue_start1": "19:00", "tue_end1": "18:00"})
        assert bad.status_code == 422
        assert "hours.tue[0]: ends (18:00) before it starts (19:00)" in bad.text.split('data-field="hours.tue"')[1]
        assert 'name="tue_start1" value="19:00"' in bad.text  # what was typed is kept
        saved = tenant.app.client.post(path, data={**form, "sat_start1": "", "sat_end1": ""}, follow_redirects=False)
        assert saved.status_code == 303
        assert rows(database_url, "SELECT appointments FROM leadflow.broker_settings WHERE broker_id = %s", a) == [
            ({"hours": {d: [{"start": "09:00", "end": "19:00"}] for d in ("mon", "tue", "wed", "thu", "fri")}},)]
        person = tenant.users["agent_a"].user_id
        refused = tenant.app.client.post(f"{path}/people/{person}", data={
            "takes_visits": "true", "own_hours": "true", "hours": "lunes 9 a 13", "csrf": token})
        assert refused.status_code == 422 and "escribe el día" in refused.text
        marked = tenant.app.client.post(f"{path}/people/{person}", data={
            "takes_visits": "true", "own_hours": "true", "hours": "mon 9:00-13:00", "days_off": "2027-03-02",
            "csrf": token}, follow_redirects=False)
        assert marked.status_code == 303
        assert "mon 09:00-13:00" in tenant.app.client.get(path).text
    finally:
        tenant.app.client.cookies.clear()
    token = logged_in(tenant, "agent_a")
    try:
        assert tenant.app.client.get(path).status_code == 403
        assert f'href="{path}"' not in tenant.app.client.get(f"/dashboard/brokers/{a}/calendar").text
        # An AGENT writes its own days off from the calendar.
        own = tenant.app.client.post(f"/dashboard/brokers/{a}/calendar/days-off",
                                     data={"days_off": "2027-03-05\n2027-03-04", "csrf": token}, follow_redirects=False)
        assert own.status_code == 303
        assert "2027-03-04\n2027-03-05" in tenant.app.client.get(own.headers["location"]).text
    finally:
        tenant.app.client.cookies.clear()
    # Its own days off replaced the admin's; its hours and taking visits stayed as the admin set them.
    assert rows(database_url, "SELECT takes_visits, hours, blocked::text FROM leadflow.agent_schedules "
                              "WHERE user_id = %s", tenant.users["agent_a"].user_id) == [
        (True, {"mon": [{"start": "09:00", "end": "13:00"}]}, "{2027-03-04,2027-03-05}")]


def test_a_visit_is_rescheduled_from_its_page_and_a_taken_time_comes_back_with_the_reason(
        tenant: Tenant, database_url: str) -> None:
    a = tenant.a.broker_id
    visit = tenant.book("admin_a", tenant.leads[1], at(2, 10)).json()
    tenant.book("admin_a", tenant.leads[2], at(2, 15))
    path = f"/dashboard/brokers/{a}/appointments/{visit['appointment_id']}/reschedule"
    token = logged_in(tenant, "admin_a")
    try:
        shown = tenant.app.client.get(path)
        assert shown.status_code == 200 and 'id="reschedule-form"' in shown.text
        assert f'value="{at(2, 15).astimezone(ZoneInfo("UTC")).isoformat()}"' not in shown.text  # taken: not offered
        taken = tenant.app.client.post(path, data={"slot": at(2, 15).isoformat(), "csrf": token},
                                       follow_redirects=False)
        assert taken.status_code == 303 and taken.headers["location"] == f"{path}?error=not_free"
        assert appointments.MESSAGES["not_free"] in tenant.app.client.get(taken.headers["location"]).text
        moved = tenant.app.client.post(path, data={"slot": at(3, 12).isoformat(), "csrf": token},
                                       follow_redirects=False)
        assert moved.status_code == 303 and moved.headers["location"].endswith("/calendar?saved=moved")
    finally:
        tenant.app.client.cookies.clear()
    assert rows(database_url, "SELECT status, starts_at FROM leadflow.appointments WHERE lead_id = %s "
                              "ORDER BY appointment_id", tenant.leads[1]) == [("rescheduled", at(2, 10)),
                                                                               ("proposed", at(3, 12))]
    logged_in(tenant, "admin_b")
    try:
        assert tenant.app.client.get(path).status_code == 403
        assert tenant.app.client.get(f"/dashboard/brokers/{a}/admin/appointments").status_code == 403
    finally:
        tenant.app.client.cookies.clear()


def test_the_reports_role_cannot_write_a_visit_pointing_outside_its_broker_or_lead(tenant: Tenant) -> None:
    """Row security, below the routes: what a bug in the reports service's SQL could not do (foreign keys ignore
    row security, so these checks are the policies')."""
    admin = tenant.users["admin_a"]
    who = Principal(admin.user_id, admin.email, admin.role, admin.broker_id)
    pool = tenant.app.client.app.state.pool  # type: ignore[attr-defined]
    a, lead, other_lead = tenant.a.broker_id, tenant.leads[1], tenant.leads[2]
    start = datetime(2027, 3, 2, 11, tzinfo=SANTIAGO)
    booked = tenant.book("admin_a", lead, start, status="confirmed")
    assert booked.status_code == 201, booked.text
    visit = booked.json()["appointment_id"]
    columns = ("broker_id, lead_id, agent_id, kind, starts_at, ends_at, held_until, timezone, status, source, "
               "rescheduled_from, created_at, updated_at")
    base = {"agent_id": None, "source": "person", "rescheduled_from": None, "day": 9}

    def insert(**change: Any) -> None:
        row = {**base, **change}
        at = datetime(2027, 3, row["day"], 15, tzinfo=SANTIAGO)
        with write_cursor(pool, who, a) as cur:
            cur.execute(f"""INSERT INTO leadflow.appointments ({columns}) VALUES (%s, %s, %s, 'in_person', %s, %s, %s,
                            'America/Santiago', 'proposed', %s, %s, now(), now())""",
                        (a, row.get("lead", lead), row["agent_id"], at, at + timedelta(hours=1),
                         at + timedelta(hours=1), row["source"], row["rescheduled_from"]))

    insert()  # a person's booking: allowed
    refused = {
        "another broker's person takes it": {"agent_id": tenant.users["admin_b"].user_id, "day": 10},
        "it replaces another lead's visit": {"lead": other_lead, "rescheduled_from": visit, "day": 11},
        "it claims to be the bot's": {"source": "agent", "day": 12},
    }
    for what, change in refused.items():
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            insert(**change)
        assert what
    for sql, error in (("UPDATE leadflow.appointments SET agent_id = NULL WHERE appointment_id = %s",
                        psycopg2.errors.InsufficientPrivilege),
                       ("UPDATE leadflow.appointments SET calendar_state = 'synced' WHERE appointment_id = %s",
                        psycopg2.errors.InsufficientPrivilege)):
        with pytest.raises(error), write_cursor(pool, who, a) as cur:
            cur.execute(sql, (visit,))
    # An event about a visit of another lead than the one it names: refused.
    with pytest.raises(psycopg2.errors.InsufficientPrivilege), write_cursor(pool, who, a) as cur:
        cur.execute("""INSERT INTO leadflow.appointment_events (appointment_id, broker_id, lead_id, to_status, actor,
                                                                user_id, at)
                       VALUES (%s, %s, %s, 'cancelled', 'person', %s, now())""", (visit, a, other_lead, admin.user_id))


def test_an_agent_is_not_offered_a_time_a_colleague_s_lead_already_has(tenant: Tenant) -> None:
    """An AGENT's row security hides the visits of leads it does not work; their times still count as busy."""
    a = tenant.a.broker_id
    start = datetime(2027, 3, 2, 11, tzinfo=SANTIAGO)
    assert tenant.book("admin_a", tenant.leads[1], start, status="confirmed").status_code == 201
    seen = tenant.get("agent_a", f"/brokers/{a}/appointments", **{"from": "2027-03-02", "to": "2027-03-03"}).json()
    assert seen == [] or all(v["lead_id"] != tenant.leads[1] for v in seen)  # not its lead: not listed
    starts = {datetime.fromisoformat(s["start"]) for s in tenant.get("agent_a", f"/brokers/{a}/availability",
                                                                     days=2).json()}
    assert start not in starts and start + timedelta(minutes=30) not in starts
    assert start - timedelta(hours=2) in starts  # 09:00 still free
    refused = tenant.book("agent_a", tenant.leads[0], start, status="proposed")
    assert refused.status_code == 409


def test_digits_that_are_not_ascii_and_a_non_ascii_csrf_token_are_refused_not_a_server_error(
        tenant: Tenant) -> None:
    """"²" passes str.isdigit but not int(); hmac.compare_digest refuses a str with "é": both were 500s."""
    a = tenant.a.broker_id
    lead_path = f"/dashboard/brokers/{a}/leads/{tenant.leads[1]}"
    token = logged_in(tenant, "admin_a")
    try:
        assert tenant.app.client.get(f"/dashboard/brokers/{a}/calendar?agent=²").status_code == 422
        form = {"slot": at(1, 11).isoformat(), "status": "confirmed", "kind": "in_person", "csrf": "é" * 64}
        assert tenant.app.client.post(f"{lead_path}/appointments", data=form,
                                      follow_redirects=False).status_code == 403
        booked = tenant.app.client.post(f"{lead_path}/appointments", follow_redirects=False,
                                        data={**form, "csrf": token, "agent_id": "²"})
        # Back to the lead page saying why, as every refused booking form is.
        assert booked.status_code == 303 and "error=not_person" in booked.headers["location"]
        assert rows_of(tenant, a) == 0  # nothing booked by either
    finally:
        tenant.app.client.cookies.clear()


def rows_of(tenant: Tenant, broker_id: int) -> int:
    with transaction(tenant.app.client.app.state.database_url) as conn, conn.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute("SELECT count(*) FROM leadflow.appointments WHERE broker_id = %s", (broker_id,))
        return int(cur.fetchone()[0])  # type: ignore[index]
