"""Visit reminders from the scheduled batch: real PostgreSQL, the campaigns' real Telegram and WhatsApp senders
against the local fake providers (127.0.0.1). Every run is given its instant; nothing reads today's date."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from leadflow.appointments import store
from leadflow.appointments.reminders import ReminderResult, plan, send_reminders
from leadflow.appointments.slots import Slot
from leadflow.brokers import Broker, add_broker, default_secret_env
from leadflow.db.connection import transaction
from leadflow.outbound.senders import RateLimiter, Sender, TelegramSender, WhatsAppSender
from tests.conftest import new_database
from tests.fake_channels import FakeChannels, Reply

pytestmark = pytest.mark.services
SANTIAGO = ZoneInfo("America/Santiago")
MADRID = ZoneInfo("Europe/Madrid")
# A Monday well clear of any daylight-saving change; the visit is Wednesday at 11:00.
BOOKED = datetime(2027, 3, 1, 8, 0, tzinfo=SANTIAGO)
VISIT = datetime(2027, 3, 3, 11, 0, tzinfo=SANTIAGO)
ADDRESS = "Av. Providencia 1234, Providencia"


@pytest.fixture(scope="module")
def db(pg_admin_url: str) -> Iterator[str]:
    """A database of its own: these leads are hand-made rows the funnel's dbt build would not expect."""
    with new_database(pg_admin_url, "reminders") as url:
        yield url


@pytest.fixture(autouse=True)
def no_visits_left_over(db: str) -> None:
    """Each batch reminds every broker of the database (and produces every sent reminder not yet produced): a
    test starts with nothing of another test's still owed."""
    with transaction(db) as conn, conn.cursor() as cur:
        cur.execute("UPDATE leadflow.appointment_reminders SET status = 'skipped' WHERE status = 'pending'")
        cur.execute("UPDATE leadflow.appointment_reminders SET produced = true WHERE status = 'sent'")
        cur.execute("UPDATE leadflow.appointments SET status = 'cancelled' WHERE status IN ('proposed', 'confirmed')")


@pytest.fixture
def fake() -> Iterator[FakeChannels]:
    server = FakeChannels().start()
    yield server
    server.stop()


def broker_in(db: str, monkeypatch: pytest.MonkeyPatch, country: str = "CL", timezone: str = "America/Santiago",
              telegram_token: str = "123:tg-token-not-a-secret") -> Broker:
    broker = add_broker(db, f"rem-{uuid.uuid4().hex[:10]}", name="Propiedades Test", country=country,
                        timezone=timezone)
    monkeypatch.setenv(default_secret_env(broker.slug, "telegram_bot_token"), telegram_token)
    monkeypatch.setenv(default_secret_env(broker.slug, "whatsapp_access_token"), "wa-token-not-a-secret")
    monkeypatch.setenv(default_secret_env(broker.slug, "whatsapp_phone_number_id"), "1098765")
    return broker


def lead(db: str, broker: Broker, channel: str, contact: str, wrote_at: datetime, name: str = "Camila Rojas") -> int:
    """A lead with one inbound chat message, as landing and identity resolution leave it."""
    with transaction(db) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.leads (lead_id, broker_id, display_name, channels)
                       VALUES (nextval('leadflow.lead_id_seq'), %s, %s, ARRAY[%s]) RETURNING lead_id""",
                    (broker.broker_id, name, channel))
        lead_id = cur.fetchone()[0]  # type: ignore[index]
        write(cur, broker, lead_id, channel, contact, wrote_at)
    return int(lead_id)


def write(cur: Any, broker: Broker, lead_id: int, channel: str, contact: str, at: datetime, text: str = "Hola") -> None:
    cur.execute("""INSERT INTO leadflow.raw_messages (broker_id, event_id, channel, provider_message_id,
                       conversation_id, contact_channel_id, contact_phone, direction, message_type, body, sent_at,
                       received_at, schema_version, payload, kafka_topic, kafka_partition, kafka_offset)
                   VALUES (%s, gen_random_uuid(), %s, %s, %s, %s, %s, 'inbound', 'text', %s, %s, %s, 1, '{}', 't', 0, 0)
                   RETURNING message_id""",
                (broker.broker_id, channel, uuid.uuid4().hex, contact if channel == "telegram" else None, contact,
                 f"+{contact}" if channel == "whatsapp" else None, text, at, at))
    cur.execute("INSERT INTO leadflow.message_leads (message_id, broker_id, lead_id) VALUES (%s, %s, %s)",
                (cur.fetchone()[0], broker.broker_id, lead_id))


def book(db: str, broker: Broker, lead_id: int, start: datetime, booked_at: datetime = BOOKED,
         channel: str | None = None, kind: str = "in_person") -> int:
    slot = Slot(start, start + timedelta(hours=1), (None,))
    with transaction(db) as conn, conn.cursor() as cur:
        booked = store.book(cur, broker.broker_id, lead_id, slot, booked_at, source="agent", actor="lead",
                            address=ADDRESS if kind == "in_person" else None, channel=channel, kind=kind,  # type: ignore[arg-type]
                            check_free=False)
    assert isinstance(booked, store.Appointment)
    return booked.appointment_id


def batch(db: str, fake: FakeChannels, now: datetime) -> ReminderResult:
    senders: dict[str, Sender] = {
        "telegram": TelegramSender(fake.url, timeout_s=2, limiter=RateLimiter(per_second=1000, key_interval_s=0)),
        "whatsapp": WhatsAppSender(fake.url, timeout_s=2, clock=lambda: now)}
    return send_reminders(db, senders, lambda: now)


def reminders(db: str, appointment_id: int) -> list[tuple[Any, ...]]:
    with transaction(db) as conn, conn.cursor() as cur:
        cur.execute("""SELECT hours_before, status, reason, attempts, due_at FROM leadflow.appointment_reminders
                       WHERE appointment_id = %s ORDER BY hours_before DESC""", (appointment_id,))
        return cur.fetchall()


def test_the_24_and_1_hour_reminders_go_once_each_even_when_the_batch_runs_twice(
        db: str, fake: FakeChannels, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = broker_in(db, monkeypatch)
    other = broker_in(db, monkeypatch, telegram_token="456:other-token-not-a-secret")
    camila = lead(db, broker, "telegram", "700100", BOOKED - timedelta(hours=1))
    tomas = lead(db, other, "telegram", "700200", BOOKED - timedelta(hours=1), name="Tomás")
    visit = book(db, broker, camila, VISIT)
    book(db, other, tomas, VISIT)

    assert batch(db, fake, VISIT - timedelta(hours=24, minutes=10)).planned == 0
    first = batch(db, fake, VISIT - timedelta(hours=23, minutes=59))
    again = batch(db, fake, VISIT - timedelta(hours=23, minutes=59))
    assert (first.sent, again.sent, again.planned) == (2, 0, 0)
    mine = [(path, body) for provider, path, body in fake.requests if body.get("chat_id") == "700100"]
    [(path, body)] = mine
    # Each broker's reminder goes through its own bot.
    assert path == "/bot123:tg-token-not-a-secret/sendMessage"
    assert body["text"] == ("Hola Camila, te recordamos tu visita del miércoles 3 de marzo a las 11:00 en "
                            f"{ADDRESS}. Responde CONFIRMO o avísanos si no puedes.")
    assert [p for _, p, b in fake.requests if b.get("chat_id") == "700200"] == \
        ["/bot456:other-token-not-a-secret/sendMessage"]

    assert batch(db, fake, VISIT - timedelta(hours=1)).sent == 2
    assert batch(db, fake, VISIT - timedelta(minutes=50)).sent == 0
    assert len(fake.requests) == 4
    assert [(h, s) for h, s, *_ in reminders(db, visit)] == [(24, "sent"), (1, "sent")]
    with transaction(db) as conn, conn.cursor() as cur:
        cur.execute("SELECT reminders FROM leadflow.appointments WHERE appointment_id = %s", (visit,))
        assert set(cur.fetchone()[0]) == {"24", "1"}  # type: ignore[index]


def test_outside_the_whatsapp_window_the_approved_template_goes_inside_it_the_text(
        db: str, fake: FakeChannels, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = broker_in(db, monkeypatch)
    with transaction(db) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.broker_settings (broker_id, appointments) VALUES (%s, %s)""",
                    (broker.broker_id, json.dumps({"reminder_template": "recordatorio_cita"})))
    quiet = lead(db, broker, "whatsapp", "56911112222", BOOKED - timedelta(hours=2))
    talking = lead(db, broker, "whatsapp", "56933334444", BOOKED - timedelta(hours=2), name="Ana María")
    book(db, broker, quiet, VISIT, channel="whatsapp")
    virtual = book(db, broker, talking, VISIT + timedelta(hours=2), channel="whatsapp", kind="virtual")
    with transaction(db) as conn, conn.cursor() as cur:
        cur.execute("UPDATE leadflow.appointments SET meet_link = 'https://meet.google.com/abc-defg-hij' "
                    "WHERE appointment_id = %s", (virtual,))
        # Ana writes the day before her visit: her window is open when the reminder goes.
        write(cur, broker, talking, "whatsapp", "56933334444", VISIT - timedelta(hours=20), "¿llevo algo?")

    assert batch(db, fake, VISIT + timedelta(hours=2) - timedelta(hours=23)).sent == 2
    by_number = {b["to"]: b for b in fake.sent("whatsapp")}
    template = by_number["56911112222"]
    assert template["type"] == "template"
    assert template["template"]["name"] == "recordatorio_cita" and template["template"]["language"]["code"] == "es"
    assert template["template"]["components"][0]["parameters"] == [
        {"type": "text", "text": v} for v in ("Camila", "miércoles 3 de marzo", "11:00", ADDRESS)]
    text = by_number["56933334444"]
    assert text["type"] == "text"
    assert text["text"]["body"] == ("Hola Ana, te recordamos tu visita virtual del miércoles 3 de marzo a las 13:00 "
                                    "por Google Meet: https://meet.google.com/abc-defg-hij. "
                                    "Responde CONFIRMO o avísanos si no puedes.")


def test_a_provider_failing_is_retried_by_later_runs_then_recorded_failed(
        db: str, fake: FakeChannels, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = broker_in(db, monkeypatch)
    visit = book(db, broker, lead(db, broker, "whatsapp", "56955556666", BOOKED), VISIT)
    fake.script("whatsapp", *[Reply(status=500)] * 8)  # each attempt is two tries
    due = VISIT - timedelta(hours=1)

    result = batch(db, fake, due)
    assert result.sent == 0 and result.retry_later == {"WhatsApp answered 500": 1}
    assert [(h, s, a) for h, s, _r, a, _d in reminders(db, visit)] == [(24, "skipped", 0), (1, "pending", 1)]
    assert batch(db, fake, due + timedelta(seconds=30)).retry_later == {}  # its backoff (60 s) is not over
    for minutes in (2, 5):
        assert batch(db, fake, due + timedelta(minutes=minutes)).retry_later == {"WhatsApp answered 500": 1}
    assert batch(db, fake, due + timedelta(minutes=10)).failed == {"WhatsApp answered 500": 1}
    [_, (_, status, reason, attempts, _)] = reminders(db, visit)
    assert (status, attempts) == ("failed", 4)
    assert reason == "WhatsApp answered 500 (after 4 attempts)"
    assert fake.sent("whatsapp") == [] and len(fake.requests) == 8
    assert batch(db, fake, due + timedelta(minutes=30)).planned == 0 and len(fake.requests) == 8


def test_cancelled_visits_opted_out_leads_and_reminders_booked_too_late_get_nothing(
        db: str, fake: FakeChannels, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = broker_in(db, monkeypatch)
    cancelled = book(db, broker, lead(db, broker, "telegram", "801", BOOKED), VISIT)
    with transaction(db) as conn, conn.cursor() as cur:
        store.change_status(cur, broker.broker_id, cancelled, "cancelled", BOOKED + timedelta(hours=1), actor="lead")
    opted_out_lead = lead(db, broker, "telegram", "802", BOOKED)
    with transaction(db) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.lead_consent (lead_id, broker_id, opted_out_at, reason)
                       VALUES (%s, %s, %s, 'BAJA')""", (opted_out_lead, broker.broker_id, BOOKED))
    opted_out = book(db, broker, opted_out_lead, VISIT)  # the cancelled visit's time is free again
    # Booked three hours ahead: the 24-hour reminder is skipped, never sent late; the 1-hour one goes.
    late = book(db, broker, lead(db, broker, "telegram", "803", BOOKED), VISIT + timedelta(hours=4),
                booked_at=VISIT + timedelta(hours=1))

    batch(db, fake, VISIT - timedelta(hours=23))
    batch(db, fake, VISIT - timedelta(minutes=59))
    result = batch(db, fake, VISIT + timedelta(hours=3, minutes=1))
    assert result.sent == 1 and [b["chat_id"] for b in fake.sent("telegram")] == ["803"]
    assert reminders(db, cancelled) == []
    assert {(h, s, r) for h, s, r, *_ in reminders(db, opted_out)} == {(24, "skipped", "the lead opted out"),
                                                                      (1, "skipped", "the lead opted out")}
    assert [(h, s, r) for h, s, r, *_ in reminders(db, late)] == [
        (24, "skipped", "booked less than 24 h before the visit"), (1, "sent", None)]


@pytest.mark.parametrize(("timezone", "country", "visit", "booked", "wall_text"), [
    # Chile leaves summer time on 4 April 2027 (00:00 → 23:00 the day before): the day before the visit is 25 hours.
    ("America/Santiago", "CL", datetime(2027, 4, 4, 11, 0), datetime(2027, 4, 1, 10, 0),
     "domingo 4 de abril a las 11:00"),
    # Spain enters summer time on 28 March 2027 (02:00 → 03:00): the day before the visit is 23 hours.
    ("Europe/Madrid", "ES", datetime(2027, 3, 28, 12, 0), datetime(2027, 3, 25, 10, 0),
     "domingo 28 de marzo a las 12:00"),
])
def test_across_a_daylight_saving_change_the_reminder_goes_24_real_hours_before_with_the_wall_clock_time(
        db: str, fake: FakeChannels, monkeypatch: pytest.MonkeyPatch, timezone: str, country: str, visit: datetime,
        booked: datetime, wall_text: str) -> None:
    zone = ZoneInfo(timezone)
    starts = visit.replace(tzinfo=zone)
    broker = broker_in(db, monkeypatch, country=country, timezone=timezone)
    appointment = book(db, broker, lead(db, broker, "telegram", "900", booked.replace(tzinfo=zone)), starts,
                       booked_at=booked.replace(tzinfo=zone))
    day_before_wall_clock = (visit - timedelta(days=1)).replace(tzinfo=zone)
    real_24h = starts.astimezone(UTC) - timedelta(hours=24)
    assert abs(day_before_wall_clock - real_24h) == timedelta(hours=1)  # the change lies in between

    # One side of the change or the other, "the same time the day before" is an hour off 24 real hours:
    # in Santiago an hour earlier (a minute before the real mark, it would have gone), in Madrid an hour later.
    assert batch(db, fake, real_24h - timedelta(minutes=1)).sent == 0
    assert batch(db, fake, real_24h).sent == 1
    [sent] = fake.sent("telegram")
    assert wall_text in sent["text"]
    [(_, status, _, _, due_at)] = [r for r in reminders(db, appointment) if r[0] == 24]
    assert (status, due_at) == ("sent", real_24h)


def test_only_the_shortest_due_reminder_goes_when_the_batch_was_down() -> None:
    visit = datetime(2027, 3, 3, 14, 0, tzinfo=UTC)
    booked = visit - timedelta(days=3)
    decisions = plan(visit, booked, (24, 1), visit - timedelta(minutes=30))
    assert [(d.hours, d.action) for d in decisions] == [(24, "skip"), (1, "send")]
    assert plan(visit, booked, (24, 1), visit + timedelta(minutes=1))[0].reason == \
        "the visit had started before the reminder went out"
    assert plan(visit, booked, (24, 1), visit - timedelta(hours=2)) == [
        plan(visit, booked, (24,), visit - timedelta(hours=2))[0]]
    assert plan(visit, booked, (24, 1), visit - timedelta(minutes=30), recorded=(24, 1)) == []


def test_a_reminder_the_provider_refused_once_goes_out_on_the_next_run(
        db: str, fake: FakeChannels, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = broker_in(db, monkeypatch)
    visit = book(db, broker, lead(db, broker, "telegram", "811", BOOKED), VISIT)
    fake.script("telegram", Reply(status=429, retry_after=90))
    due = VISIT - timedelta(hours=24)
    assert batch(db, fake, due).retry_later == {"Telegram rate limit (429)": 1}
    assert batch(db, fake, due + timedelta(seconds=60)).sent == 0  # Telegram asked for 90 seconds
    assert batch(db, fake, due + timedelta(seconds=95)).sent == 1
    assert [(h, s, a) for h, s, _r, a, _d in reminders(db, visit)] == [(24, "sent", 2)]
    assert len(fake.sent("telegram")) == 1


def test_the_batch_asset_sends_as_of_its_instant_and_puts_the_reminder_in_the_lead_conversation_once(
        db: str, kafka_bootstrap: str, fake: FakeChannels, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster import materialize

    from assets.appointment_reminders import appointment_reminders
    from leadflow.config import Topics
    from leadflow.kafka import ensure_topics
    from pipelines.resources import ChannelSendersResource, KafkaResource, PostgresResource
    from tests.kafka_helpers import events_for

    topics = Topics(f"t{uuid.uuid4().hex[:8]}")
    ensure_topics(kafka_bootstrap, topics.all(), 1)
    broker = broker_in(db, monkeypatch)
    visit = book(db, broker, lead(db, broker, "telegram", "821", BOOKED), VISIT + timedelta(days=7))

    def run() -> dict[str, Any]:
        result = materialize([appointment_reminders], resources={
            "postgres": PostgresResource(url=db),
            "kafka": KafkaResource(bootstrap_servers=kafka_bootstrap, topic_prefix=topics.prefix),
            "channels": ChannelSendersResource(telegram_api_url=fake.url, whatsapp_api_url=fake.url, timeout_s=2)},
            run_config={"ops": {"appointment_reminders": {"config": {
                "as_of": (VISIT + timedelta(days=7, minutes=-30)).isoformat()}}}})
        assert result.success
        [materialization] = result.asset_materializations_for_node("appointment_reminders")
        return {k: v.value for k, v in materialization.metadata.items()}

    first, second = run(), run()
    assert (first["sent"], first["produced"], second["sent"], second["produced"]) == (1, 1, 0, 0)
    assert [(h, s) for h, s, *_ in reminders(db, visit)] == [(24, "skipped"), (1, "sent")]
    [produced] = events_for(kafka_bootstrap, topics.messages, broker.broker_id)
    assert (produced["direction"], produced["provider_message_id"], produced["conversation_id"]) == (
        "outbound", f"reminder:{visit}:1", "821")
    assert produced["contact"]["channel_user_id"] == "821" and produced["text"] == fake.sent("telegram")[0]["text"]
    assert produced["raw"]["leadflow"]["author"] == "reminder"


def test_a_brokers_people_read_only_their_own_reminders(db: str, fake: FakeChannels,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from leadflow.appointments.reminders import sent_reminders
    from leadflow.users import add_user
    from reports_api.scope import ScopedPool
    from reports_api.security import Principal

    mine, theirs = broker_in(db, monkeypatch), broker_in(db, monkeypatch)
    own = book(db, mine, lead(db, mine, "telegram", "831", BOOKED), VISIT + timedelta(days=14))
    other = book(db, theirs, lead(db, theirs, "telegram", "832", BOOKED), VISIT + timedelta(days=14))
    assert batch(db, fake, VISIT + timedelta(days=13, hours=1)).sent == 2
    monkeypatch.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
    admin = add_user(db, f"admin-{mine.slug}@example.com", "a-long-password-1", role="ADMIN", broker_slug=mine.slug)
    pool = ScopedPool(db, 1)
    try:
        with pool.cursor(Principal(admin.user_id, "a", "ADMIN", mine.broker_id), mine.broker_id) as cur:
            cur.execute("SELECT DISTINCT broker_id FROM leadflow.appointment_reminders")
            assert cur.fetchall() == [(mine.broker_id,)]
            assert set(sent_reminders(cur, mine.broker_id, [own, other])) == {own}
            assert sent_reminders(cur, theirs.broker_id, [other]) == {}
    finally:
        pool.close()


def test_a_reminder_waiting_for_a_retry_is_not_sent_once_the_visit_is_cancelled_or_the_lead_opts_out(
        db: str, fake: FakeChannels, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = broker_in(db, monkeypatch)
    quits = lead(db, broker, "telegram", "841", BOOKED)
    cancels = lead(db, broker, "telegram", "842", BOOKED)
    quitting, cancelled = book(db, broker, quits, VISIT), book(db, broker, cancels, VISIT + timedelta(hours=2))
    fake.script("telegram", *[Reply(status=503)] * 4)
    batch(db, fake, VISIT - timedelta(hours=22))
    with transaction(db) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.lead_consent (lead_id, broker_id, opted_out_at, reason)
                       VALUES (%s, %s, %s, 'no me escriban más')""", (quits, broker.broker_id, VISIT))
        store.change_status(cur, broker.broker_id, cancelled, "cancelled", VISIT - timedelta(hours=21), actor="lead")
    result = batch(db, fake, VISIT - timedelta(hours=20))
    assert result.sent == 0 and fake.sent("telegram") == []
    assert [r[1:3] for r in reminders(db, quitting)] == [("skipped", "the lead opted out")]
    [(_, status, reason, _, _)] = reminders(db, cancelled)
    assert status == "skipped" and reason.startswith("the visit was cancelled before the reminder went out")


def test_a_broker_chooses_its_own_lead_times(db: str, fake: FakeChannels, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = broker_in(db, monkeypatch)
    with transaction(db) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO leadflow.broker_settings (broker_id, appointments) VALUES (%s, %s)",
                    (broker.broker_id, json.dumps({"reminder_hours": [48, 3]})))
    visit = book(db, broker, lead(db, broker, "telegram", "851", BOOKED), VISIT)
    assert batch(db, fake, VISIT - timedelta(hours=47)).sent == 1
    assert batch(db, fake, VISIT - timedelta(hours=3)).sent == 1
    assert batch(db, fake, VISIT - timedelta(hours=1)).planned == 0
    assert [(h, s) for h, s, *_ in reminders(db, visit)] == [(48, "sent"), (3, "sent")]
