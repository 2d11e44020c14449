"""Secrets taken out of text a person will read: a dead letter's body and reason on the admin pages.

A dead letter is an authentic webhook body kept whole so it can be fixed and replayed; a provider may still
have put a credential in it (VAPI's end-of-call report can embed the assistant's server secret; a portal may
post its API key in the form). Three passes, each safe to repeat:

1. ``redact_values``: every known credential of the broker, wherever it appears (as typed, JSON-escaped or
   URL-encoded);
2. ``redact_keyed``: the value of any key named like a secret (token, secret, password, api_key, signature,
   authorization…) in JSON, in a query string or form body, and in ``Header: value`` lines;
3. ``redact_shapes``: things that look like credentials whatever their key: Telegram bot tokens
   (``123456:AA…``) and ``Bearer …``.

Pure: text in, text out (``secret_values`` reads a broker's credentials, environment included). Over-redacting
is the chosen failure: a dead letter shown with a harmless value hidden can still be fixed; one that shows a
secret cannot be unshown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

from leadflow.brokers import Broker
from leadflow.credentials import KINDS

REDACTED = "[REDACTED]"
# Credentials are 8 characters or more (leadflow.credentials' shapes); an environment variable may hold a
# shorter one. Below this, a "value" would be found inside ordinary words and numbers and wreck the body.
MIN_VALUE_CHARS = 6

_SENSITIVE = r"(?:token|secret|passw(?:or)?d|pwd|api[_-]?key|apikey|access[_-]?key|private[_-]?key|authorization" \
             r"|signature|credential|client[_-]?secret)"
_SENSITIVE_KEY = re.compile(_SENSITIVE, re.IGNORECASE)
_JSON_STRING = r'"(?:[^"\\]|\\.)*"'
# A quoted key naming a secret, then its string value: also in a body that is not valid JSON (why it was kept).
_JSON_KEYED = re.compile(r'("(?:[^"\\]|\\.)*' + _SENSITIVE + r'(?:[^"\\]|\\.)*"\s*:\s*)' + _JSON_STRING,
                         re.IGNORECASE)
_FORM_KEYED = re.compile(r"((?:^|[?&;\s])[\w.\-\[\]]*" + _SENSITIVE + r"[\w.\-\[\]]*=)[^&\s\"']*", re.IGNORECASE)
_HEADER_LINE = re.compile(r"(?m)^([ \t]*[\w\-]*" + _SENSITIVE + r"[\w\-]*[ \t]*:[ \t]*)(?![ \t]*[\"{\[])\S.*$",
                          re.IGNORECASE)
# Telegram's bot token: the bot's id, a colon, 35 characters of its secret (30+ to allow for variants).
_BOT_TOKEN = re.compile(r"(?<!\d)\d{1,20}:[A-Za-z0-9_-]{30,}")
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s\"'<>,;]+")


def secret_values(broker: Broker) -> list[str]:
    """The values of the broker's secret credentials in force (stored, else the environment's).

    Identifiers that are not secret (a WhatsApp phone number id, an assistant id, a calendar id) are left out:
    the admin pages show them whole, and the providers' payloads carry them where the parsers look.
    """
    found = (broker.secret(name) for name, kind in KINDS.items() if kind.secret)
    return sorted({value for value in found if value and len(value) >= MIN_VALUE_CHARS}, key=len, reverse=True)


def _forms(value: str) -> list[str]:
    """The ways ``value`` may be written in a body: as is, JSON-escaped, URL-encoded."""
    forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], quote(value, safe=""),
             quote_plus(value)}
    return sorted((f for f in forms if len(f) >= MIN_VALUE_CHARS), key=len, reverse=True)


def redact_values(text: str, values: Iterable[str]) -> str:
    for value in values:
        if len(value) < MIN_VALUE_CHARS:
            continue
        for form in _forms(value):
            text = text.replace(form, REDACTED)
    return text


def redact_bytes(body: bytes, values: Iterable[str]) -> bytes:
    """``redact_values`` on raw bytes (a body in any encoding): the UTF-8 forms of each value are replaced."""
    for value in values:
        if len(value) < MIN_VALUE_CHARS:
            continue
        for form in _forms(value):
            body = body.replace(form.encode("utf-8", "surrogatepass"), REDACTED.encode())
    return body


def redact_structure(value: Any) -> Any:
    """Parsed JSON with the string under any key named like a secret replaced. Numbers are kept: under such keys
    they are counts (VAPI's ``promptTokens``, ``input_tokens``), and a credential is a string."""
    if isinstance(value, dict):
        return {key: (REDACTED if isinstance(item, str) and _SENSITIVE_KEY.search(str(key)) else redact_structure(item))
                for key, item in value.items()}
    if isinstance(value, list):
        return [redact_structure(item) for item in value]
    return value


def redact_keyed(text: str) -> str:
    text = _JSON_KEYED.sub(lambda m: f'{m.group(1)}"{REDACTED}"', text)
    text = _FORM_KEYED.sub(lambda m: m.group(1) + REDACTED, text)
    return _HEADER_LINE.sub(lambda m: m.group(1) + REDACTED, text)


def redact_shapes(text: str) -> str:
    text = _BOT_TOKEN.sub(REDACTED, text)
    return _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def redact(text: str, values: Iterable[str]) -> str:
    """Every pass over free text (a reason, a body that is not JSON)."""
    return redact_shapes(redact_keyed(redact_values(text, values)))


def _dumps(value: Any) -> str:
    shown = json.dumps(value, ensure_ascii=False, indent=2)
    try:
        shown.encode()
    except UnicodeEncodeError:  # a lone surrogate (JSON can escape one): kept escaped, so the page can show it
        shown = json.dumps(value, indent=2)
    return shown


def redact_body(text: str, values: Iterable[str]) -> str:
    """A body as an admin reads and edits it: JSON is redacted by its structure and shown indented (easier to
    fix); anything else is redacted as text and shown as it came."""
    text = redact_values(text, list(values))
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict | list):
            return redact_shapes(_dumps(redact_structure(parsed)))
    except (ValueError, RecursionError):
        pass  # kept because it is not JSON (or nests past what Python walks): redacted as text
    return redact_shapes(redact_keyed(text))
