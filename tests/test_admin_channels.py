"""A broker's channels through the reports API's admin routes (issue 14): credentials stored sealed and never shown
back, refusals for everyone but the broker's admins and a SUPERADMIN, one clear message per bad field, an audit row
without the value, Telegram's setWebhook and a test message through the real senders against a local fake."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from leadflow.brokers import Broker, add_broker
from leadflow.config import Settings
from leadflow.credentials import MasterKeys, StoredCredentials
from leadflow.outbound.senders import TelegramSender, WhatsAppSender
from leadflow.users import User, add_user
from reports_api.app import create_app
from reports_api.security import TokenSettings, issue_token
from tests.fake_channels import FakeChannels, Reply
from tests.test_leads_pipeline import rows

PASSWORD = "una-clave-larga-de-prueba"
BOT_TOKEN = "987654:AAH-admin-channels-test-token"
WA_TOKEN = "EAAG-whatsapp-token-" + uuid.uuid4().hex


@dataclass
class World:
    a: Broker
    b: Broker
    users: dict[str, User]
    tokens: TokenSettings
    client: TestClient
    fake: FakeChannels


@pytest.fixture(scope="module")
def world(settings: Settings) -> Iterator[World]:
    tag = uuid.uuid4().hex[:8]
    url = settings.database_url
    a = add_broker(url, f"ch-a-{tag}", name="Canales A", country="CL", timezone="America/Santiago")
    b = add_broker(url, f"ch-b-{tag}", name="Canales B", country="MX", timezone="America/Mexico_City")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
        users = {"admin_a": add_user(url, f"admin-{tag}@a.cl", PASSWORD, role="ADMIN", broker_slug=a.slug),
                 "agent_a": add_user(url, f"agent-{tag}@a.cl", PASSWORD, role="AGENT", broker_slug=a.slug),
                 "admin_b": add_user(url, f"admin-{tag}@b.mx", PASSWORD, role="ADMIN", broker_slug=b.slug),
                 "root": add_user(url, f"root-{tag}@leadflow.dev", PASSWORD, role="SUPERADMIN")}
    fake = FakeChannels(whatsapp_token=WA_TOKEN).start()
    stored = StoredCredentials(url, MasterKeys.from_settings(settings), refresh_s=0.2)
    tokens = TokenSettings.ephemeral()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_TELEGRAM_API_URL", fake.url)
        env.setenv("LEADFLOW_INGEST_PUBLIC_URL", "https://hooks.example.cl")
        app = create_app(url, tokens, credentials=stored,
                         senders={"telegram": TelegramSender(fake.url, credentials=stored),
                                  "whatsapp": WhatsAppSender(fake.url, credentials=stored)})
    try:
        with TestClient(app) as client:
            yield World(a, b, users, tokens, client, fake)
    finally:
        fake.stop()


def as_(world: World, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(world.tokens, world.users[who])}"}


def path(broker: Broker, rest: str = "") -> str:
    return f"/admin/brokers/{broker.broker_id}/channels{rest}"


def credential(channels: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(c for ch in channels for c in ch["credentials"] if c["kind"] == kind)


def test_an_admin_stores_credentials_and_never_sees_a_secret_again(world: World, settings: Settings) -> None:
    saved = world.client.put(path(world.a, "/telegram"), headers=as_(world, "admin_a"),
                             json={"values": {"telegram_bot_token": BOT_TOKEN},
                                   "generate": ["telegram_secret_token"]})
    assert saved.status_code == 200, saved.text
    body = saved.json()
    generated = body["generated"]["telegram_secret_token"]
    assert len(generated) >= 40 and body["saved"] == ["telegram_bot_token", "telegram_secret_token"]
    assert BOT_TOKEN not in saved.text  # the typed secret does not come back; the generated one, this once
    shown = world.client.get(path(world.a), headers=as_(world, "admin_a"))
    assert shown.status_code == 200
    assert BOT_TOKEN not in shown.text and generated not in shown.text
    token = credential(shown.json(), "telegram_bot_token")
    assert (token["source"], token["hint"], token["version"]) == ("stored", "…oken", 1)
    assert token["updated_by"] == world.users["admin_a"].display_name
    telegram = next(ch for ch in shown.json() if ch["channel"] == "telegram")
    assert telegram["configured"]
    assert telegram["webhook_url"] == f"https://hooks.example.cl/webhooks/{world.a.slug}/telegram"
    # In PostgreSQL: sealed, no plaintext anywhere in the row; the audit says which and its hint, not the value.
    sealed = rows(settings, "SELECT kind, wrapped_key, ciphertext, hint FROM leadflow.broker_credentials "
                            "WHERE broker_id = %s", (world.a.broker_id,))
    assert {r[0] for r in sealed} == {"telegram_bot_token", "telegram_secret_token"}
    assert all(BOT_TOKEN.encode() not in bytes(r[1]) + bytes(r[2]) and BOT_TOKEN not in r[3] for r in sealed)
    audit = rows(settings, "SELECT action, before, after, user_id FROM leadflow.audit_log WHERE broker_id = %s "
                           "AND action LIKE 'credential.%%' ORDER BY audit_id", (world.a.broker_id,))
    assert [r[0] for r in audit] == ["credential.set", "credential.set"]
    assert all(r[3] == world.users["admin_a"].user_id for r in audit)
    text = json.dumps([r[1:3] for r in audit], ensure_ascii=False)
    assert BOT_TOKEN not in text and generated not in text and "…oken" in text


def test_a_second_save_versions_the_credential_and_blank_fields_keep_their_values(world: World) -> None:
    saved = world.client.put(path(world.a, "/telegram"), headers=as_(world, "admin_a"),
                             json={"values": {"telegram_bot_token": BOT_TOKEN + "x", "telegram_secret_token": ""}})
    assert saved.status_code == 200 and saved.json()["saved"] == ["telegram_bot_token"]
    channels = saved.json()["channels"]
    assert credential(channels, "telegram_bot_token")["version"] >= 2
    assert credential(channels, "telegram_secret_token")["source"] == "stored"


@pytest.mark.parametrize(("channel", "body", "message"), [
    ("telegram", {"values": {"telegram_bot_token": "nope"}}, "telegram_bot_token: expected the token @BotFather"),
    ("telegram", {"values": {"whatsapp_access_token": "x" * 20}}, "whatsapp_access_token: not a credential of "
                                                                  "telegram"),
    ("telegram", {"generate": ["telegram_bot_token"]}, "telegram_bot_token: Leadflow can only generate"),
    ("whatsapp", {"values": {"whatsapp_phone_number_id": "12ab"}}, "whatsapp_phone_number_id: expected the digits"),
    ("whatsapp", {"values": {}}, "nothing to save"),
    ("fax", {"values": {"x": "y"}}, "channel 'fax': known channels are"),
])
def test_a_bad_value_is_refused_with_its_field_named_and_nothing_stored(
        world: World, settings: Settings, channel: str, body: dict[str, Any], message: str) -> None:
    before = rows(settings, "SELECT kind, version FROM leadflow.broker_credentials WHERE broker_id = %s ORDER BY 1",
                  (world.b.broker_id,))
    answer = world.client.put(path(world.b, f"/{channel}"), headers=as_(world, "admin_b"), json=body)
    assert answer.status_code == 422 and message in answer.json()["detail"], answer.text
    assert rows(settings, "SELECT kind, version FROM leadflow.broker_credentials WHERE broker_id = %s ORDER BY 1",
                (world.b.broker_id,)) == before


@pytest.mark.parametrize("who", ["agent_a", "admin_b"])
def test_only_the_brokers_admins_and_a_superadmin_reach_its_channels(world: World, who: str) -> None:
    headers = as_(world, who)
    assert world.client.get(path(world.a), headers=headers).status_code == 403
    assert world.client.put(path(world.a, "/telegram"), headers=headers,
                            json={"values": {"telegram_bot_token": BOT_TOKEN}}).status_code == 403
    assert world.client.post(path(world.a, "/telegram/webhook"), headers=headers).status_code == 403
    assert world.client.post(path(world.a, "/telegram/test"), headers=headers, json={"to": "1"}).status_code == 403
    assert world.client.delete(path(world.a, "/credentials/telegram_bot_token"), headers=headers).status_code == 403
    assert world.client.get(path(world.a)).status_code == 401
    assert world.client.get(path(world.a), headers=as_(world, "root")).status_code == 200
    assert world.client.get("/admin/brokers/999999999/channels", headers=as_(world, "root")).status_code == 404


def test_set_webhook_gives_telegram_the_public_url_and_the_stored_secret(world: World, settings: Settings) -> None:
    secret = world.client.put(path(world.a, "/telegram"), headers=as_(world, "admin_a"),
                              json={"generate": ["telegram_secret_token"]}).json()["generated"]["telegram_secret_token"]
    answer = world.client.post(path(world.a, "/telegram/webhook"), headers=as_(world, "admin_a"))
    assert answer.status_code == 200, answer.text
    call = [(p, b) for provider, p, b in world.fake.requests if p.endswith("/setWebhook")][-1]
    assert call[0] == f"/bot{BOT_TOKEN}x/setWebhook"
    assert call[1]["url"] == f"https://hooks.example.cl/webhooks/{world.a.slug}/telegram"
    assert call[1]["secret_token"] == secret
    assert rows(settings, "SELECT count(*) FROM leadflow.audit_log WHERE broker_id = %s "
                          "AND action = 'channel.telegram_webhook'", (world.a.broker_id,)) == [(1,)]
    # Telegram refusing (a revoked token) is a 422 with its words; not answering, a 502.
    world.fake.script("telegram", Reply(status=401))
    refused = world.client.post(path(world.a, "/telegram/webhook"), headers=as_(world, "admin_a"))
    assert refused.status_code == 422 and "Telegram refused: 401" in refused.json()["detail"]
    missing = world.client.post(path(world.b, "/telegram/webhook"), headers=as_(world, "admin_b"))
    assert missing.status_code == 422
    assert missing.json()["detail"] == "set telegram_bot_token and telegram_secret_token first"


def test_a_test_message_goes_out_with_the_credentials_just_saved(world: World) -> None:
    headers = as_(world, "admin_b")
    before = world.client.post(path(world.b, "/whatsapp/test"), headers=headers, json={"to": "+5215512345678"})
    assert before.status_code == 422 and "whatsapp_access_token is not configured" in before.json()["detail"]
    saved = world.client.put(path(world.b, "/whatsapp"), headers=headers,
                             json={"values": {"whatsapp_access_token": WA_TOKEN, "whatsapp_phone_number_id": "55501"}})
    assert saved.status_code == 200
    sent = world.client.post(path(world.b, "/whatsapp/test"), headers=headers, json={"to": "+5215512345678"})
    assert sent.status_code == 200 and sent.json()["provider_message_id"].startswith("wamid.")
    request = [(p, b) for provider, p, b in world.fake.requests if provider == "whatsapp"][-1]
    assert request[0] == "/55501/messages" and request[1]["template"]["name"] == "hello_world"
    assert request[1]["to"] == "5215512345678"
    bad = world.client.post(path(world.b, "/whatsapp/test"), headers=headers, json={"to": "no spaces allowed"})
    assert bad.status_code == 422


def test_forgetting_a_credential_gives_the_environment_back(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    headers = as_(world, "admin_b")
    monkeypatch.setenv(world.b.secret_env_name("whatsapp_phone_number_id"), "77777")
    gone = world.client.delete(path(world.b, "/credentials/whatsapp_phone_number_id"), headers=headers)
    assert gone.status_code == 204
    number = credential(world.client.get(path(world.b), headers=headers).json(), "whatsapp_phone_number_id")
    assert (number["source"], number["environment_variable"]) == (
        "environment", world.b.secret_env_name("whatsapp_phone_number_id"))
    again = world.client.delete(path(world.b, "/credentials/whatsapp_phone_number_id"), headers=headers)
    assert again.status_code == 404
