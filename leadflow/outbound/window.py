"""The WhatsApp customer-service window: free-form text only within 24 hours of the lead's last message.

Below campaigns on purpose: targeting decides with it before a step is sent
(``leadflow.campaigns.eligibility``, where every contact rule is listed), and the WhatsApp sender
checks it again at send time, since a retried send may have left the window meanwhile.
"""

from __future__ import annotations

from datetime import datetime, timedelta

WHATSAPP_WINDOW = timedelta(hours=24)


def in_whatsapp_window(last_inbound_at: datetime | None, now: datetime) -> bool:
    """Free-form text is allowed only within 24 hours of the lead's last WhatsApp message."""
    return last_inbound_at is not None and now - last_inbound_at < WHATSAPP_WINDOW
