"""Telling the broker's people that a lead was handed to them.

The notice is a row of ``agent_notifications`` (written with the handoff, so it is never lost) and
is delivered to the broker's ``handoff_channel``: ``telegram:<chat id>`` (a chat or group of the
broker's agents, through the broker's own bot) or an http(s) URL that receives it as JSON (a Slack,
Teams or CRM webhook). The row records who it was meant for (the lead's assigned person, else the
broker's admins) and whether it went out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
import psycopg2.extensions

from leadflow.config import provider_url
from leadflow.credentials import CredentialSource, EnvironmentCredentials
from leadflow.outbound.errors import Rejected, RetryLater
from leadflow.outbound.senders import credential

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, telegram_url: str | None = None, timeout_s: float = 5.0,
                 credentials: CredentialSource | None = None) -> None:
        self.telegram_url = (telegram_url or provider_url("LEADFLOW_TELEGRAM_API_URL")).rstrip("/")
        self.credentials = credentials or EnvironmentCredentials()
        self.client = httpx.Client(timeout=timeout_s)

    def deliver(self, db: Callable[[], AbstractContextManager[psycopg2.extensions.cursor]],
                notification_id: int) -> str:
        """Send one pending notice; its row says how it went ("sent" or "failed" with the reason).
        ``db()`` gives a cursor in a transaction (held for the queries only, not the delivery)."""
        with db() as cur:
            cur.execute("""SELECT n.target, n.body, n.recipients, n.lead_id, b.slug, r.channel, r.contact_key
                           FROM leadflow.agent_notifications n JOIN leadflow.brokers b USING (broker_id)
                           JOIN leadflow.agent_replies r USING (reply_id)
                           WHERE n.notification_id = %s AND n.status = 'pending'""", (notification_id,))
            row = cur.fetchone()
        if row is None:
            return "not pending"
        target, body, recipients, lead_id, slug, channel, contact_key = row
        try:
            self._post(target, slug, {"broker": slug, "lead_id": lead_id, "channel": channel, "contact": contact_key,
                                      "recipients": list(recipients or []), "text": body})
            status, detail = "sent", None
        except (RetryLater, Rejected) as exc:
            status, detail = "failed", str(exc)
            log.warning("handoff notice %s for %s not delivered: %s", notification_id, slug, exc)
        with db() as cur:
            cur.execute("""UPDATE leadflow.agent_notifications SET status = %s, detail = %s,
                               sent_at = CASE WHEN %s = 'sent' THEN now() END
                           WHERE notification_id = %s""", (status, detail, status, notification_id))
        return status

    def _post(self, target: str, slug: str, notice: dict[str, Any]) -> None:
        if target.startswith("telegram:"):
            token = credential(self.credentials, slug, "telegram_bot_token")
            url, body = f"{self.telegram_url}/bot{token}/sendMessage", {"chat_id": target[9:], "text": notice["text"]}
        else:
            url, body = target, notice
        for attempt in (1, 2):
            try:
                response = self.client.post(url, json=body)
            except httpx.TransportError as exc:
                if attempt == 2:
                    raise RetryLater(f"{type(exc).__name__} delivering the notice") from exc
                continue
            if response.status_code < 300:
                return
            if response.status_code < 500 or attempt == 2:
                raise Rejected(f"the handoff channel answered {response.status_code}")
