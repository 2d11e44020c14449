"""Per-broker LLM qualification in the lead pipeline, with usage accounting and fallback, on the real database."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from leadflow.config import Settings, Topics
from leadflow.db.connection import connect
from leadflow.events import Contact
from tests.conftest import BrokerFactory
from tests.fake_llm import FakeLLM, Reply, ok
from tests.test_leads_pipeline import rows, run, send


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLM]:
    server = FakeLLM().start()
    monkeypatch.setenv("LEADFLOW_OPENAI_API_KEY", "test-key-not-a-secret")
    monkeypatch.setenv("LEADFLOW_OPENAI_BASE_URL", server.url + "/v1")
    yield server
    server.stop()


def configure(settings: Settings, broker_id: int, llm: dict[str, str]) -> None:
    conn = connect(settings.database_url)
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO leadflow.broker_settings (broker_id, llm) VALUES (%s, %s::jsonb) "
                    "ON CONFLICT (broker_id) DO UPDATE SET llm = EXCLUDED.llm", (broker_id, json.dumps(llm)))
    conn.close()


def test_a_broker_on_an_llm_gets_llm_qualifications_and_its_usage_is_accounted(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory, fake: FakeLLM) -> None:
    llm_broker, failing_broker = make_broker(), make_broker()
    configure(settings, llm_broker.broker_id, {"provider": "openai", "model": "gpt-4.1-mini"})
    configure(settings, failing_broker.broker_id, {"provider": "openai", "model": "gpt-4.1-mini"})
    fake.script("openai", ok(operation="invest", locations=["Ñuñoa"], budget_max=9000, budget_currency="UF"),
                Reply(status=500), Reply(status=500), Reply(status=500), Reply(status=500))
    send(settings, fresh_topics, llm_broker, ("whatsapp", "wamid.l1", Contact(channel_user_id="569111"),
                                              "quiero invertir en Ñuñoa, unas 9.000 UF", 0))
    assert run(settings, fresh_topics)["lead_qualifications"]["llm_cost_usd"] > 0
    send(settings, fresh_topics, failing_broker, ("whatsapp", "wamid.l2", Contact(channel_user_id="569222"),
                                                  "busco arriendo en Macul hasta 500 mil", 0))
    run(settings, fresh_topics)

    assert rows(settings, "SELECT qualifier, operation, locations FROM leadflow.lead_qualifications "
                          "WHERE broker_id = %s", llm_broker.broker_id) == [("openai:gpt-4.1-mini", "invest",
                                                                              ["ñuñoa"])]
    assert rows(settings, "SELECT qualifier, operation, locations FROM leadflow.lead_qualifications "
                          "WHERE broker_id = %s", failing_broker.broker_id) == [("rules", "rent", ["macul"])]
    usage = rows(settings, "SELECT broker_id, calls, fallbacks, input_tokens > 0, cost_usd > 0 FROM leadflow.llm_usage "
                           "WHERE broker_id IN (%s, %s) ORDER BY broker_id", llm_broker.broker_id,
                 failing_broker.broker_id)
    assert usage == [(llm_broker.broker_id, 1, 0, True, True), (failing_broker.broker_id, 0, 1, False, False)]
    # Unchanged conversations are never sent again.
    calls = fake.calls("openai")
    run(settings, fresh_topics)
    assert fake.calls("openai") == calls


def test_an_answer_is_remembered_across_runs_so_seen_content_is_never_sent_again(
        settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory, fake: FakeLLM) -> None:
    broker = make_broker()
    configure(settings, broker.broker_id, {"provider": "openai", "model": "gpt-4.1-mini"})
    fake.script("openai", ok(operation="buy", locations=["Providencia"]))
    send(settings, fresh_topics, broker, ("whatsapp", "wamid.r1", Contact(channel_user_id="569333"),
                                          "busco depto para comprar en Providencia", 0))
    run(settings, fresh_topics)
    calls = fake.calls("openai")
    # The qualification is lost (a merge undone, a schema migration): the content is the same, so the
    # next run, in a fresh qualifier, takes the remembered answer instead of asking again.
    conn = connect(settings.database_url)
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM leadflow.lead_scores WHERE broker_id = %s", (broker.broker_id,))
        cur.execute("DELETE FROM leadflow.lead_qualifications WHERE broker_id = %s", (broker.broker_id,))
    conn.close()
    result = run(settings, fresh_topics)
    assert fake.calls("openai") == calls and result["lead_qualifications"]["llm_answers_remembered"] == 1
    assert result["lead_qualifications"]["llm_cost_usd"] == 0  # nothing asked, nothing paid
    assert rows(settings, "SELECT qualifier, locations FROM leadflow.lead_qualifications WHERE broker_id = %s",
                broker.broker_id) == [("openai:gpt-4.1-mini", ["providencia"])]
