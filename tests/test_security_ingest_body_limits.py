"""Issue 17, finding 3: a caller cannot make the ingest API hold a body larger than MAX_BODY_BYTES,
and a body is not read at all until the broker and the channel's credential are known.

What the server reads is observed from the outside, through a real uvicorn server on a socket: a
request that declares (or starts streaming) far more than it sends gets its answer only if the
server did not wait for the rest.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from ingest_api.app import create_app
from ingest_api.intake import MAX_BODY_BYTES
from leadflow.config import Settings
from leadflow.demo.run import BackgroundServer
from leadflow.demo.webhooks import signed
from leadflow.landing import land
from tests import payloads
from tests.conftest import BrokerFactory
from tests.kafka_helpers import events_for
from tests.test_landing import landed

HUGE = 256 * 1024 * 1024  # what the review sent: one unauthenticated 256 MB POST
ANSWER_WITHIN_S = 10.0


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(settings, broker_reload_interval_s=0)) as running:
        yield running


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, broker_reload_interval_s=0)) as test_client:
        yield test_client


def head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    header_block, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = header_block.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def ask(server: BackgroundServer, request_head: bytes, first_bytes: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send a head and the first bytes of a body, never the rest; the answer must come regardless."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER_WITHIN_S) as sock:
        sock.sendall(request_head + first_bytes)
        return read_response(sock)


@pytest.mark.parametrize("channel", sorted(payloads.VALID))
def test_declared_body_over_the_limit_gets_413_without_the_body_being_read(
        server: BackgroundServer, settings: Settings, make_broker: BrokerFactory, channel: str) -> None:
    broker = make_broker()
    path, headers, _ = signed(channel, broker, b"{}")
    status, answer_headers, body = ask(server, head(path, {**headers, "Content-Length": str(HUGE)}), b"{}")
    assert status == 413, body
    assert str(MAX_BODY_BYTES) in json.loads(body)["detail"]
    assert answer_headers.get("connection") == "close"  # the rest of the body is not waited for either
    assert events_for(settings.kafka_bootstrap_servers, settings.topics.dead_letters, broker.broker_id) == []


def test_declared_size_is_judged_before_the_broker_so_413_tells_nothing_about_slugs(
        client: TestClient, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    path, headers, body = signed("whatsapp", broker, payloads.whatsapp_text())
    oversized = {**headers, "content-length": str(MAX_BODY_BYTES + 1)}
    known = client.post(path, content=body, headers=oversized)
    unknown = client.post(path.replace(broker.slug, "no-such-broker"), content=body, headers=oversized)
    assert known.status_code == unknown.status_code == 413
    assert known.json() == unknown.json()


def test_streamed_body_over_the_limit_gets_413_and_the_rest_is_not_read(
        server: BackgroundServer, settings: Settings, make_broker: BrokerFactory) -> None:
    """Chunked, no Content-Length, a bogus signature: the server stops reading at the limit, answers 413
    and closes, long before the 256 MB the caller was ready to send."""
    broker = make_broker()
    path, headers, _ = signed("whatsapp", broker, b"{}")
    headers = {**headers, "Transfer-Encoding": "chunked", "X-Hub-Signature-256": "sha256=" + "0" * 64}
    piece = b"x" * 65536
    frame = b"%x\r\n%s\r\n" % (len(piece), piece)
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER_WITHIN_S) as sock:
        sock.sendall(head(path, headers))

        def pump() -> None:
            nonlocal sent
            try:
                while sent < HUGE:
                    sock.sendall(frame)
                    sent += len(piece)
            except OSError:
                pass  # the server closed the connection: what this test expects

        pumping = threading.Thread(target=pump, daemon=True)
        pumping.start()
        status, answer_headers, body = read_response(sock)
        pumping.join(timeout=ANSWER_WITHIN_S)
    assert status == 413, body
    assert answer_headers.get("connection") == "close"
    assert not pumping.is_alive()
    assert sent < HUGE // 8, f"the server went on reading: {sent} bytes accepted"
    assert events_for(settings.kafka_bootstrap_servers, settings.topics.dead_letters, broker.broker_id) == []


def test_streamed_body_within_the_limit_still_lands(
        server: BackgroundServer, settings: Settings, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    path, headers, body = signed("whatsapp", broker, payloads.whatsapp_text(message_id="wamid.STREAMED1"))

    def in_pieces() -> Iterator[bytes]:  # a generator body: httpx sends it chunked, without a Content-Length
        yield body[:100]
        yield body[100:]

    response = httpx.post(server.url + path, content=in_pieces(), headers=headers, timeout=ANSWER_WITHIN_S)
    assert response.status_code == 200, response.text
    assert "content-length" not in response.request.headers
    land(settings.database_url, settings.kafka_bootstrap_servers, settings.topics)
    assert landed(settings, broker) == ["wamid.STREAMED1"]


# Credentials that fail; each channel's header, so only the broker or the credential decides.
WRONG_CREDENTIALS = {
    "whatsapp": {"X-Hub-Signature-256": "sha256=" + "0" * 64},
    "bland": {"X-Webhook-Signature": "0" * 64},
    "vapi": {"Authorization": "Bearer wrong"},
    "telegram": {"X-Telegram-Bot-Api-Secret-Token": "wrong"},
    "form": {"Authorization": "Bearer wrong"},
}


@pytest.mark.parametrize(("case", "channel"), [
    ("unknown broker", "whatsapp"),
    ("unknown broker", "bland"),
    ("channel not configured", "vapi"),
    ("channel not configured", "whatsapp"),
    ("wrong header secret", "telegram"),
    ("wrong header secret", "form"),
    ("wrong header secret", "vapi"),
])
def test_refused_caller_is_answered_before_its_body_is_read(
        server: BackgroundServer, make_broker: BrokerFactory, case: str, channel: str) -> None:
    """The request promises 1,000 bytes and sends 10: only an answer given without reading can arrive."""
    broker = make_broker(with_secrets=case != "channel not configured")
    slug = "no-such-broker" if case == "unknown broker" else broker.slug
    headers = {"content-type": "application/json", "Content-Length": "1000", **WRONG_CREDENTIALS[channel]}
    status, _, body = ask(server, head(f"/webhooks/{slug}/{channel}", headers), b"0123456789")
    assert (status, json.loads(body)) == (403, {"detail": "forbidden"})


def test_malformed_body_at_the_limit_is_still_dead_lettered_whole(
        client: TestClient, settings: Settings, make_broker: BrokerFactory) -> None:
    """The limit leaves room for the dead-letter copy (base64) under Kafka's 1,000,000-byte record limit."""
    broker = make_broker()
    skeleton = json.dumps({"object": "whatsapp_business_account", "entry": "not-a-list", "pad": ""}).encode()
    raw = skeleton[:-2] + b"p" * (MAX_BODY_BYTES - len(skeleton)) + b'"}'
    assert len(raw) == MAX_BODY_BYTES
    path, headers, body = signed("whatsapp", broker, raw)
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == 422, response.text
    [letter] = events_for(settings.kafka_bootstrap_servers, settings.topics.dead_letters, broker.broker_id)
    assert len(letter["body_b64"]) > 4 * MAX_BODY_BYTES // 3


def test_vapi_report_of_an_hour_long_call_fits_the_limit_and_is_accepted(
        client: TestClient, settings: Settings, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    report = payloads.vapi_long_call(minutes=60)
    path, headers, body = signed("vapi", broker, report)
    assert len(body) < MAX_BODY_BYTES
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 600
