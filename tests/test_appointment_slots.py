"""Free slots from working hours, days off and busy times (pure: no database)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from leadflow.appointments.rules import AgentSchedule, RulesError, ScheduleRules, Window, hours_json, parse_hours
from leadflow.appointments.slots import Preference, Slot, choose_offer, free_slots, naive_free_slots

SANTIAGO = "America/Santiago"
MADRID = "Europe/Madrid"
BROKER = [AgentSchedule(None)]


def local(tz: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz))


def starts(slots: list[Slot], tz: str) -> list[str]:
    return [s.start.astimezone(ZoneInfo(tz)).strftime("%a %d %H:%M") for s in slots]


def test_working_hours_minus_busy_times_and_the_buffer() -> None:
    rules = ScheduleRules(hours={"mon": (Window(start=time(9), end=time(13)),)}, visit_minutes=60, buffer_minutes=30,
                          step_minutes=30, min_notice_minutes=0)
    now = local(SANTIAGO, 2027, 3, 1, 7)  # a Monday, before opening
    busy = {0: [(local(SANTIAGO, 2027, 3, 1, 10, 0), local(SANTIAGO, 2027, 3, 1, 10, 45))]}
    got = starts(free_slots(rules, SANTIAGO, BROKER, busy, now, days=1), SANTIAGO)
    # 09:00 would end at 10:00, touching the busy time without its 30-minute buffer; 11:30 is the first after
    # 10:45 + 30 min on the grid; 12:00 is the last that ends by 13:00.
    assert got == ["Mon 01 11:30", "Mon 01 12:00"]
    busy_none: dict[int, list[tuple[datetime, datetime]]] = {}
    assert starts(free_slots(rules, SANTIAGO, BROKER, busy_none, now, days=1), SANTIAGO) == [
        "Mon 01 09:00", "Mon 01 09:30", "Mon 01 10:00", "Mon 01 10:30", "Mon 01 11:00", "Mon 01 11:30",
        "Mon 01 12:00"]


def test_never_in_the_past_nor_within_the_notice_nor_on_days_off() -> None:
    rules = ScheduleRules(min_notice_minutes=120, holidays=(date(2027, 3, 2),))
    now = local(SANTIAGO, 2027, 3, 1, 12, 10)
    person = AgentSchedule(7, "Ana", blocked=frozenset({date(2027, 3, 3)}))
    got = free_slots(rules, SANTIAGO, [person], {}, now, days=4)
    assert got[0].start == local(SANTIAGO, 2027, 3, 1, 14, 30)  # 12:10 + 2 h, on the next grid point
    days = {s.start.astimezone(ZoneInfo(SANTIAGO)).date() for s in got}
    assert days == {date(2027, 3, 1), date(2027, 3, 4)}  # the holiday and the person's day off skipped
    assert all(s.agents == (7,) for s in got)


def test_people_free_at_a_start_are_listed_together() -> None:
    rules = ScheduleRules(hours={"tue": (Window(start=time(9), end=time(11)),)}, min_notice_minutes=0,
                          buffer_minutes=0)
    now = local(MADRID, 2027, 3, 1, 8)
    ana, ben = AgentSchedule(1, "Ana"), AgentSchedule(2, "Ben", hours=parse_hours({"tue": [{"start": "10:00",
                                                                                         "end": "11:00"}]}))
    busy = {1: [(local(MADRID, 2027, 3, 2, 9), local(MADRID, 2027, 3, 2, 10))]}
    got = {s.start.astimezone(ZoneInfo(MADRID)).strftime("%H:%M"): s.agents
           for s in free_slots(rules, MADRID, [ana, ben], busy, now, days=2)}
    assert got == {"10:00": (1, 2)}


@pytest.mark.parametrize(("tz", "before", "after"), [
    # Chile moves its clocks forward on the first Sunday of September, back on the first Sunday of April.
    (SANTIAGO, (2026, 9, 4), (2026, 9, 7)),
    (SANTIAGO, (2027, 4, 2), (2027, 4, 5)),
    # Spain on the last Sundays of March and October.
    (MADRID, (2027, 3, 26), (2027, 3, 29)),
    (MADRID, (2026, 10, 23), (2026, 10, 26)),
])
def test_a_nine_o_clock_visit_stays_at_nine_across_a_daylight_saving_change(
        tz: str, before: tuple[int, int, int], after: tuple[int, int, int]) -> None:
    rules = ScheduleRules(min_notice_minutes=0, horizon_days=5)
    now = local(tz, *before, 6)
    slots = free_slots(rules, tz, BROKER, {}, now, days=4)
    firsts: dict[date, Slot] = {}
    for slot in slots:
        day = slot.start.astimezone(ZoneInfo(tz)).date()
        firsts.setdefault(day, slot)
    first_before, first_after = firsts[date(*before)], firsts[date(*after)]
    assert first_before.start.astimezone(ZoneInfo(tz)).strftime("%H:%M") == "09:00"
    assert first_after.start.astimezone(ZoneInfo(tz)).strftime("%H:%M") == "09:00"
    # ... which is another hour in UTC: the change really lies between the two days.
    assert first_before.start.astimezone(ZoneInfo(tz)).utcoffset() != \
        first_after.start.astimezone(ZoneInfo(tz)).utcoffset()
    # A visit is its length in real time, whatever the clocks do.
    assert all(s.end - s.start == timedelta(minutes=60) for s in slots)


def test_a_start_inside_the_spring_forward_gap_is_not_offered() -> None:
    # Santiago's clocks jump from 00:00 to 01:00 on 2026-09-06: a midnight window opens at a time that never is.
    rules = ScheduleRules(hours={"sun": (Window(start=time(0), end=time(3)),)}, min_notice_minutes=0)
    now = local(SANTIAGO, 2026, 9, 5, 12)
    assert free_slots(rules, SANTIAGO, BROKER, {}, now, days=2) == []
    assert free_slots(rules, SANTIAGO, BROKER, {}, now + timedelta(days=7), days=2) != []


def test_the_fast_computation_agrees_with_a_per_minute_scan() -> None:
    random.seed(15)
    rules = ScheduleRules(min_notice_minutes=90, buffer_minutes=15, step_minutes=15, visit_minutes=45)
    now = datetime(2027, 1, 4, 13, 7, tzinfo=UTC)
    people = [AgentSchedule(i, blocked=frozenset({date(2027, 1, 4 + i)})) for i in range(1, 6)]
    busy = {}
    for person in people:
        intervals = []
        for _ in range(40):
            start = now + timedelta(minutes=random.randrange(0, 14 * 24 * 60))
            intervals.append((start, start + timedelta(minutes=random.choice((15, 30, 45, 60, 90, 240)))))
        busy[person.agent_id or 0] = intervals
    fast = free_slots(rules, SANTIAGO, people, busy, now)
    slow = naive_free_slots(rules, SANTIAGO, people, busy, now)
    assert fast == slow and [s.agents for s in fast] == [s.agents for s in slow]
    assert len(fast) > 100


def test_an_offer_spreads_over_days_and_parts_of_the_day_and_follows_what_the_lead_asked() -> None:
    rules = ScheduleRules(min_notice_minutes=0)
    now = local(SANTIAGO, 2027, 3, 1, 8)  # Monday
    slots = free_slots(rules, SANTIAGO, BROKER, {}, now, days=7)
    offer = choose_offer(slots, SANTIAGO, 3)
    assert starts(offer, SANTIAGO) == ["Mon 01 09:00", "Tue 02 13:00", "Wed 03 17:00"]
    saturday = choose_offer(slots, SANTIAGO, 3, Preference(weekday=5))
    assert starts(saturday, SANTIAGO) == ["Sat 06 10:00", "Sat 06 10:30", "Sat 06 13:00"]
    afternoon = choose_offer(slots, SANTIAGO, 2, Preference(after=time(14)))
    assert starts(afternoon, SANTIAGO) == ["Mon 01 14:00", "Tue 02 17:00"]
    # Nothing fits (Sunday): the earliest anyway, so the reply can say so and offer what there is.
    assert starts(choose_offer(slots, SANTIAGO, 1, Preference(weekday=6)), SANTIAGO) == ["Mon 01 09:00"]


def test_rules_refuse_what_cannot_work_and_name_the_field() -> None:
    with pytest.raises(RulesError, match="overlap"):
        ScheduleRules.from_settings({"hours": {"mon": [{"start": "09:00", "end": "12:00"},
                                                       {"start": "11:00", "end": "14:00"}]}})
    with pytest.raises(RulesError, match="before it starts"):
        ScheduleRules.from_settings({"hours": {"monday": [{"start": "18:00", "end": "09:00"}]}})
    with pytest.raises(RulesError, match="long enough"):
        ScheduleRules.from_settings({"visit_minutes": 240, "hours": {"mon": [{"start": "09:00", "end": "10:00"}]}})
    with pytest.raises(RulesError, match="visit_minutes"):
        ScheduleRules.from_settings({"visit_minutes": 5})
    rules = ScheduleRules.from_settings({"hours": {"Monday": [{"start": "09:00", "end": "12:00"}]}})
    assert hours_json(rules.hours) == {"mon": [{"start": "09:00", "end": "12:00"}]}
