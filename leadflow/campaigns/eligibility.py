"""Who may be contacted, when and how: consent, quiet hours, frequency caps, the WhatsApp window.

Everything that can stop or delay a send is decided here, in one place, before anything is sent:
the targeting applies it to every due step, and the dispatcher applies the window again at send
time (a retried send may have left the 24-hour window meanwhile).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

# The window rule sits below campaigns, where the sender can check it again at send time.
from leadflow.outbound.window import WHATSAPP_WINDOW, in_whatsapp_window

__all__ = ["WHATSAPP_WINDOW", "ContactRules", "broker_opt_out", "in_whatsapp_window", "opt_out_words_pattern",
           "opts_out", "quiet_until", "says_opt_out"]

# Opt-out words as leads write them, in the languages they use; one match stops every campaign for
# the lead on every channel. Same words the qualifier reads as ``opted_out`` (rules.py), kept here
# as the consent authority so that no qualifier (an LLM could miss one) decides consent.
OPT_OUT = (
    r"(?i)^\s*(?:baja|stop|unsubscribe|cancelar|alto|parar)\s*[.!]*\s*$|dar(?:me)? de baja|no me (?:vuelvan a )?"
    r"(?:llamen|llames|llamar|escriban|escribas|contacten|contactes|molesten)|no llamar|no quiero que me "
    r"(?:llamen|escriban|contacten)|dejen de (?:llamar|escribir|molestar)|bloquead[oa]|stop (?:calling|texting|"
    r"messaging)|don'?t (?:call|text|contact)|do not (?:call|contact|text)|remove me|\bstop\b|no me escriban mas"
    r"|no me escriban más")

def opts_out(text: pl.Expr) -> pl.Expr:
    """Whether each message says its writer does not want to be contacted (null text: no)."""
    return text.str.contains(OPT_OUT).fill_null(False)


def opt_out_words_pattern(words: Sequence[str]) -> str | None:
    """A broker's own opt-out words (``broker_settings.campaigns.opt_out_words``) as one pattern: each word or
    phrase whole, in any case and spacing. They add to ``OPT_OUT``; none of its words can be taken away.
    None when there are none."""
    parts = []
    for word in words:
        pieces = [re.sub(r"([\\.+*?()|\[\]{}^$#&~-])", r"\\\1", piece) for piece in str(word).split()]
        if pieces:
            parts.append(r"\s+".join(pieces))
    return r"(?i)\b(?:" + "|".join(parts) + r")\b" if parts else None


@functools.lru_cache(maxsize=4096)
def broker_opt_out(words: tuple[str, ...]) -> re.Pattern[str] | None:
    """``opt_out_words_pattern`` compiled, once per list of words (the agent checks every burst)."""
    pattern = opt_out_words_pattern(words)
    return re.compile(pattern) if pattern else None


def says_opt_out(text: str, words: tuple[str, ...] = ()) -> bool:
    """Whether ``text`` opts out: the built-in words, or the broker's own."""
    if re.search(OPT_OUT, text):
        return True
    own = broker_opt_out(words)
    return own is not None and own.search(text) is not None


@dataclass(frozen=True)
class ContactRules:
    """A broker's contact rules (``broker_settings.campaigns`` overrides any of them)."""

    quiet_start: int = 21  # local hour from which nobody is contacted …
    quiet_end: int = 9  # … until this local hour
    cap_messages: int = 3  # at most this many sends per lead …
    cap_days: float = 7.0  # … in this many days, across campaigns


def quiet_until(now: datetime, timezone: str, rules: ContactRules) -> datetime | None:
    """When quiet hours end, if ``now`` falls in them in the broker's timezone; else None."""
    local = now.astimezone(ZoneInfo(timezone))
    hour = local.hour
    start, end = rules.quiet_start, rules.quiet_end
    quiet = (hour >= start or hour < end) if start > end else (start <= hour < end)
    if not quiet:
        return None
    resume = local.replace(hour=end, minute=0, second=0, microsecond=0)
    if resume <= local:
        resume += timedelta(days=1)
    return resume.astimezone(now.tzinfo)
