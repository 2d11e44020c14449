"""How a send can fail, as every sender says it and the dispatcher and visits act on it."""

from __future__ import annotations


class RetryLater(RuntimeError):
    """A 429, a 5xx or a timeout: the send stays pending and is retried after ``after_s``."""

    def __init__(self, reason: str, after_s: float = 60.0) -> None:
        super().__init__(reason)
        self.after_s = after_s


class Rejected(RuntimeError):
    """The provider will never accept this send as it is; the message says why."""


class Skip(RuntimeError):
    """Sending is no longer allowed (e.g. the WhatsApp window closed and there is no template)."""
