"""What a qualifier reads: a conversation's turns, and the hash that says whether it changed.

The hash covers exactly what a qualifier reads (roles and texts, in order), so an unchanged
conversation is recognised and never qualified, or sent to an LLM, twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal


@dataclass(frozen=True)
class Turn:
    role: Literal["lead", "agent"]
    text: str
    # When it was written, in the lead's local time: "mañana 19 hrs" is read against it. Not hashed:
    # a qualifier's answer depends on it only through the appointment it dates.
    at: datetime | None = None


def conversation_hash(roles: Iterable[str], texts: Iterable[str | None]) -> str:
    digest = hashlib.sha256()
    for role, text in zip(roles, texts, strict=True):
        digest.update(role.encode())
        digest.update(b"\x1f")
        digest.update((text or "").encode())
        digest.update(b"\x1e")
    return digest.hexdigest()
