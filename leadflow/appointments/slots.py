"""Free visit slots from working hours, days off and busy times; the few to offer a lead.

``free_slots`` lays each person's working windows, day by day in the broker's timezone, on the slot grid,
and keeps the starts whose visit plus buffer touches none of that person's busy intervals (their visits,
their Google Calendar's busy times). Busy intervals are merged once per person, so checking a candidate
is one binary search: 200 people × 30 days × 10k busy intervals runs in tens of milliseconds (``make
bench`` prints it against a per-minute scan). Wall-clock times are turned into instants with ``zoneinfo``,
so a day that gains or loses an hour keeps its 09:00 at nine; a start that does not exist that day (a
spring-forward gap) is skipped, never shifted.

``choose_offer`` picks the 2–3 to write to a lead: the earliest, spread over different days and parts of the
day, narrowed first to what the lead asked for ("el sábado", "en la tarde").
Pure: no database.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from leadflow.appointments.rules import WEEKDAYS, AgentSchedule, ScheduleRules

Interval = tuple[datetime, datetime]
AgentKey = int  # an agent's user id, or 0 for the broker's own calendar


def agent_key(agent_id: int | None) -> AgentKey:
    return agent_id or 0


@dataclass(frozen=True, order=True)
class Slot:
    """A visit that can start at ``start``: the people free then, best first."""

    start: datetime
    end: datetime
    agents: tuple[int | None, ...] = field(default=(), compare=False)

    def to_json(self) -> dict[str, object]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "agents": list(self.agents)}

    @classmethod
    def from_json(cls, value: Mapping[str, object]) -> Slot:
        agents = value.get("agents")
        return cls(datetime.fromisoformat(str(value["start"])), datetime.fromisoformat(str(value["end"])),
                   tuple(None if a is None else int(str(a)) for a in (agents if isinstance(agents, list) else [])))


@dataclass(frozen=True)
class Preference:
    """What a lead asked for: a date, a weekday, a part of the day (wall-clock hours, the broker's zone)."""

    day: date | None = None
    weekday: int | None = None  # Monday 0
    after: time | None = None
    before: time | None = None
    not_before: date | None = None  # "la próxima semana"

    def accepts(self, start_local: datetime) -> bool:
        if self.day is not None and start_local.date() != self.day:
            return False
        if self.weekday is not None and start_local.weekday() != self.weekday:
            return False
        if self.not_before is not None and start_local.date() < self.not_before:
            return False
        clock = start_local.time()
        if self.after is not None and clock < self.after:
            return False
        return not (self.before is not None and clock >= self.before)

    @property
    def empty(self) -> bool:
        return self == Preference()


def _merged(intervals: Iterable[Interval]) -> tuple[list[float], list[float]]:
    """Busy intervals as sorted, disjoint (starts, ends) in epoch seconds."""
    starts: list[float] = []
    ends: list[float] = []
    for s, e in sorted((s.timestamp(), e.timestamp()) for s, e in intervals):
        if e <= s:
            continue
        if ends and s <= ends[-1]:
            if e > ends[-1]:
                ends[-1] = e
        else:
            starts.append(s)
            ends.append(e)
    return starts, ends


def _instant(day: date, clock: time, zone: ZoneInfo) -> datetime | None:
    """The instant of a wall-clock time in ``zone``, or None when that time does not exist that day."""
    local = datetime.combine(day, clock, zone)
    if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None  # in the gap of a spring-forward change
    return local


def free_slots(rules: ScheduleRules, timezone: str, agents: Sequence[AgentSchedule],
               busy: Mapping[AgentKey, Iterable[Interval]], now: datetime, *,
               days: int | None = None, first_day: date | None = None) -> list[Slot]:
    """Every start on the grid at which someone can take a visit, earliest first, over ``days`` local days
    from ``first_day`` (default: today, for the rules' horizon). Never in the past nor within the minimum
    notice; never on a holiday or a person's day off; never touching a busy interval or its buffer."""
    zone = ZoneInfo(timezone)
    visit = rules.visit_minutes * 60
    buffer = rules.buffer_minutes * 60
    step = rules.step_minutes * 60
    earliest = now.timestamp() + rules.min_notice_minutes * 60
    start_day = first_day or now.astimezone(zone).date()
    holidays = frozenset(rules.holidays)
    found: dict[float, list[int | None]] = {}
    for agent in agents:
        starts, ends = _merged(busy.get(agent_key(agent.agent_id), ()))
        hours = agent.hours_in(rules)
        for offset in range(days if days is not None else rules.horizon_days):
            day = start_day + timedelta(days=offset)
            if day in holidays or day in agent.blocked:
                continue
            for window in hours.get(WEEKDAYS[day.weekday()], ()):
                opens, closes = _instant(day, window.start, zone), _instant(day, window.end, zone)
                if opens is None or closes is None:
                    continue  # a window cut by a daylight-saving gap: not offered that day
                first, last = opens.timestamp(), closes.timestamp() - visit
                t = first
                if t < earliest:  # skip the grid points before the notice at once
                    t = first + -(-(earliest - first) // step) * step
                while t <= last:
                    # The first busy interval ending after the visit's padded start; free when it starts at
                    # or after the padded end.
                    i = bisect_right(ends, t - buffer)
                    if i < len(starts) and starts[i] < t + visit + buffer:
                        t = max(t + step, first + -(-(ends[i] + buffer - first) // step) * step)
                        continue
                    found.setdefault(t, []).append(agent.agent_id)
                    t += step
    return [Slot(datetime.fromtimestamp(t, UTC), datetime.fromtimestamp(t + visit, UTC), tuple(found[t]))
            for t in sorted(found)]


def naive_free_slots(rules: ScheduleRules, timezone: str, agents: Sequence[AgentSchedule],
                     busy: Mapping[AgentKey, Iterable[Interval]], now: datetime, *,
                     days: int | None = None, first_day: date | None = None) -> list[Slot]:
    """The same answer by a per-minute scan: every busy minute marked, every candidate's minutes checked.
    The benchmark's baseline and the tests' oracle."""
    zone = ZoneInfo(timezone)
    visit, buffer, step = rules.visit_minutes, rules.buffer_minutes, rules.step_minutes
    earliest = now + timedelta(minutes=rules.min_notice_minutes)
    start_day = first_day or now.astimezone(zone).date()
    found: dict[datetime, list[int | None]] = {}
    for agent in agents:
        taken: set[int] = set()
        for s, e in busy.get(agent_key(agent.agent_id), ()):
            minute = int(s.timestamp() // 60)
            while minute * 60 < e.timestamp():
                taken.add(minute)
                minute += 1
        for offset in range(days if days is not None else rules.horizon_days):
            day = start_day + timedelta(days=offset)
            if day in rules.holidays or day in agent.blocked:
                continue
            for window in agent.hours_in(rules).get(WEEKDAYS[day.weekday()], ()):
                opens, closes = _instant(day, window.start, zone), _instant(day, window.end, zone)
                if opens is None or closes is None:
                    continue
                start = opens
                while start + timedelta(minutes=visit) <= closes:
                    if start >= earliest:
                        first = int(start.timestamp() // 60)
                        if all(m not in taken for m in range(first - buffer, first + visit + buffer)):
                            found.setdefault(start.astimezone(UTC), []).append(agent.agent_id)
                    start += timedelta(minutes=step)
    return [Slot(t, t + timedelta(minutes=visit), tuple(found[t])) for t in sorted(found)]


def _part_of_day(local: datetime) -> int:
    return 0 if local.hour < 13 else 1 if local.hour < 17 else 2


def choose_offer(slots: Sequence[Slot], timezone: str, count: int, preference: Preference | None = None,
                 prefer_agent: int | None = None, exclude: Iterable[datetime] = ()) -> list[Slot]:
    """Up to ``count`` slots to offer: what the lead asked for if anything fits it (else the earliest
    anyway: the reply says so), the earliest first, then spread over other days and parts of the day.
    ``prefer_agent`` (the lead's own agent) is named first among the people free at a start."""
    zone = ZoneInfo(timezone)
    skip = {s.astimezone(UTC) for s in exclude}
    pool = [s for s in slots if s.start.astimezone(UTC) not in skip]
    if preference is not None and not preference.empty:
        fitting = [s for s in pool if preference.accepts(s.start.astimezone(zone))]
        pool = fitting or pool
    chosen: list[Slot] = []

    def day(slot: Slot) -> date:
        return slot.start.astimezone(zone).date()

    def part(slot: Slot) -> int:
        return _part_of_day(slot.start.astimezone(zone))

    # After the earliest: another day at another part of the day, then another day, then another part of a
    # day already offered, then whatever is left, earliest first each time.
    rules: tuple[Callable[[Slot], bool], ...] = (
        lambda s: all(day(s) != day(c) and part(s) != part(c) for c in chosen),
        lambda s: all(day(s) != day(c) for c in chosen),
        lambda s: all((day(s), part(s)) != (day(c), part(c)) for c in chosen),
        lambda s: True)
    for rule in rules:
        for slot in pool:
            if len(chosen) >= count:
                break
            if slot not in chosen and rule(slot):
                chosen.append(slot)
    chosen.sort()
    if prefer_agent is not None:
        chosen = [Slot(s.start, s.end, tuple(sorted(s.agents, key=lambda a: a != prefer_agent))) for s in chosen]
    return chosen
