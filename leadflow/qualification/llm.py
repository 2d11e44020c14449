"""LLM qualifiers (Anthropic Claude, OpenAI, Google Gemini) behind one strategy, with the rules as fallback.

Each provider is called through its official SDK with structured output (OpenAI: JSON-schema
response format; Anthropic: a forced tool call; Gemini: a JSON response schema) and the answer is
validated against the ``Qualification`` schema. The SDKs retry 429, 5xx and timeouts with
backoff; whatever still fails — an outage, a timeout, output that cannot be repaired into the
schema — falls back to the offline rules, and the result says so and why. Results are cached by
conversation hash, so an unchanged conversation is never sent twice. Token usage is returned
with every call for per-broker accounting.

Configuration (environment): ``LEADFLOW_<PROVIDER>_API_KEY`` (ANTHROPIC, OPENAI, GEMINI), and
optionally ``LEADFLOW_<PROVIDER>_BASE_URL`` and ``LEADFLOW_<PROVIDER>_MODEL``. No key: rules only,
said once in the log.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pydantic import ValidationError

from leadflow.config import secret
from leadflow.qualification.rules import qualify
from leadflow.qualification.schema import Qualification
from leadflow.qualification.turns import Turn, conversation_hash

log = logging.getLogger(__name__)

PROVIDERS = ("anthropic", "openai", "gemini")
DEFAULT_MODELS = {"anthropic": "claude-sonnet-4-5", "openai": "gpt-4.1-mini", "gemini": "gemini-2.5-flash"}
# USD per million tokens (input, output); unknown models are accounted at 0 and said so in the usage.
PRICES = {"claude-sonnet-4-5": (3.0, 15.0), "claude-haiku-4-5": (1.0, 5.0), "gpt-4.1-mini": (0.4, 1.6),
          "gpt-4.1": (2.0, 8.0), "gemini-2.5-flash": (0.3, 2.5), "gemini-2.5-pro": (1.25, 10.0)}
PROMPT_VERSION = 2

SYSTEM_PROMPT = """You qualify real-estate leads for a brokerage in Latin America and Spain.
Read the conversation between a lead and an agent and fill the schema with what the LEAD states.
Rules: leave a field null when the lead does not state it; never guess. The latest statement wins
when the lead corrects themselves. Amounts are plain numbers in the stated currency: "5.200 UF" is
5200 with currency UF, "450 millones" is 450000000, "USD 180k" is 180000, "600 lucas" is 600000
CLP, "2 palos" is 2000000 CLP. A single budget is budget_max; "entre A y B" is min A, max B.
Rents are budget_period "month". "3 ambientes" means 2 bedrooms. Locations are lowercase place
names. opted_out is true only if the lead asks not to be contacted. commitment: the visit,
valuation or call the lead accepted (a "sí"/"dale"/"yes" answers the agent's last proposal; "no puedo
el martes, ¿el jueves?" still accepts the visit); commitment_when: its time in the conversation's
words; commitment_at: that time as a local ISO datetime, resolved against the timestamp in brackets
of the message that says it ("mañana 19 hrs" written on 2025-03-13 is 2025-03-14T19:00:00), null
without a timestamp or an hour. hesitation: "declined" ("no gracias", "solo estoy mirando") or
"postponed" ("te aviso", "lo converso con mi señora", "todavía no"); the latest stance wins, so a
later acceptance clears it and a later postponement clears the commitment. urgency_reason:
"contract_ending" (the lease ends, the landlord wants it back) or "moving" (a move, a transfer, a
moving date). A seller's price is asking_price and asking_currency, never a budget. summary: one
short sentence in the lead's language."""


@dataclass(frozen=True)
class Usage:
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def cost_usd(self) -> float:
        price_in, price_out = PRICES.get(self.model, (0.0, 0.0))
        return (self.input_tokens * price_in + self.output_tokens * price_out) / 1_000_000


@dataclass(frozen=True)
class Outcome:
    qualification: Qualification
    qualifier: str  # "anthropic:<model>", "rules", ...
    usage: Usage | None = None
    fallback_reason: str | None = None
    cached: bool = False


class LLMError(RuntimeError):
    """The provider did not give a usable answer (after the SDK's own retries)."""


class Provider(Protocol):
    name: str
    model: str

    def complete(self, system: str, conversation: str, schema: dict[str, Any]) -> tuple[str | dict[str, Any], Usage]:
        """Raw structured answer (JSON text or an already-parsed object) and token usage."""
        ...


T = TypeVar("T")

# SDK clients per provider, used in turn. Each SDK client holds one connection pool behind one lock, and
# its pool scans every connection it holds to place a request: with the lead agent's hundreds of calls in
# flight that queueing cost 0.3-0.5 s at p95 on an 800 ms call (500 concurrent calls, one client); across
# eight pools it was gone (bench notes in the README).
CLIENT_SHARDS = 8


class _Shards(Generic[T]):
    """``n`` SDK resources (clients, or one of their endpoints), handed out in turn."""

    def __init__(self, make: Callable[[], T], n: int = CLIENT_SHARDS) -> None:
        self._items = tuple(make() for _ in range(n))
        self._turn = itertools.count()  # next() on it is atomic: threads need no lock

    def next(self) -> T:
        return self._items[next(self._turn) % len(self._items)]


def _schema() -> dict[str, Any]:
    schema = Qualification.model_json_schema()
    schema["properties"].pop("version", None)
    return schema


def render(turns: Sequence[Turn]) -> str:
    """The conversation as the model reads it; each turn's time, when known, dates "mañana" and "el jueves"."""
    return "\n".join(f"{f'[{t.at:%Y-%m-%d %H:%M} %a] ' if t.at else ''}{'LEAD' if t.role == 'lead' else 'AGENT'}: "
                     f"{t.text}" for t in turns if t.text)


class OpenAIProvider:
    name = "openai"

    def __init__(self, api_key: str, model: str, base_url: str | None, timeout: float, retries: int) -> None:
        import openai

        self.model = model
        # The SDK imports its resources on first use, under a lock every caller waits on: done here, before a
        # burst of turns arrives (the lead agent's first turns stalled on it for seconds).
        def client() -> openai.OpenAI:
            made = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=retries)
            made.chat.completions  # noqa: B018 - imported here, not at the first turn
            return made

        self._clients = _Shards(client)
        self._errors: tuple[type[Exception], ...] = (openai.OpenAIError,)

    def complete(self, system: str, conversation: str, schema: dict[str, Any]) -> tuple[str | dict[str, Any], Usage]:
        try:
            response = self._clients.next().chat.completions.create(
                model=self.model,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": conversation}],
                response_format={"type": "json_schema",
                                 "json_schema": {"name": "qualification", "schema": schema, "strict": False}},
                temperature=0,
            )
        except self._errors as exc:
            raise LLMError(f"openai: {exc.__class__.__name__}: {exc}") from exc
        usage = Usage(self.name, self.model, getattr(response.usage, "prompt_tokens", 0) or 0,
                      getattr(response.usage, "completion_tokens", 0) or 0)
        if not response.choices:
            raise LLMError("openai: no choices in the answer")
        return response.choices[0].message.content or "", usage


class AnthropicProvider:
    name = "anthropic"

    def __init__(self, api_key: str, model: str, base_url: str | None, timeout: float, retries: int) -> None:
        import anthropic

        self.model = model
        # Imported now, not under a lock at the first turn; several pools (see OpenAI and CLIENT_SHARDS).
        def client() -> anthropic.Anthropic:
            made = anthropic.Anthropic(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=retries)
            made.messages  # noqa: B018
            return made

        self._clients = _Shards(client)
        self._errors: tuple[type[Exception], ...] = (anthropic.AnthropicError,)

    def complete(self, system: str, conversation: str, schema: dict[str, Any]) -> tuple[str | dict[str, Any], Usage]:
        try:
            response = self._clients.next().messages.create(
                model=self.model, max_tokens=1024, system=system,
                messages=[{"role": "user", "content": conversation}],
                tools=[{"name": "record_qualification", "description": "Record the lead's qualification.",
                        "input_schema": schema}],
                tool_choice={"type": "tool", "name": "record_qualification"},
            )
        except self._errors as exc:
            raise LLMError(f"anthropic: {exc.__class__.__name__}: {exc}") from exc
        usage = Usage(self.name, self.model, response.usage.input_tokens or 0, response.usage.output_tokens or 0)
        for block in response.content:
            if getattr(block, "type", None) == "tool_use":
                return dict(block.input), usage  # type: ignore[union-attr]
            if getattr(block, "type", None) == "text":
                return str(block.text), usage  # type: ignore[union-attr]
        raise LLMError("anthropic: no tool call in the answer")


class GeminiProvider:
    name = "gemini"

    def __init__(self, api_key: str, model: str, base_url: str | None, timeout: float, retries: int) -> None:
        from google import genai
        from google.genai import types

        self.model = model
        self._types = types
        options = types.HttpOptions(timeout=int(timeout * 1000), base_url=base_url,
                                    retry_options=types.HttpRetryOptions(attempts=retries + 1, initial_delay=0.2,
                                                                         max_delay=5))
        # Imported now, not under a lock at the first turn; several pools (see OpenAI and CLIENT_SHARDS).
        def client() -> genai.Client:
            # The client itself is kept: it closes its connections when collected.
            made = genai.Client(api_key=api_key, http_options=options)
            made.models  # noqa: B018
            return made

        self._clients = _Shards(client)

    def complete(self, system: str, conversation: str, schema: dict[str, Any]) -> tuple[str | dict[str, Any], Usage]:
        try:
            response = self._clients.next().models.generate_content(
                model=self.model, contents=conversation,
                config=self._types.GenerateContentConfig(system_instruction=system, temperature=0,
                                                         response_mime_type="application/json",
                                                         response_json_schema=schema))
        except Exception as exc:  # the SDK's transport raises its own httpx2 types besides APIError
            raise LLMError(f"gemini: {exc.__class__.__name__}: {exc}") from exc
        meta = response.usage_metadata
        usage = Usage(self.name, self.model, (meta.prompt_token_count or 0) if meta else 0,
                      (meta.candidates_token_count or 0) if meta else 0)
        return response.text or "", usage


_PROVIDER_CLASSES: dict[str, Any] = {"openai": OpenAIProvider, "anthropic": AnthropicProvider,
                                     "gemini": GeminiProvider}


def repair(answer: str | dict[str, Any]) -> Qualification:
    """The answer as a Qualification: parse, strip code fences or prose around the JSON, drop unknown keys."""
    if isinstance(answer, str):
        text = answer.strip()
        fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
        if fenced:
            text = fenced.group(1)
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            raise LLMError("the answer holds no JSON object")
        try:
            data = json.loads(text[start:end + 1])
        except json.JSONDecodeError as exc:
            raise LLMError(f"the answer is not valid JSON: {exc}") from exc
    else:
        data = answer
    if not isinstance(data, dict):
        raise LLMError("the answer is not a JSON object")
    known = {k: v for k, v in data.items() if k in Qualification.model_fields and k != "version"}
    if isinstance(known.get("locations"), list):
        known["locations"] = [str(p).lower() for p in known["locations"] if p]
    if known.get("locations") is None:
        known.pop("locations", None)
    if known.get("opted_out") is None:
        known.pop("opted_out", None)
    try:
        return Qualification.model_validate(known)
    except ValidationError as exc:
        raise LLMError(f"the answer does not fit the schema: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']}") \
            from exc


@dataclass
class LLMQualifier:
    """An LLM provider with the rules behind it, and a cache keyed by conversation content."""

    provider: Provider | None
    prompt_additions: str = ""
    _cache: dict[str, Outcome] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def cache_key(self, turns: Sequence[Turn], country: str | None = None) -> str:
        """What an answer depends on: provider, model, prompt, the conversation's content and the market."""
        assert self.provider is not None
        digest = conversation_hash([t.role for t in turns], [t.text for t in turns])
        if any(t.at for t in turns):  # the same words on another day date another appointment
            digest += ":" + hashlib.sha256(",".join(f"{t.at:%Y%m%d%H%M}" if t.at else "" for t in turns)
                                           .encode()).hexdigest()[:16]
        prompt = hashlib.sha256(f"{PROMPT_VERSION}:{self.prompt_additions}".encode()).hexdigest()[:16]
        return f"{self.provider.name}:{self.provider.model}:{prompt}:{country}:{digest}"

    def remember(self, answers: dict[str, Outcome]) -> None:
        """Answers given before (another process, another run), so they are not asked for again."""
        with self._lock:
            self._cache.update(answers)

    def qualify(self, turns: Sequence[Turn], country: str | None = None) -> Outcome:
        if self.provider is None:
            return Outcome(qualify(turns, country), "rules")
        key = self.cache_key(turns, country)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return Outcome(cached.qualification, cached.qualifier, None, cached.fallback_reason, cached=True)
        if not any(t.role == "lead" and t.text.strip() for t in turns):
            outcome = Outcome(qualify(turns, country), "rules", None, "nothing from the lead to send")
        else:
            system = SYSTEM_PROMPT + (f"\nBroker's instructions: {self.prompt_additions}" if self.prompt_additions
                                      else "") + (f"\nThe broker is in country {country}." if country else "")
            usage = None
            try:
                answer, usage = self.provider.complete(system, render(turns)[:60_000], _schema())
                outcome = Outcome(repair(answer), f"{self.provider.name}:{self.provider.model}", usage)
            except LLMError as exc:
                log.warning("LLM qualification failed, using the rules: %s", exc)
                outcome = Outcome(qualify(turns, country), "rules", usage, str(exc))
        with self._lock:
            self._cache[key] = outcome
        return outcome


_SAID_NO_KEY: set[str] = set()


def from_environment(provider: str, model: str | None = None, timeout: float = 30.0, retries: int = 3,
                     prompt_additions: str = "") -> LLMQualifier:
    """The qualifier for a provider, configured from LEADFLOW_<PROVIDER>_*; rules only without a key."""
    if provider == "rules":
        return LLMQualifier(None)
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; use one of rules, {', '.join(PROVIDERS)}")
    prefix = f"LEADFLOW_{provider.upper()}_"
    api_key = secret(prefix + "API_KEY")
    if not api_key:
        if provider not in _SAID_NO_KEY:
            _SAID_NO_KEY.add(provider)
            log.warning("%sAPI_KEY is not set: qualifying with the offline rules only", prefix)
        return LLMQualifier(None)
    chosen = model or secret(prefix + "MODEL") or DEFAULT_MODELS[provider]
    instance = _PROVIDER_CLASSES[provider](api_key, chosen, secret(prefix + "BASE_URL"), timeout, retries)
    return LLMQualifier(instance, prompt_additions)
