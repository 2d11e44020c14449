"""The inbox's counts are kept per broker, person and filter for a few seconds, and forgotten on a write."""

from __future__ import annotations

from reports_api.workspace.reads import CountsCache, InboxFilter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def key(broker: int, me: int = 7, f: InboxFilter | None = None) -> tuple[object, ...]:
    return (broker, me, ("entrada",), f or InboxFilter())


def test_counts_are_kept_for_their_ttl_then_counted_again() -> None:
    clock = Clock()
    cache = CountsCache(10.0, clock=clock)
    cache.put(key(1), {"total": 5})
    clock.now += 9.5
    assert cache.get(key(1)) == {"total": 5}
    clock.now += 1.0
    assert cache.get(key(1)) is None


def test_a_write_forgets_its_brokers_counts_only() -> None:
    cache = CountsCache(10.0, clock=Clock())
    cache.put(key(1), {"total": 5})
    cache.put(key(1, me=8, f=InboxFilter(channel="telegram")), {"total": 2})
    cache.put(key(2), {"total": 9})
    cache.forget(1)
    assert cache.get(key(1)) is None and cache.get(key(1, me=8, f=InboxFilter(channel="telegram"))) is None
    assert cache.get(key(2)) == {"total": 9}


def test_a_person_or_a_filter_never_gets_anothers_counts() -> None:
    cache = CountsCache(10.0, clock=Clock())
    cache.put(key(1, me=7), {"total": 5})
    assert cache.get(key(1, me=8)) is None
    assert cache.get(key(1, f=InboxFilter(stage="potencial"))) is None


def test_a_ttl_of_zero_keeps_nothing_and_a_caller_cannot_change_what_is_kept() -> None:
    off = CountsCache(0.0, clock=Clock())
    off.put(key(1), {"total": 5})
    assert off.get(key(1)) is None
    cache = CountsCache(10.0, clock=Clock())
    cache.put(key(1), {"total": 5, "stage": {"entrada": 5}})
    got = cache.get(key(1))
    assert got is not None
    got["stage"]["entrada"] = 0
    assert cache.get(key(1)) == {"total": 5, "stage": {"entrada": 5}}
