"""Rules-path qualification and scoring throughput on synthetic conversations (no services).

Conversations come from the demo generator (Spanish and English chats, call transcripts, forms),
so the text is what the pipeline really sees. Measured on LEADFLOW_BENCH_CONVERSATIONS (default
20,000) and projected to 1M; single process and one process per core.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from leadflow.demo.generator import generate
from leadflow.qualification.contract import qualify_conversation


def conversations(count: int) -> list[dict[str, Any]]:
    """Whole conversations (lead and agent turns) rebuilt from generated provider payloads."""
    hooks = generate([(1, "CL"), (2, "MX")], max(count // 2, 1), seed=11, duplicate_rate=0, malformed_rate=0)
    by_person: dict[str, list[dict[str, str]]] = {}
    for hook in hooks:
        p = hook.payload
        if hook.channel == "telegram":
            key, turns = f"tg{p['message']['from']['id']}", [{"role": "lead", "text": p["message"]["text"]}]
        elif hook.channel == "whatsapp":
            value = p["entry"][0]["changes"][0]["value"]
            if "messages" not in value:
                continue
            key = f"wa{value['messages'][0]['from']}"
            turns = [{"role": "lead", "text": value["messages"][0]["text"]["body"]}]
        elif hook.channel == "vapi":
            key = p["message"]["call"]["id"]
            turns = [{"role": "lead" if m["role"] == "user" else "agent", "text": m["message"]}
                     for m in p["message"]["artifact"]["messages"] if m["role"] != "system"]
        elif hook.channel == "bland":
            key = p["call_id"]
            turns = [{"role": "lead" if t["user"] == "user" else "agent", "text": t["text"]} for t in p["transcripts"]]
        else:
            key, turns = p["submission_id"], [{"role": "lead", "text": p["message"]}]
        by_person.setdefault(key, []).extend(turns)
    base = [{"id": key, "messages": turns} for key, turns in by_person.items()]
    return (base * (count // len(base) + 1))[:count]


def _work(batch: list[dict[str, Any]]) -> int:
    for conversation in batch:
        qualify_conversation(conversation, "CL")
    return len(batch)


def bench_qualification() -> None:
    count = int(os.environ.get("LEADFLOW_BENCH_CONVERSATIONS", "20000"))
    items = conversations(count)
    messages = sum(len(c["messages"]) for c in items)
    started = time.perf_counter()
    _work(items)
    single = count / (time.perf_counter() - started)
    workers = os.cpu_count() or 1
    chunks = [items[i::workers * 4] for i in range(workers * 4)]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        done = sum(pool.map(_work, chunks))
    parallel = done / (time.perf_counter() - started)
    print(f"\n== qualification, rules path: {count} conversations ({messages / count:.1f} messages each), "
          "qualify + score")
    print(f"{'one process':36s} {single:11.0f} conversations/s  → 1M in {1e6 / single:6.0f} s")
    print(f"{f'{workers} processes':36s} {parallel:11.0f} conversations/s  → 1M in {1e6 / parallel:6.0f} s"
          "  (target: 1M in < 20 s)")
    bench_llm_calls(items[:500])


def bench_llm_calls(items: list[dict[str, Any]]) -> None:
    """LLM calls per changed conversation through the real OpenAI SDK against the local fake server."""
    from leadflow.qualification.contract import turns_of
    from leadflow.qualification.llm import from_environment
    from tests.fake_llm import FakeLLM, ok

    fake = FakeLLM().start()
    os.environ["LEADFLOW_OPENAI_API_KEY"] = "bench-key-not-a-secret"
    os.environ["LEADFLOW_OPENAI_BASE_URL"] = fake.url + "/v1"
    try:
        qualifier = from_environment("openai", timeout=10, retries=2)
        distinct = {json.dumps(c["messages"], sort_keys=True): c for c in items}
        conversations = list(distinct.values())
        fake.script("openai", *[ok(operation="buy") for _ in range(len(conversations) * 2)])
        for conversation in conversations:  # first sight: every conversation is new
            qualifier.qualify(turns_of(conversation["messages"]), "CL")
        first = fake.calls("openai")
        for conversation in conversations:  # the same again: nothing changed
            qualifier.qualify(turns_of(conversation["messages"]), "CL")
        unchanged = fake.calls("openai") - first
        changed = conversations[::10]
        for conversation in changed:  # a tenth of the leads write once more
            messages = [*conversation["messages"], {"role": "lead", "text": "¿sigue disponible?"}]
            qualifier.qualify(turns_of(messages), "CL")
        after_change = fake.calls("openai") - first - unchanged
    finally:
        fake.stop()
    print(f"LLM calls: {first} for {len(conversations)} new conversations, {unchanged} when nothing changed, "
          f"{after_change} for {len(changed)} changed → {after_change / max(len(changed), 1):.2f} calls per changed "
          "conversation (target <= 1)")
