"""Operations for a broker's admins (issue 14): dead letters read with their secrets redacted and replayed once
fixed, LLM usage and cost, and the health of the flow — against the real ingest API, Kafka, landing and
PostgreSQL. The redaction itself is pure and tested first, without services."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from ingest_api.app import create_app as create_ingest_app
from leadflow import credentials, redaction
from leadflow.brokers import Broker
from leadflow.config import Settings, Topics
from leadflow.db.connection import transaction
from leadflow.demo.webhooks import signed
from leadflow.events import Event
from leadflow.landing import land
from leadflow.users import add_user
from reports_api.admin.health import OpsProbes
from reports_api.app import create_app
from reports_api.security import LoginLimiter, TokenSettings
from reports_api.workspace.publish import MessagePublisher
from tests import payloads
from tests.conftest import BrokerFactory
from tests.test_leads_pipeline import rows

TOKENS = TokenSettings("o" * 40, timedelta(minutes=30))
PASSWORD = "una-clave-larga-de-prueba"
BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
Headers = dict[str, str]


# --- the redaction (pure) -------------------------------------------------------------------------------

def test_a_known_credential_is_redacted_wherever_and_however_it_is_written() -> None:
    secret = 'k3y"with/quote+plus'
    body = json.dumps({"note": f"mi clave es {secret}", "url": f"https://x.test/?k={quote(secret, safe='')}"})
    shown = redaction.redact_body(body, [secret])
    assert "k3y" not in shown and redaction.REDACTED in shown
    # URL-encoded too, and in free text.
    assert redaction.redact("a=k3y%22with%2Fquote%2Bplus b", [secret]) == "a=[REDACTED] b"
    assert redaction.redact_bytes(f"x {secret} y".encode(), [secret]) == b"x [REDACTED] y"


def test_keys_named_like_secrets_are_redacted_in_json_malformed_json_forms_and_header_lines() -> None:
    body = {"update_id": 5, "assistant": {"server": {"url": "https://h.test", "secret": "s3rv3r-secret-value"}},
            "apiKey": "ak-123456789", "Authorization": "Basic dXNlcjpwYXNz", "input_tokens": 1200,
            "password": "hunter2hunter2", "text": "hola"}
    shown = redaction.redact_body(json.dumps(body), [])
    parsed = json.loads(shown)
    assert parsed["assistant"]["server"]["secret"] == redaction.REDACTED
    assert parsed["apiKey"] == parsed["Authorization"] == parsed["password"] == redaction.REDACTED
    assert parsed["input_tokens"] == 1200 and parsed["text"] == "hola" and parsed["update_id"] == 5  # counts stay
    assert "\n  " in shown  # JSON comes back indented, to be fixed by hand
    malformed = '{"access_token": "EAAG-abcdef123", "text": "hola", '  # cut off: not JSON
    assert "EAAG" not in redaction.redact_body(malformed, []) and '"text": "hola"' in redaction.redact_body(malformed,
                                                                                                           [])
    assert redaction.redact_body("name=Ana&api_key=zzz999&x=1", []) == "name=Ana&api_key=[REDACTED]&x=1"
    assert redaction.redact("X-Hub-Signature-256: sha256=abcdef\nHost: a", []) == \
        "X-Hub-Signature-256: [REDACTED]\nHost: a"


def test_bot_tokens_and_bearer_tokens_are_redacted_by_their_shape() -> None:
    text = f"call https://api.telegram.org/bot{BOT_TOKEN}/getMe with Authorization: Bearer eyJhbGciOi.J9.x"
    shown = redaction.redact_shapes(text)
    assert BOT_TOKEN not in shown and "eyJ" not in shown and "Bearer [REDACTED]" in shown
    # Ordinary text, times and ids are left alone.
    calm = "a las 12:30 hablamos; wamid.HBgLNTY5ODc2NTQzMjEVAgASGBQzQTk; c0ffee00-0000-4000-8000-000000000001"
    assert redaction.redact(calm, []) == calm


def test_short_values_are_not_searched_and_a_lone_surrogate_is_shown_escaped() -> None:
    assert redaction.redact_values("12 de 123", ["123"]) == "12 de 123"  # under MIN_VALUE_CHARS: would wreck text
    shown = redaction.redact_body('{"text": "\\ud800 roto"}', [])
    shown.encode()  # printable in a UTF-8 page
    assert json.loads(shown) == {"text": "\ud800 roto"}


# --- services ---------------------------------------------------------------------------------------------

class RecordingPublisher(MessagePublisher):
    """The app's real publisher, remembering which events Kafka acknowledged."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, topic)
        self.produced: list[str] = []

    def publish_all(self, events: Sequence[Event]) -> str | None:
        failure = super().publish_all(events)
        if failure is None:
            self.produced.extend(e.event_id for e in events)
        return failure


@pytest.fixture(scope="module")
def cheap_hashes() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
        yield


@pytest.fixture(scope="module")
def publisher(settings: Settings) -> RecordingPublisher:
    return RecordingPublisher(settings.kafka_bootstrap_servers, settings.topics.messages)


@pytest.fixture(scope="module")
def api(settings: Settings, cheap_hashes: None, publisher: RecordingPublisher) -> Iterator[TestClient]:
    app = create_app(settings.database_url, TOKENS, limiter=LoginLimiter(attempts=1000), publisher=publisher)
    with TestClient(app, follow_redirects=False) as client:
        yield client


@pytest.fixture(scope="module")
def ingest(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_ingest_app(settings, broker_reload_interval_s=0)) as client:
        yield client


def login(api: TestClient, email: str) -> Headers:
    answer = api.post("/auth/token", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def person(api: TestClient, settings: Settings, role: str, broker: Broker | None) -> Headers:
    email = f"{role.lower()}-{uuid.uuid4().hex[:8]}@ops.test"
    add_user(settings.database_url, email, PASSWORD, role=role, broker_slug=broker.slug if broker else None)
    return login(api, email)


@pytest.fixture(scope="module")
def root(api: TestClient, settings: Settings) -> Headers:
    return person(api, settings, "SUPERADMIN", None)


def store_credential(settings: Settings, broker: Broker, kind: str, value: str) -> None:
    keys = credentials.MasterKeys.from_settings(Settings.from_environment(), settings.database_url)
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        credentials.put(cur, keys, broker.broker_id, kind, value, None)


def insert_dead_letter(settings: Settings, broker: Broker, body: bytes, channel: str = "form",
                       reason: str = "a form lead needs a phone or an email") -> int:
    """A dead letter as rows landed before the ingest API redacted them: the body exactly as it came."""
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO leadflow.dead_letters (broker_id, channel, reason, content_type, body, received_at,
                           kafka_cluster_id, kafka_topic, kafka_partition, kafka_offset)
                       VALUES (%s, %s, %s, 'application/json', %s, now(), 'test', 'test', 0,
                               (SELECT coalesce(max(kafka_offset), 0) + 1 FROM leadflow.dead_letters))
                       RETURNING dead_letter_id""", (broker.broker_id, channel, reason, body))
        row = cur.fetchone()
        assert row is not None
        return int(row[0])


def send(ingest: TestClient, broker: Broker, channel: str, body: dict[str, Any], status: int = 422) -> None:
    path, headers, raw = signed(channel, broker, body)
    answer = ingest.post(path, content=raw, headers=headers)
    assert answer.status_code == status, answer.text


def letters_of(api: TestClient, headers: Headers, broker: Broker, **params: int) -> dict[str, Any]:
    answer = api.get(f"/admin/brokers/{broker.broker_id}/dead-letters", headers=headers, params=params)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def test_the_ingest_api_keeps_no_credential_of_the_broker_in_a_dead_letter(
        ingest: TestClient, settings: Settings, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    store_credential(settings, broker, "telegram_bot_token", BOT_TOKEN)
    form_key = broker.secret("form_api_key")
    assert form_key
    # A portal that also posts its key in the body, and a VAPI report embedding the assistant's server secret.
    send(ingest, broker, "form", {"name": "Sin contacto", "api_key": form_key, "bot": BOT_TOKEN})
    vapi_secret = broker.secret("vapi_secret")
    assert vapi_secret
    send(ingest, broker, "vapi", {"message": {"type": "end-of-call-report", "call": {"id": vapi_secret}}})
    land(settings.database_url, settings.kafka_bootstrap_servers, settings.topics)
    kept = rows(settings, "SELECT body, reason FROM leadflow.dead_letters WHERE broker_id = %s", broker.broker_id)
    assert len(kept) == 2
    for body, reason in kept:
        for value in (form_key, BOT_TOKEN, vapi_secret):
            assert value.encode() not in bytes(body) and value not in reason
        assert b"[REDACTED]" in bytes(body)


def test_an_admin_lists_and_reads_dead_letters_with_every_secret_redacted_newest_first_and_paged(
        api: TestClient, settings: Settings, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    stored = "AAstored-whatsapp-access-token-0001"
    store_credential(settings, broker, "whatsapp_access_token", stored)
    env_secret = broker.secret("telegram_secret_token")
    assert env_secret
    body = json.dumps({"name": "Ana", "token_from_portal": "tok-abcdefgh", "note": f"{stored} / {env_secret}",
                       "header": f"Bearer {BOT_TOKEN}"}).encode()
    first = insert_dead_letter(settings, broker, body)
    ids = [first] + [insert_dead_letter(settings, broker, json.dumps({"n": i}).encode()) for i in range(3)]
    admin = person(api, settings, "ADMIN", broker)

    page1 = letters_of(api, admin, broker, limit=3)
    assert [d["dead_letter_id"] for d in page1["dead_letters"]] == ids[::-1][:3]
    page2 = letters_of(api, admin, broker, limit=3, before_id=page1["next_before_id"])
    assert [d["dead_letter_id"] for d in page2["dead_letters"]] == [first] and page2["next_before_id"] is None
    listed = page2["dead_letters"][0]
    assert listed["channel"] == "form" and listed["reason"].startswith("a form lead") and listed["replayable"]
    assert listed["size_bytes"] == len(body) and listed["replays"] == 0

    read = api.get(f"/admin/brokers/{broker.broker_id}/dead-letters/{first}", headers=admin)
    assert read.status_code == 200, read.text
    everything = json.dumps(page2) + read.text
    for secret in (stored, env_secret, BOT_TOKEN, "tok-abcdefgh"):
        assert secret not in everything
    shown = json.loads(read.json()["body"])
    assert shown["name"] == "Ana" and shown["token_from_portal"] == redaction.REDACTED
    assert shown["note"] == f"{redaction.REDACTED} / {redaction.REDACTED}"

    # Stored credentials that cannot be opened: what to hide is unknown, so the body is not shown at all.
    state = api.app.state  # type: ignore[attr-defined]
    keys = state.master_keys
    state.master_keys = lambda: credentials.MasterKeys(b"\x01" * 32)
    try:
        withheld = api.get(f"/admin/brokers/{broker.broker_id}/dead-letters/{first}", headers=admin).json()
        assert withheld["body"] is None and "LEADFLOW_MASTER_KEY" in withheld["body_withheld"]
        assert stored not in json.dumps(letters_of(api, admin, broker))
    finally:
        state.master_keys = keys


def test_only_the_brokers_admins_and_a_superadmin_see_its_dead_letters(
        api: TestClient, settings: Settings, root: Headers, make_broker: BrokerFactory) -> None:
    a, b = make_broker(), make_broker()
    letter = insert_dead_letter(settings, a, b'{"name": "x"}')
    admin_b, agent_a = person(api, settings, "ADMIN", b), person(api, settings, "AGENT", a)
    base = f"/admin/brokers/{a.broker_id}"
    for headers in (admin_b, agent_a):
        assert api.get(f"{base}/dead-letters", headers=headers).status_code == 403
        assert api.get(f"{base}/dead-letters/{letter}", headers=headers).status_code == 403
        assert api.post(f"{base}/dead-letters/{letter}/replay", headers=headers, json={}).status_code == 403
        assert api.get(f"{base}/usage", headers=headers).status_code == 403
        assert api.get(f"{base}/health", headers=headers).status_code == 403
    assert api.get(f"{base}/dead-letters", headers={}).status_code == 401
    assert [d["dead_letter_id"] for d in letters_of(api, root, a)["dead_letters"]] == [letter]
    # Another broker's dead letter is not found through this broker's path.
    assert api.get(f"/admin/brokers/{b.broker_id}/dead-letters/{letter}", headers=admin_b).status_code == 404
    assert api.get("/admin/brokers/999999999/dead-letters", headers=root).status_code == 404


def landed(settings: Settings, broker: Broker, provider_id: str) -> int:
    found = rows(settings, """SELECT count(*) FROM leadflow.raw_messages
                              WHERE broker_id = %s AND provider_message_id = %s""", broker.broker_id, provider_id)
    return int(found[0][0])


def test_a_fixed_payload_replayed_twice_lands_once_and_each_replay_is_audited(
        api: TestClient, ingest: TestClient, settings: Settings, make_broker: BrokerFactory,
        publisher: RecordingPublisher) -> None:
    broker = make_broker()
    update = payloads.telegram_text(update_id=int(time.time()) % 10**9)
    broken = json.loads(json.dumps(update))
    del broken["message"]["date"]
    send(ingest, broker, "telegram", broken)
    land(settings.database_url, settings.kafka_bootstrap_servers, settings.topics)
    admin = person(api, settings, "ADMIN", broker)
    [listed] = letters_of(api, admin, broker)["dead_letters"]
    assert "date" in listed["reason"]
    base = f"/admin/brokers/{broker.broker_id}/dead-letters/{listed['dead_letter_id']}"

    # Still malformed: the parser's reason, nothing produced, the dead letter as it was.
    before = len(publisher.produced)
    refused = api.post(f"{base}/replay", headers=admin, json={"body": json.dumps(broken)})
    assert refused.status_code == 422 and "date" in refused.json()["detail"]
    assert api.post(f"{base}/replay", headers=admin, json={"body": "{not json"}).status_code == 422
    assert len(publisher.produced) == before
    assert api.get(base, headers=admin).json()["replays"] == 0

    fixed = json.dumps(update)
    first = api.post(f"{base}/replay", headers=admin, json={"body": fixed})
    assert first.status_code == 200, first.text
    assert first.json()["events"] == 1 and first.json()["edited"]
    provider_id = str(update["update_id"])
    land(settings.database_url, settings.kafka_bootstrap_servers, settings.topics)
    assert landed(settings, broker, provider_id) == 1
    [(event_id,)] = rows(settings, "SELECT event_id FROM leadflow.raw_messages WHERE broker_id = %s",
                         broker.broker_id)
    assert first.json()["event_ids"] == [str(event_id)]

    second = api.post(f"{base}/replay", headers=admin, json={"body": fixed})
    assert second.status_code == 200 and second.json()["event_ids"] == first.json()["event_ids"]
    assert publisher.produced[-2:] == first.json()["event_ids"] * 2  # produced twice...
    land(settings.database_url, settings.kafka_bootstrap_servers, settings.topics)
    assert landed(settings, broker, provider_id) == 1  # ...landed once

    shown = api.get(base, headers=admin).json()
    assert shown["replays"] == 2 and shown["replayed_at"] and shown["replay_event_ids"] == [str(event_id)]
    assert shown["replayed_by_email"].startswith("admin-")
    audited = rows(settings, """SELECT after FROM leadflow.audit_log WHERE broker_id = %s
                                AND action = 'dead_letter.replay' ORDER BY audit_id""", broker.broker_id)
    assert [a["replay"] for (a,) in audited] == [True, True]
    assert audited[0][0]["event_ids"] == [str(event_id)] and audited[0][0]["edited"]


def test_a_late_call_report_is_replayed_as_kept_past_the_providers_replay_window(
        api: TestClient, ingest: TestClient, settings: Settings, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    call_id = f"c0ffee00-0000-4000-8000-{uuid.uuid4().hex[:12]}"
    three_days_ago = int((datetime.now(UTC) - timedelta(days=3)).timestamp() * 1000)
    send(ingest, broker, "vapi", payloads.vapi_end_of_call(call_id=call_id, sent_at_ms=three_days_ago))
    land(settings.database_url, settings.kafka_bootstrap_servers, settings.topics)
    admin = person(api, settings, "ADMIN", broker)
    [listed] = letters_of(api, admin, broker)["dead_letters"]
    assert "replay window" in listed["reason"]
    answer = api.post(f"/admin/brokers/{broker.broker_id}/dead-letters/{listed['dead_letter_id']}/replay",
                      headers=admin, json={})
    assert answer.status_code == 200, answer.text
    assert answer.json()["events"] == payloads.EXPECTED_MESSAGES["vapi"] and not answer.json()["edited"]
    land(settings.database_url, settings.kafka_bootstrap_servers, settings.topics)
    assert rows(settings, "SELECT count(*) FROM leadflow.raw_messages WHERE broker_id = %s",
                broker.broker_id) == [(payloads.EXPECTED_MESSAGES["vapi"],)]


def test_usage_sums_are_the_llm_usage_rows_of_the_range(
        api: TestClient, settings: Settings, make_broker: BrokerFactory) -> None:
    broker, other = make_broker(), make_broker()
    today = date.today()
    usage = [(broker, today, "anthropic", "claude-x", 10, 1, 1000, 200, "0.012345"),
             (broker, today, "openai", "gpt-y", 3, 0, 300, 50, "0.003000"),
             (broker, today - timedelta(days=1), "anthropic", "claude-x", 7, 2, 700, 140, "0.008000"),
             (broker, today - timedelta(days=40), "anthropic", "claude-x", 99, 0, 9, 9, "9.000000"),  # outside
             (other, today, "anthropic", "claude-x", 50, 0, 5000, 900, "1.000000")]  # another broker
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        for b, day, provider, model, *figures in usage:
            cur.execute("""INSERT INTO leadflow.llm_usage (broker_id, day, provider, model, calls, fallbacks,
                               input_tokens, output_tokens, cost_usd) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                        (b.broker_id, day, provider, model, *figures))
    admin = person(api, settings, "ADMIN", broker)
    answer = api.get(f"/admin/brokers/{broker.broker_id}/usage", headers=admin)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["start"] == (today - timedelta(days=29)).isoformat() and found["end"] == today.isoformat()
    [(calls, fallbacks, input_tokens, output_tokens, cost)] = rows(
        settings, """SELECT sum(calls), sum(fallbacks), sum(input_tokens), sum(output_tokens), sum(cost_usd)
                     FROM leadflow.llm_usage WHERE broker_id = %s AND day >= %s""",
        broker.broker_id, today - timedelta(days=29))
    totals = found["totals"]
    assert (totals["calls"], totals["fallbacks"], totals["input_tokens"], totals["output_tokens"]) == \
        (calls, fallbacks, input_tokens, output_tokens) == (20, 3, 2000, 390)
    assert Decimal(totals["cost_usd"]) == cost == Decimal("0.023345")
    assert len(found["days"]) == 3 and found["days"][0]["day"] == today.isoformat()
    assert [(m["model"], m["calls"]) for m in found["models"]] == [("claude-x", 17), ("gpt-y", 3)]
    older = api.get(f"/admin/brokers/{broker.broker_id}/usage", headers=admin,
                    params={"start": (today - timedelta(days=60)).isoformat(), "end": today.isoformat()}).json()
    assert older["totals"]["calls"] == 119
    assert api.get(f"/admin/brokers/{broker.broker_id}/usage", headers=admin,
                   params={"start": today.isoformat(), "end": (today - timedelta(days=1)).isoformat()}
                   ).status_code == 422


def test_health_answers_with_the_landing_lag_and_unknown_dagster_without_failing(
        api: TestClient, settings: Settings, root: Headers, make_broker: BrokerFactory, tmp_path: Path) -> None:
    broker = make_broker()
    insert_dead_letter(settings, broker, b'{"name": "reciente"}')
    land(settings.database_url, settings.kafka_bootstrap_servers, settings.topics)
    admin = person(api, settings, "ADMIN", broker)
    # The test session's DAGSTER_HOME has no dagster.yaml: Dagster is "unknown", the rest answers.
    answer = api.get(f"/admin/brokers/{broker.broker_id}/health", headers=admin)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["dagster"]["available"] is False and "dagster.yaml" in found["dagster"]["note"]
    assert found["broker"]["dead_letters_24h"] == 1 and found["broker"]["agent_unknown"] == 0
    assert found["landing"]["last_commit_at"] is not None and found["landing"]["behind"] is not None
    assert found["system"] is None and found["partitions"] is None  # shared partitions: the operator's only

    as_root = api.get(f"/admin/brokers/{broker.broker_id}/health", headers=root).json()
    assert as_root["system"]["dead_letters_24h"] >= 1
    landing = [p for p in as_root["partitions"] if p["reader"] == "landing"]
    assert {p["topic"] for p in landing} >= {settings.topics.messages, settings.topics.dead_letters}
    assert all(p["lag"] is not None and p["lag"] >= 0 for p in landing)

    # An empty instance (configured, never run) reads as available with nothing in it.
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    probes = OpsProbes(settings.kafka_bootstrap_servers, settings.topics, home)
    state = probes.dagster.get()
    assert state["available"] is True and state["sensors"] == [] and state["runs"] == [], state
    # And one that cannot be read (a broken configuration) is "unknown", not an error.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "dagster.yaml").write_text("storage: {nonsense: 1}\n")
    assert OpsProbes(settings.kafka_bootstrap_servers, settings.topics, broken).dagster.get()["available"] is False
    # Kafka away: no lag, and the answer still comes.
    away = OpsProbes("127.0.0.1:9", Topics("nowhere"), None)
    assert away.kafka.get().cluster is None


# --- the pages ---------------------------------------------------------------------------------------------

def dashboard_as(api: TestClient, settings: Settings, role: str, broker: Broker | None) -> TestClient:
    email = f"{role.lower()}-{uuid.uuid4().hex[:8]}@ops.test"
    add_user(settings.database_url, email, PASSWORD, role=role, broker_slug=broker.slug if broker else None)
    client = TestClient(api.app, follow_redirects=False)
    assert client.post("/dashboard/login", data={"email": email, "password": PASSWORD}).status_code == 303
    return client


def test_the_operations_pages_refuse_others_keep_a_refused_payload_and_never_500(
        api: TestClient, settings: Settings, make_broker: BrokerFactory) -> None:
    a, b = make_broker(), make_broker()
    letter = insert_dead_letter(settings, a, b'{"name": "sin contacto", "token": "tok-secreto-123"}')
    base = f"/dashboard/brokers/{a.broker_id}/admin"
    admin, other, agent = (dashboard_as(api, settings, "ADMIN", a), dashboard_as(api, settings, "ADMIN", b),
                           dashboard_as(api, settings, "AGENT", a))
    for path in ("/health", "/usage", "/dead-letters", f"/dead-letters/{letter}"):
        assert admin.get(base + path).status_code == 200, path
        assert other.get(base + path).status_code == 403 and agent.get(base + path).status_code == 403
    assert TestClient(api.app, follow_redirects=False).get(base + "/health").headers["location"] == "/dashboard/login"
    assert "Operación" in admin.get(f"/dashboard/brokers/{a.broker_id}/inbox").text
    assert "Operación" not in agent.get(f"/dashboard/brokers/{a.broker_id}/inbox").text
    page = admin.get(f"{base}/dead-letters/{letter}").text
    assert "tok-secreto-123" not in page and "[REDACTED]" in page

    token = csrf_of(page)
    assert admin.post(f"{base}/dead-letters/{letter}/replay", data={"body": "{}"}).status_code == 403  # no CSRF
    typed = '{"name": "sigue sin contacto \u00d1"}'
    refused = admin.post(f"{base}/dead-letters/{letter}/replay", data={"csrf": token, "body": typed})
    assert refused.status_code == 422 and "phone or an email" in refused.text
    assert "sigue sin contacto Ñ" in refused.text  # the payload typed comes back to be fixed
    weird = admin.post(f"{base}/dead-letters/{letter}/replay", content=f"csrf={token}&body=" + "%00%ED%A0%80%5B" * 50,
                       headers={"content-type": "application/x-www-form-urlencoded"})  # NUL, bad UTF-8
    assert weird.status_code == 422
    assert admin.get(f"{base}/usage", params={"start": "2026-13-01"}).status_code == 422
    assert admin.get(f"{base}/dead-letters/{letter + 10**6}").status_code == 404


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the page has no form"
    return found.group(1)
