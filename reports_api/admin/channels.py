"""A broker's channel credentials as its admins see them: what is set and where, saving and forgetting them,
Telegram's setWebhook and a test message.

These run as the database owner (``broker_credentials`` is out of the reports role's reach, by design), so the
caller's right to the broker is checked here, before anything is read: only the broker's ADMINs and a SUPERADMIN.
Every write adds an ``audit_log`` row that names the credential and its hint, never its value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg2.extensions
from fastapi import HTTPException, status

from leadflow import credentials
from leadflow.brokers import Broker, select_brokers
from leadflow.credentials import KINDS, CredentialError, MasterKeys
from leadflow.events import OutboundCommand
from leadflow.outbound.errors import Rejected, RetryLater, Skip
from leadflow.outbound.senders import Sender
from reports_api.security import Principal

WEBHOOK_CHANNELS = ("telegram", "whatsapp", "vapi", "bland", "form")
ADMINS_ONLY = "only the broker's admins manage its channels"
TEST_TEXT = "Mensaje de prueba de Leadflow: el canal está configurado."


def require_admin(who: Principal, broker_id: int) -> None:
    if who.role == "SUPERADMIN":
        return
    if who.role != "ADMIN" or who.broker_id != broker_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, ADMINS_ONLY)


def broker(cur: psycopg2.extensions.cursor, broker_id: int) -> Broker:
    found = next((b for b in select_brokers(cur) if b.broker_id == broker_id), None)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"there is no broker {broker_id}")
    return found


def _people(cur: psycopg2.extensions.cursor, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    cur.execute("SELECT user_id, display_name FROM leadflow.users WHERE user_id = ANY(%s)", (list(ids),))
    return {int(r[0]): str(r[1]) for r in cur.fetchall()}


def status_of(cur: psycopg2.extensions.cursor, found: Broker, public_url: str) -> list[dict[str, Any]]:
    """Per channel: each credential's source (stored, environment or none) and hint, and the webhook URL."""
    stored = credentials.infos(cur, found.broker_id)
    names = _people(cur, {i.updated_by for i in stored.values() if i.updated_by is not None})
    channels = []
    for channel in credentials.CHANNELS:
        kinds = []
        for kind in credentials.kinds_of(channel):
            info = stored.get(kind.name)
            source = "stored" if info else ("environment" if found.secret(kind.name) else None)
            kinds.append({"kind": kind.name, "label": kind.label, "secret": kind.secret, "generated": kind.generated,
                          "shape": kind.shape, "source": source, "hint": info.hint if info else "",
                          "environment_variable": found.secret_env_name(kind.name),
                          "version": info.version if info else None, "updated_at": info.updated_at if info else None,
                          "updated_by": names.get(info.updated_by) if info and info.updated_by else None})
        channels.append({"channel": channel, "configured": all(k["source"] for k in kinds), "credentials": kinds,
                         "webhook_url": f"{public_url.rstrip('/')}/webhooks/{found.slug}/{channel}"
                         if channel in WEBHOOK_CHANNELS else None})
    return channels


def _audit(cur: psycopg2.extensions.cursor, broker_id: int, who: Principal, action: str,
           before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    cur.execute("""INSERT INTO leadflow.audit_log (broker_id, user_id, action, before, after)
                   VALUES (%s, %s, %s, %s::jsonb, %s::jsonb)""",
                (broker_id, who.user_id, action, None if before is None else json.dumps(before, default=str),
                 None if after is None else json.dumps(after, default=str)))


@dataclass(frozen=True)
class Saved:
    kinds: list[str]
    # Values Leadflow generated, shown to the admin once (they must give them to the provider).
    generated: dict[str, str]


def save(cur: psycopg2.extensions.cursor, keys: MasterKeys, broker_id: int, who: Principal, channel: str,
         values: dict[str, str], generate: list[str]) -> Saved:
    """Store the given values of one channel's credentials (blank ones are left as they are) and generate the
    ones asked for; all checked before anything is written (a CredentialError names the first bad field)."""
    allowed = {k.name: k for k in credentials.kinds_of(channel)}
    if not allowed:
        raise CredentialError(f"channel {channel!r}: known channels are {', '.join(credentials.CHANNELS)}")
    checked: dict[str, str] = {}
    for kind, value in values.items():
        if kind not in allowed:
            raise CredentialError(f"{kind}: not a credential of {channel}")
        if value.strip():
            checked[kind] = credentials.check_value(kind, value)
    generated: dict[str, str] = {}
    for kind in generate:
        if kind not in allowed or not allowed[kind].generated:
            raise CredentialError(f"{kind}: Leadflow can only generate its own webhook secrets")
        if kind in checked:
            raise CredentialError(f"{kind}: either type a value or generate one")
        generated[kind] = checked[kind] = credentials.generate_value()
    if not checked:
        raise CredentialError("nothing to save: type a value, or ask for one to be generated")
    before = credentials.infos(cur, broker_id)
    for kind, value in checked.items():
        info = credentials.put(cur, keys, broker_id, kind, value, who.user_id)
        old = before.get(kind)
        _audit(cur, broker_id, who, "credential.set",
               {"kind": kind, "hint": old.hint, "version": old.version} if old else None,
               {"kind": kind, "hint": info.hint, "version": info.version, "generated": kind in generated})
    return Saved(sorted(checked), generated)


def forget(cur: psycopg2.extensions.cursor, broker_id: int, who: Principal, kind: str) -> None:
    if kind not in KINDS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{kind}: not a credential Leadflow knows")
    before = credentials.infos(cur, broker_id).get(kind)
    if before is None or not credentials.remove(cur, broker_id, kind):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{kind} is not stored for this broker")
    _audit(cur, broker_id, who, "credential.remove", {"kind": kind, "hint": before.hint, "version": before.version},
           None)


def current_value(cur: psycopg2.extensions.cursor, keys: MasterKeys | None, found: Broker, kind: str) -> str | None:
    """The value in force now, read from the table itself (not a cache that may be seconds old), else the
    environment's."""
    if keys is not None:
        opened = credentials.read_all(cur, keys, [found.broker_id]).get(found.broker_id, {})
        if kind in opened:
            return opened[kind]
    return found.secret(kind)


def webhook_values(cur: psycopg2.extensions.cursor, keys: MasterKeys | None, found: Broker) -> tuple[str, str]:
    """The bot token and webhook secret in force; a 422 naming what is missing."""
    token = current_value(cur, keys, found, "telegram_bot_token")
    secret = current_value(cur, keys, found, "telegram_secret_token")
    missing = [k for k, v in (("telegram_bot_token", token), ("telegram_secret_token", secret)) if not v]
    if missing or token is None or secret is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"set {' and '.join(missing)} first")
    return token, secret


def set_telegram_webhook(token: str, secret: str, found: Broker, telegram_api_url: str, public_url: str,
                         client: httpx.Client) -> dict[str, Any]:
    """Point the broker's bot at its webhook URL with its secret (Telegram's setWebhook): what Telegram
    answered, a 422 with Telegram's refusal, a 502 when Telegram does not answer. Called with no database
    connection held: Telegram may take seconds."""
    url = f"{public_url.rstrip('/')}/webhooks/{found.slug}/telegram"
    try:
        response = client.post(f"{telegram_api_url.rstrip('/')}/bot{token}/setWebhook",
                               json={"url": url, "secret_token": secret,
                                     "allowed_updates": ["message", "edited_message"]})
    except httpx.TransportError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"Telegram did not answer ({type(exc).__name__})") from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 500:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"Telegram answered {response.status_code}")
    if not isinstance(body, dict) or not body.get("ok"):
        detail = str(body.get("description", "") if isinstance(body, dict) else "") or "its answer did not say ok"
        # Telegram's words, without the token should it ever echo the request's path.
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"Telegram refused: {response.status_code} {detail.replace(token, '<token>')}".strip())
    return {"url": url, "telegram": str(body.get("description") or "ok")}


def record_webhook(cur: psycopg2.extensions.cursor, broker_id: int, who: Principal, url: str) -> None:
    _audit(cur, broker_id, who, "channel.telegram_webhook", None, {"url": url})


def send_test(found: Broker, who: Principal, channel: str, to: str, sender: Sender) -> str:
    """One test message through the broker's own credentials: the provider's message id, or a 422 with the
    provider's refusal (a 502 when it could not be reached). WhatsApp sends Meta's ``hello_world`` template,
    which every WhatsApp Business account has and which needs no open conversation."""
    payload: dict[str, Any]
    if channel == "telegram":
        payload = {"chat_id": to, "text": TEST_TEXT}
    else:
        payload = {"to": to.lstrip("+"), "text": TEST_TEXT, "last_inbound_at": None,
                   "template": {"name": "hello_world", "language": "en_US", "parameters": []}}
    command = OutboundCommand.model_validate({
        "event_id": f"test-{found.broker_id}-{who.user_id}", "send_id": 0, "broker_id": found.broker_id,
        "broker_slug": found.slug, "campaign_id": 0, "lead_id": 0, "step": 0, "action": "message",
        "channel": channel, "payload": payload, "created_at": datetime.now(UTC)})
    try:
        return sender.send(command)
    except RetryLater as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from exc
    except (Rejected, Skip) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
