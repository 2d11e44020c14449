"""Channel credentials stored encrypted (issue 14): the envelope, the master keys and their rotation, and the
processes that read them — the ingest API and the senders take a new or rotated secret within seconds, without
a restart; a stored value wins over the environment, and forgetting it gives the environment back."""

from __future__ import annotations

import base64
import os
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ingest_api.app import create_app
from leadflow import credentials
from leadflow.brokers import Broker
from leadflow.config import ConfigurationError, Settings
from leadflow.credentials import CredentialError, MasterKeys, StoredCredentials
from leadflow.db.connection import transaction
from leadflow.demo.webhooks import signed
from leadflow.events import OutboundCommand
from leadflow.landing import land
from leadflow.outbound.errors import Rejected
from leadflow.outbound.senders import WhatsAppSender
from tests import payloads
from tests.conftest import BrokerFactory
from tests.fake_channels import FakeChannels
from tests.test_leads_pipeline import rows

KEY_A = MasterKeys(bytes(range(32)))
KEY_B = MasterKeys(bytes(range(32, 64)), previous=(bytes(range(32)),))
TOKEN = "123456:AAE-bot-token-for-tests-only"


def eventually(check: Callable[[], bool], within_s: float = 15.0) -> bool:
    """Whether ``check`` holds before the deadline: what "within seconds" means in a test (not a timing)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def store(settings: Settings, keys: MasterKeys, broker: Broker, kind: str, value: str) -> None:
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        credentials.put(cur, keys, broker.broker_id, kind, value, None)


# --- the envelope -------------------------------------------------------------------------------------

def test_a_sealed_value_opens_only_on_its_own_row_and_under_a_configured_key() -> None:
    sealed = credentials.seal(KEY_A, 7, "telegram_bot_token", TOKEN)
    assert TOKEN.encode() not in sealed.wrapped_key + sealed.ciphertext
    assert TOKEN not in repr(sealed) and "wrapped" not in repr(sealed)
    assert credentials.unseal(KEY_A, 7, "telegram_bot_token", sealed) == TOKEN
    # A fresh data key each time: sealing the same value twice gives two ciphertexts.
    assert credentials.seal(KEY_A, 7, "telegram_bot_token", TOKEN).ciphertext != sealed.ciphertext
    with pytest.raises(CredentialError, match="broker 8 telegram_bot_token: the stored value does not open"):
        credentials.unseal(KEY_A, 8, "telegram_bot_token", sealed)  # copied onto another broker's row
    with pytest.raises(CredentialError, match="does not open"):
        credentials.unseal(KEY_A, 7, "whatsapp_access_token", sealed)  # or another kind
    tampered = credentials.Sealed(sealed.key_id, sealed.wrapped_key, sealed.ciphertext[:-1] + b"\0")
    with pytest.raises(CredentialError, match="does not open"):
        credentials.unseal(KEY_A, 7, "telegram_bot_token", tampered)
    # Under key B with A as a previous key it still opens; under another key alone it names the missing key.
    assert credentials.unseal(KEY_B, 7, "telegram_bot_token", sealed) == TOKEN
    with pytest.raises(CredentialError, match=f"master key {KEY_A.current_id}, which is not configured"):
        credentials.unseal(MasterKeys(bytes(range(64, 96))), 7, "telegram_bot_token", sealed)


@pytest.mark.parametrize(("kind", "value", "message"), [
    ("telegram_bot_token", "not a token", "telegram_bot_token: expected the token @BotFather gives"),
    ("telegram_secret_token", "short", "telegram_secret_token: expected 16 to 256 letters"),
    ("telegram_secret_token", "has spaces in it, quite long", "telegram_secret_token: expected"),
    ("whatsapp_phone_number_id", "+56 9 1234", "whatsapp_phone_number_id: expected the digits"),
    ("whatsapp_access_token", "   ", "whatsapp_access_token: empty"),
    ("form_api_key", "x" * 5000, "form_api_key: longer than 4096"),
    ("smtp_password", "whatever-long-enough", "smtp_password: not a credential Leadflow knows"),
    ("vapi_api_key", "abcdefgh\x00ijkl", "vapi_api_key: control characters"),
    ("google_oauth_client_id", "client\x7f.apps.googleusercontent.com", "google_oauth_client_id: control characters"),
    ("vapi_api_key", "abcdefghij\ud800", "vapi_api_key: control characters"),
])
def test_a_value_of_the_wrong_shape_is_refused_naming_its_field(kind: str, value: str, message: str) -> None:
    with pytest.raises(CredentialError, match=message):
        credentials.check_value(kind, value)


def test_pages_see_a_hint_of_a_long_secret_nothing_of_a_short_one_and_identifiers_whole() -> None:
    assert credentials.hint("telegram_bot_token", TOKEN) == "…only"
    assert credentials.hint("vapi_api_key", "short-key") == ""
    assert credentials.hint("whatsapp_phone_number_id", "1098765") == "1098765"
    assert credentials.check_value("telegram_secret_token", f"  {credentials.generate_value()} \n")


def test_master_keys_come_from_the_environment_or_for_a_local_database_from_a_file(tmp_path: Path) -> None:
    text = base64.urlsafe_b64encode(bytes(range(32))).decode()
    given = Settings.from_environment({"LEADFLOW_MASTER_KEY": text, "LEADFLOW_HOME": str(tmp_path)})
    assert MasterKeys.from_settings(given).current == bytes(range(32))
    with pytest.raises(ConfigurationError, match="LEADFLOW_MASTER_KEY: a key is 32 bytes"):
        MasterKeys.from_settings(Settings.from_environment({"LEADFLOW_MASTER_KEY": "c2hvcnQ"}))
    with pytest.raises(ConfigurationError, match="LEADFLOW_MASTER_KEY: not base64"):
        MasterKeys.from_settings(Settings.from_environment({"LEADFLOW_MASTER_KEY": "***"}))
    remote = Settings.from_environment({"LEADFLOW_HOME": str(tmp_path),
                                        "LEADFLOW_DATABASE_URL": "postgresql://app@db.internal:5432/leadflow"})
    with pytest.raises(ConfigurationError, match="LEADFLOW_MASTER_KEY must be set"):
        MasterKeys.from_settings(remote)
    assert not (tmp_path / "master.key").exists()
    local = Settings.from_environment({"LEADFLOW_HOME": str(tmp_path),
                                       "LEADFLOW_DATABASE_URL": "postgresql://app@127.0.0.1:5432/leadflow"})
    first = MasterKeys.from_settings(local)
    assert stat.S_IMODE(os.stat(tmp_path / "master.key").st_mode) == 0o600
    assert MasterKeys.from_settings(local) == first  # made once, then read
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]  # no draft left behind
    os.chmod(tmp_path / "master.key", 0o644)
    with pytest.raises(ConfigurationError, match="readable by others: `chmod 600"):
        MasterKeys.from_settings(local)
    # The configuration error never shows a key's value.
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_environment({"LEADFLOW_MASTER_KEY": "x" * 3, "LEADFLOW_CREDENTIALS_REFRESH_S": "0"})
    assert "xxx" not in str(caught.value)


# --- the table, rotation, the migration path ------------------------------------------------------------

def test_rotation_reseals_every_row_and_readers_holding_both_keys_never_stop(
        settings: Settings, make_broker: BrokerFactory) -> None:
    brokers = [make_broker(with_secrets=False) for _ in range(3)]
    for i, broker in enumerate(brokers):
        store(settings, KEY_A, broker, "telegram_bot_token", f"{i}{TOKEN}")
        store(settings, KEY_A, broker, "whatsapp_phone_number_id", f"10987{i}")
    ids = [b.broker_id for b in brokers]
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        assert credentials.read_all(cur, KEY_B, ids) == credentials.read_all(cur, KEY_A, ids)
    done = credentials.rotate(settings.database_url, KEY_B)
    assert done.resealed >= 6 and done.key_id == KEY_B.current_id
    mine = rows(settings, "SELECT DISTINCT key_id FROM leadflow.broker_credentials WHERE broker_id = ANY(%s)", (ids,))
    assert mine == [(KEY_B.current_id,)]
    # After the rotation the new key alone opens everything, and the old one alone nothing.
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        opened = credentials.read_all(cur, MasterKeys(KEY_B.current), ids)
        assert {b: v["telegram_bot_token"] for b, v in opened.items()} == {
            b.broker_id: f"{i}{TOKEN}" for i, b in enumerate(brokers)}
        # The old key alone opens nothing: every row is there, as not opened.
        assert credentials.read_all(cur, KEY_A, ids) == {
            b: {"telegram_bot_token": credentials.UNREADABLE, "whatsapp_phone_number_id": credentials.UNREADABLE}
            for b in ids}
    assert credentials.rotate(settings.database_url, KEY_B).resealed == 0  # nothing left to do


def test_environment_secrets_move_into_the_table_without_overwriting_stored_ones(
        settings: Settings, make_broker: BrokerFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = make_broker()  # its webhook secrets are environment variables, as installs had them
    monkeypatch.setenv(broker.secret_env_name("telegram_bot_token"), TOKEN)
    store(settings, KEY_A, broker, "form_api_key", "stored-before-the-import-1")
    done = credentials.import_environment(settings.database_url, KEY_A, [broker.slug])
    kinds = {kind for slug, kind in done}
    assert {"telegram_secret_token", "whatsapp_app_secret", "telegram_bot_token"} <= kinds
    assert "form_api_key" not in kinds
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        opened = credentials.read_all(cur, KEY_A, [broker.broker_id])[broker.broker_id]
    assert opened["telegram_bot_token"] == TOKEN
    assert opened["telegram_secret_token"] == os.environ[broker.secret_env_name("telegram_secret_token")]
    assert opened["form_api_key"] == "stored-before-the-import-1"
    assert credentials.import_environment(settings.database_url, KEY_A, [broker.slug]) == []


# --- the ingest API ----------------------------------------------------------------------------------

@pytest.fixture
def ingest(settings: Settings) -> Iterator[TestClient]:
    quick = settings.model_copy(update={"credentials_refresh_s": 0.2})
    with TestClient(create_app(quick, broker_reload_interval_s=0)) as client:
        yield client


def telegram(client: TestClient, broker: Broker, secret: str, update_id: int) -> int:
    path, headers, body = signed("telegram", broker, payloads.telegram_text(update_id),
                                 {"telegram_secret_token": secret})
    return client.post(path, content=body, headers=headers).status_code


def test_a_secret_stored_while_the_ingest_api_runs_is_used_within_seconds_and_a_rotated_one_refused(
        settings: Settings, make_broker: BrokerFactory, ingest: TestClient) -> None:
    keys = MasterKeys.from_settings(settings)
    broker = make_broker(with_secrets=False)
    first, second = credentials.generate_value(), credentials.generate_value()
    assert telegram(ingest, broker, first, 1) == 403  # not configured yet
    store(settings, keys, broker, "telegram_secret_token", first)
    assert eventually(lambda: telegram(ingest, broker, first, 2) == 200)
    store(settings, keys, broker, "telegram_secret_token", second)
    assert eventually(lambda: telegram(ingest, broker, first, 3) == 403)
    assert telegram(ingest, broker, second, 4) == 200
    land(settings.database_url, settings.kafka_bootstrap_servers, settings.topics)
    landed = rows(settings, "SELECT provider_message_id FROM leadflow.raw_messages WHERE broker_id = %s",
                  (broker.broker_id,))
    assert {r[0] for r in landed} >= {"2", "4"} and "1" not in {r[0] for r in landed}


def test_a_broker_registered_while_the_ingest_api_runs_is_served_with_its_stored_secret(
        settings: Settings, make_broker: BrokerFactory, ingest: TestClient) -> None:
    assert telegram(ingest, make_broker(with_secrets=False), "x" * 20, 5) == 403  # the directory is loaded
    broker = make_broker(with_secrets=False)  # after the ingest API started
    secret = credentials.generate_value()
    store(settings, MasterKeys.from_settings(settings), broker, "telegram_secret_token", secret)
    assert eventually(lambda: telegram(ingest, broker, secret, 6) == 200)


def test_a_stored_secret_wins_over_the_environment_and_forgetting_it_gives_the_environment_back(
        settings: Settings, make_broker: BrokerFactory, ingest: TestClient) -> None:
    broker = make_broker()
    from_env = os.environ[broker.secret_env_name("telegram_secret_token")]
    assert telegram(ingest, broker, from_env, 7) == 200
    stored = credentials.generate_value()
    store(settings, MasterKeys.from_settings(settings), broker, "telegram_secret_token", stored)
    assert eventually(lambda: telegram(ingest, broker, from_env, 8) == 403)
    assert telegram(ingest, broker, stored, 9) == 200
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        assert credentials.remove(cur, broker.broker_id, "telegram_secret_token")
    assert eventually(lambda: telegram(ingest, broker, from_env, 10) == 200)


def test_after_a_quiet_spell_the_first_webhook_is_checked_against_the_secret_in_force_now(
        settings: Settings, make_broker: BrokerFactory, ingest: TestClient) -> None:
    keys = MasterKeys.from_settings(settings)
    broker = make_broker(with_secrets=False)
    leaked, replacement = credentials.generate_value(), credentials.generate_value()
    store(settings, keys, broker, "telegram_secret_token", leaked)
    assert eventually(lambda: telegram(ingest, broker, leaked, 21) == 200)
    time.sleep(0.6)  # no webhook for three refresh periods; then the admin replaces the leaked secret
    store(settings, keys, broker, "telegram_secret_token", replacement)
    assert telegram(ingest, broker, leaked, 22) == 403  # the very next request, not "within seconds"
    assert telegram(ingest, broker, replacement, 23) == 200


def test_a_stored_value_no_configured_key_opens_refuses_rather_than_falling_back_to_the_environment(
        settings: Settings, make_broker: BrokerFactory, ingest: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    broker = make_broker()  # an environment secret, then replaced by one stored under a key this API lacks
    from_env = os.environ[broker.secret_env_name("telegram_secret_token")]
    store(settings, KEY_A, broker, "telegram_secret_token", credentials.generate_value())
    with caplog.at_level("WARNING", logger="leadflow.credentials"):
        assert eventually(lambda: telegram(ingest, broker, from_env, 24) == 403)
    assert f"stored credential not opened (broker {broker.broker_id}, telegram_secret_token)" in caplog.text
    source = StoredCredentials(settings.database_url, MasterKeys.from_settings(settings), refresh_s=60)
    assert source.get(broker.slug, "telegram_secret_token") is None


def test_a_master_key_rotation_under_a_running_ingest_api_stops_nothing(
        settings: Settings, make_broker: BrokerFactory) -> None:
    broker = make_broker(with_secrets=False)
    secret = credentials.generate_value()
    store(settings, KEY_A, broker, "telegram_secret_token", secret)
    text = base64.urlsafe_b64encode(KEY_B.current).decode()
    both = settings.model_copy(update={"credentials_refresh_s": 0.2, "master_key": text,
                                       "master_keys_previous": base64.urlsafe_b64encode(KEY_A.current).decode()})
    with TestClient(create_app(both, broker_reload_interval_s=0)) as client:
        assert eventually(lambda: telegram(client, broker, secret, 11) == 200)
        credentials.rotate(settings.database_url, KEY_B)
        for update_id in range(12, 20):
            assert telegram(client, broker, secret, update_id) == 200
            time.sleep(0.05)
    only_new = settings.model_copy(update={"credentials_refresh_s": 0.2, "master_key": text})
    with TestClient(create_app(only_new, broker_reload_interval_s=0)) as client:
        assert telegram(client, broker, secret, 20) == 200


# --- the senders -------------------------------------------------------------------------------------

def whatsapp_command(broker: Broker) -> OutboundCommand:
    return OutboundCommand.build(send_id=1, broker_id=broker.broker_id, campaign_id=1, lead_id=1, step=0,
                                 broker_slug=broker.slug, action="message", channel="whatsapp",
                                 payload={"to": "56912345678", "text": "Hola", "last_inbound_at": None,
                                          "template": {"name": "hello_world", "language": "en_US", "parameters": []}},
                                 created_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00"))


def test_a_sender_reads_the_stored_token_and_a_replaced_one_within_seconds(
        settings: Settings, make_broker: BrokerFactory) -> None:
    broker = make_broker(with_secrets=False)
    fake = FakeChannels(whatsapp_token="stored-token-one-" + uuid.uuid4().hex).start()
    try:
        source = StoredCredentials(settings.database_url, MasterKeys.from_settings(settings), refresh_s=0.2)
        sender = WhatsAppSender(fake.url, credentials=source)
        with pytest.raises(Rejected, match=f"whatsapp_access_token is not configured for {broker.slug}"):
            sender.send(whatsapp_command(broker))
        keys = MasterKeys.from_settings(settings)
        store(settings, keys, broker, "whatsapp_access_token", fake.whatsapp_token)
        store(settings, keys, broker, "whatsapp_phone_number_id", "1098765")
        assert eventually(lambda: bool(_sent(sender, broker)))
        assert fake.requests[-1][1] == "/1098765/messages"
        fake.whatsapp_token = "stored-token-two-" + uuid.uuid4().hex
        store(settings, keys, broker, "whatsapp_access_token", fake.whatsapp_token)
        assert eventually(lambda: bool(_sent(sender, broker)))
    finally:
        fake.stop()


def _sent(sender: WhatsAppSender, broker: Broker) -> str | None:
    try:
        return sender.send(whatsapp_command(broker))
    except Rejected:
        return None
