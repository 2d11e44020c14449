"""Issue 17, finding 12: httpx logs each request's URL at INFO, and the Telegram Bot API carries the
bot token in the URL; ``leadflow.logredact.install()`` keeps the token out of the log records."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from leadflow import logredact
from tests.local_http import LocalServer, send_json

TOKEN = "7412589630:AAHk-3xQ_zP9vLrT2mWnB8cYdE5fGhJkL0s"


@pytest.fixture
def redacting() -> Iterator[None]:
    logredact.install()
    yield
    for name in logredact.LOGGERS:  # leave the process's loggers as other tests expect them
        logger = logging.getLogger(name)
        for installed in [f for f in logger.filters if isinstance(f, logredact.RedactBotTokens)]:
            logger.removeFilter(installed)


@pytest.fixture
def fake_telegram() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            send_json(self, 200, {"ok": True, "result": {"message_id": 1}})

        def log_message(self, *args: object) -> None:
            pass

    server = LocalServer()
    server.serve(Handler)
    yield server.url
    server.stop()


def test_httpx_request_log_does_not_carry_the_telegram_bot_token(
        redacting: None, fake_telegram: str, caplog: pytest.LogCaptureFixture) -> None:
    """The outbound sender's very request shape, through httpx's own INFO log line."""
    with caplog.at_level(logging.INFO, logger="httpx"), httpx.Client() as client:
        response = client.post(f"{fake_telegram}/bot{TOKEN}/sendMessage", json={"chat_id": "1", "text": "hola"})
    assert response.status_code == 200
    [record] = [r for r in caplog.records if r.name == "httpx"]
    assert TOKEN not in record.getMessage() and TOKEN not in caplog.text
    assert "/bot<redacted>/sendMessage" in record.getMessage()
    assert record.getMessage().endswith(' 200 OK"')  # the rest of the line is kept


def test_a_record_through_the_filter_has_no_token_whatever_carries_it() -> None:
    url = httpx.URL(f"https://api.telegram.org/bot{TOKEN}/sendMessage")
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, 'HTTP Request: %s %s "%s %d %s"',
                               ("POST", url, "HTTP/1.1", 200, "OK"), None)
    assert logredact.RedactBotTokens().filter(record) is True  # redacts, never drops
    assert TOKEN not in record.getMessage()
    assert record.getMessage() == ('HTTP Request: POST https://api.telegram.org/bot<redacted>/sendMessage '
                                   '"HTTP/1.1 200 OK"')
    assert logredact.redact(f"for url 'https://proxy.example/tg/bot{TOKEN}/getMe'") == (
        "for url 'https://proxy.example/tg/bot<redacted>/getMe'")


def test_records_without_a_token_are_left_alone() -> None:
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "HTTP Request: %s %s", ("POST", "/v21.0/x"),
                               None)
    assert logredact.RedactBotTokens().filter(record) is True
    assert (record.msg, record.args) == ("HTTP Request: %s %s", ("POST", "/v21.0/x"))


def test_install_is_idempotent(redacting: None) -> None:
    logredact.install()
    logredact.install()
    filters = [f for f in logging.getLogger("httpx").filters if isinstance(f, logredact.RedactBotTokens)]
    assert len(filters) == 1
