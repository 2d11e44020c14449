"""Each LLM provider through its real SDK against a local fake server: success, 429, 5xx, timeout, bad output."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from leadflow.qualification import llm
from leadflow.qualification.llm import LLMQualifier, from_environment
from leadflow.qualification.turns import Turn
from tests.fake_llm import FakeLLM, Reply, ok

TURNS = [Turn("agent", "¿Qué buscas?"), Turn("lead", "Busco depto 2d2b en Ñuñoa, hasta 5.200 UF")]
ANSWER = {"operation": "buy", "property_type": "apartment", "bedrooms_min": 2, "budget_max": 5200,
          "budget_currency": "UF", "budget_period": "total", "locations": ["Ñuñoa"], "summary": "Compra depto."}
PROVIDERS = ["openai", "anthropic", "gemini"]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLM]:
    server = FakeLLM().start()
    for provider in PROVIDERS:
        monkeypatch.setenv(f"LEADFLOW_{provider.upper()}_API_KEY", "test-key-not-a-secret")
        monkeypatch.setenv(f"LEADFLOW_{provider.upper()}_BASE_URL",
                           server.url + "/v1" if provider == "openai" else server.url)
    yield server
    server.stop()


def qualifier(provider: str, retries: int = 2, timeout: float = 5) -> LLMQualifier:
    return from_environment(provider, timeout=timeout, retries=retries)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_structured_answer_is_validated_into_the_schema_with_usage(fake: FakeLLM, provider: str) -> None:
    fake.script(provider, ok(**ANSWER))
    outcome = qualifier(provider).qualify(TURNS, "CL")
    assert outcome.qualifier.startswith(provider + ":") and outcome.fallback_reason is None
    assert (outcome.qualification.budget_max, outcome.qualification.locations) == (5200, ["ñuñoa"])
    assert outcome.usage is not None and outcome.usage.input_tokens > 0 and outcome.usage.cost_usd > 0
    [(_, request)] = fake.requests
    sent = str(request)
    assert "Ñuñoa" in sent and "LEAD:" in sent  # the conversation, as turns
    structured = {"openai": "json_schema", "anthropic": "record_qualification", "gemini": "application/json"}
    assert structured[provider] in sent


@pytest.mark.parametrize("provider", PROVIDERS)
def test_rate_limit_is_retried_then_answered(fake: FakeLLM, provider: str) -> None:
    fake.script(provider, Reply(status=429), ok(**ANSWER))
    outcome = qualifier(provider).qualify(TURNS, "CL")
    assert outcome.fallback_reason is None and fake.calls(provider) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_persistent_server_errors_fall_back_to_the_rules_after_retries(fake: FakeLLM, provider: str) -> None:
    fake.script(provider, Reply(status=500), Reply(status=503))
    outcome = qualifier(provider, retries=1).qualify(TURNS, "CL")
    assert outcome.qualifier == "rules" and outcome.fallback_reason
    assert outcome.qualification.budget_max == 5200  # the rules still read the conversation
    assert fake.calls(provider) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_timeout_falls_back_to_the_rules(fake: FakeLLM, provider: str) -> None:
    fake.script(provider, Reply(delay_s=2.5, answer=ANSWER))
    outcome = qualifier(provider, retries=0, timeout=1).qualify(TURNS, "CL")
    assert outcome.qualifier == "rules" and outcome.fallback_reason


@pytest.mark.parametrize("provider", PROVIDERS)
def test_malformed_output_falls_back_to_the_rules(fake: FakeLLM, provider: str) -> None:
    fake.script(provider, Reply(raw_text="Claro! El lead busca un depto {no es json"))
    outcome = qualifier(provider).qualify(TURNS, "CL")
    assert outcome.qualifier == "rules" and "JSON" in (outcome.fallback_reason or "")


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_json_wrapped_in_prose_or_fences_is_repaired(fake: FakeLLM, provider: str) -> None:
    import json

    fake.script(provider, Reply(raw_text=f"Aquí está:\n```json\n{json.dumps(ANSWER)}\n```"))
    outcome = qualifier(provider).qualify(TURNS, "CL")
    assert outcome.fallback_reason is None and outcome.qualification.operation == "buy"


def test_answer_that_breaks_the_schema_falls_back(fake: FakeLLM) -> None:
    fake.script("openai", ok(operation="steal", budget_max=-5))
    outcome = qualifier("openai").qualify(TURNS, "CL")
    assert outcome.qualifier == "rules" and "schema" in (outcome.fallback_reason or "")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_unchanged_conversation_is_sent_once(fake: FakeLLM, provider: str) -> None:
    fake.script(provider, ok(**ANSWER))
    q = qualifier(provider)
    first, again = q.qualify(TURNS, "CL"), q.qualify(list(TURNS), "CL")
    assert fake.calls(provider) == 1 and again.cached and again.qualification == first.qualification
    fake.script(provider, ok(**ANSWER))
    q.qualify([*TURNS, Turn("lead", "y con estacionamiento")], "CL")
    assert fake.calls(provider) == 2  # a changed conversation is sent again


def test_no_api_key_means_rules_only_said_once(monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("LEADFLOW_OPENAI_API_KEY", raising=False)
    monkeypatch.setattr(llm, "_SAID_NO_KEY", set())
    with caplog.at_level(logging.WARNING, logger="leadflow.qualification.llm"):
        first = from_environment("openai")
        from_environment("openai")
    assert first.provider is None and first.qualify(TURNS, "CL").qualifier == "rules"
    assert sum("LEADFLOW_OPENAI_API_KEY is not set" in r.message for r in caplog.records) == 1


def test_sdk_clients_are_handed_out_in_turn_to_every_thread_evenly() -> None:
    # The lead agent's hundreds of calls in flight are spread over CLIENT_SHARDS connection pools.
    import threading
    from collections import Counter

    made = iter(range(100))
    shards = llm._Shards(lambda: next(made), 8)
    seen: Counter[int] = Counter()
    lock = threading.Lock()

    def take() -> None:
        mine = Counter(shards.next() for _ in range(1000))
        with lock:
            seen.update(mine)

    threads = [threading.Thread(target=take) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {i: 2000 for i in range(8)}


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_each_provider_spreads_its_calls_over_several_sdk_clients(provider: str, fake: FakeLLM) -> None:
    qualifier = from_environment(provider)
    assert qualifier.provider is not None
    clients = qualifier.provider._clients  # type: ignore[attr-defined]
    assert len({id(clients.next()) for _ in range(llm.CLIENT_SHARDS)}) == llm.CLIENT_SHARDS
    fake.script(provider, ok(operation="buy"), ok(operation="rent"))
    for text in ("busco comprar", "busco arrendar"):
        assert qualifier.qualify([Turn("lead", text)]).qualification.operation in ("buy", "rent")
    assert fake.calls(provider) == 2
