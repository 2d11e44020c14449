"""A sample visit time for a campaign's preview page.

A visit step's send offers the lead real free slots when it is written (``campaigns.store.offer_visits``);
the lead's answer books one (the agent, or ``appointments.answers``). The old flow — one fixed slot
tomorrow at 11:00, a "sí" inserting a calendar event — is retired; its ``visits`` table stays for history.
The preview cannot know which slots will be free when the batch runs: it shows a plausible one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo


def proposed_slot(now: datetime, timezone: str, hour: int = 11) -> datetime:
    """The next day at ``hour`` in the broker's timezone (Sunday moves to Monday)."""
    local = now.astimezone(ZoneInfo(timezone)) + timedelta(days=1)
    if local.weekday() == 6:
        local += timedelta(days=1)
    return local.replace(hour=hour, minute=0, second=0, microsecond=0)


def describe_slot(start: datetime) -> str:
    days = ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"]
    return f"el {days[start.weekday()]} {start:%d/%m} a las {start:%H:%M}"
