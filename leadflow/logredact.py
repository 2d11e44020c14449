"""Keep credentials that travel in URLs out of the logs.

The Telegram Bot API puts the bot token in the path (``https://api.telegram.org/bot<TOKEN>/sendMessage``)
and httpx logs every request's URL at INFO, so ``leadflow -v`` would write the token of every
broker that sends on Telegram. ``install()`` puts a filter on the ``httpx`` logger that rewrites
such records before any handler sees them; the records themselves are kept.
"""

from __future__ import annotations

import logging
import re

# httpx logs through this one logger, by name (httpcore's trace records carry no URL).
LOGGERS = ("httpx",)

# ``/bot<token>`` up to the next slash, quote or space: Telegram's token shape (``<digits>:<letters>``)
# is not relied on, so a token of another shape, or a proxy's path in front, is still redacted.
_BOT_TOKEN = re.compile(r"/bot[^/\s\"'<>]+")
REDACTED = "/bot<redacted>"


def redact(text: str) -> str:
    return _BOT_TOKEN.sub(REDACTED, text)


class RedactBotTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()  # httpx passes the URL as an argument, so the formatted text is what to scan
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()  # already formatted: a "%" in it must not be read again
        return True


def install() -> None:
    """Put the filter on the loggers that log request URLs; calling it again adds nothing."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactBotTokens) for f in logger.filters):
            logger.addFilter(RedactBotTokens())
