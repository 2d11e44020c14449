"""Slot computation: 200 people × 30 days with 10,000 busy intervals (pure, no services).

Ours: ``leadflow.appointments.slots.free_slots`` (busy intervals merged per person, one binary search per
candidate start). Baseline in the same run: ``naive_free_slots``, the per-minute scan (every busy minute
marked in a set, every minute of each candidate and its buffer looked up). Both must give the same slots; the
target is the issue's: under 200 ms for ours.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from leadflow.appointments.rules import AgentSchedule, ScheduleRules
from leadflow.appointments.slots import Interval, Slot, free_slots, naive_free_slots

NOW = datetime(2027, 3, 1, 11, tzinfo=UTC)  # a Monday morning in Santiago
TIMEZONE = "America/Santiago"


def busy_intervals(people: int, total: int, days: int, seed: int = 15) -> dict[int, list[Interval]]:
    rnd = random.Random(seed)
    busy: dict[int, list[Interval]] = {}
    for i in range(total):
        start = NOW + timedelta(minutes=rnd.randrange(0, days * 24 * 60 // 15) * 15)
        busy.setdefault(i % people + 1, []).append((start, start + timedelta(minutes=rnd.choice((30, 60, 90, 120)))))
    return busy


def bench_slots(people: int = 200, days: int = 30, intervals: int = 10_000, repeats: int = 3) -> None:
    rules = ScheduleRules(horizon_days=days)
    agents = [AgentSchedule(i) for i in range(1, people + 1)]
    busy = busy_intervals(people, intervals, days)

    def timed(fn: Callable[..., list[Slot]]) -> tuple[float, int]:
        times, count = [], 0
        for _ in range(repeats):
            started = time.perf_counter()
            count = sum(len(s.agents) for s in fn(rules, TIMEZONE, agents, busy, NOW, days=days))
            times.append(time.perf_counter() - started)
        return statistics.median(times), count

    ours, found = timed(free_slots)
    naive, naive_found = timed(naive_free_slots)
    agree = free_slots(rules, TIMEZONE, agents, busy, NOW, days=days) == naive_free_slots(
        rules, TIMEZONE, agents, busy, NOW, days=days)
    print(f"\n== appointments: free slots for {people} people × {days} days, {intervals:,} busy intervals "
          f"(median of {repeats})")
    print(f"free_slots (merged intervals, binary search)  {ours * 1000:8.1f} ms  {found:,} (start, person)")
    print(f"per-minute scan (baseline)                    {naive * 1000:8.1f} ms  {naive_found:,} (start, person)")
    print(f"ratio baseline/ours: {naive / ours:.1f}x faster; same slots: {agree}; target < 200 ms: "
          f"{'met' if ours < 0.2 else 'MISSED'}")


if __name__ == "__main__":
    bench_slots(repeats=int(os.environ.get("LEADFLOW_BENCH_REPEATS", "3")))
