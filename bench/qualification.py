"""Rules-path qualification and scoring throughput on synthetic conversations (no services).

Conversations come from the demo generator (Spanish and English chats, call transcripts, forms),
so the text is what the pipeline really sees; the distinct conversations are repeated under new
keys up to LEADFLOW_BENCH_CONVERSATIONS (default 1,000,000). Nothing is cached between
conversations, so repetition does not flatter the figure. Timed: ``qualify_frame`` +
``score_frame`` on the messages frame (what the pipeline hands over after reading PostgreSQL).

Baseline, measured in the same run: one regex pass of polars over every message, the floor of any
vectorised reader; the ratio says how many such passes the whole qualification costs.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import polars as pl

from leadflow.demo.generator import generate
from leadflow.qualification.contract import turns_of
from leadflow.qualification.rules import messages_frame, qualify_frame
from leadflow.qualification.scoring import score_frame


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


def _frame(base: list[dict[str, Any]], count: int) -> pl.DataFrame:
    """``count`` conversations as a messages frame: the base ones repeated under new integer keys."""
    one = messages_frame([(i, turns_of(c["messages"]), "CL") for i, c in enumerate(base)])
    copies = count // len(base) + 1
    frame = pl.concat([one.with_columns(pl.col("conversation") + k * len(base)) for k in range(copies)])
    return frame.filter(pl.col("conversation") < count)


def bench_qualification() -> None:
    count = int(os.environ.get("LEADFLOW_BENCH_CONVERSATIONS", "1000000"))
    base = conversations(20_000)
    frame = _frame(base, count)
    lead_messages = frame.filter(pl.col("role") == "lead").height

    started = time.perf_counter()
    frame.select(pl.col("text").str.contains(r"\d+\s*(?:uf|dorm)").sum())
    floor = time.perf_counter() - started

    started = time.perf_counter()
    facts = qualify_frame(frame)
    scored = score_frame(facts, country="CL")
    elapsed = time.perf_counter() - started
    assert scored.height == count

    rate = count / elapsed
    print(f"\n== qualification, rules path: {count:,} conversations ({frame.height / count:.1f} messages, "
          f"{lead_messages / count:.1f} from the lead, each), qualify + score, {os.cpu_count()} cores")
    print(f"{'one regex pass over every message':40s} {floor:8.2f} s   (floor)")
    print(f"{'qualify_frame + score_frame':40s} {elapsed:8.2f} s   {rate:11,.0f} conversations/s  "
          f"→ 1M in {1e6 / rate:5.1f} s  (target: 1M in < 20 s)")
    print(f"ratio: {elapsed / floor:.0f}x the floor")
    hot = scored.filter(pl.col("temperature") == "hot").height
    print(f"check: {scored['operation'].is_not_null().sum():,} with an operation, {hot:,} hot")
    bench_llm_calls(base[:500])


def bench_llm_calls(items: list[dict[str, Any]]) -> None:
    """LLM calls per changed conversation through the real OpenAI SDK against the local fake server."""
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
