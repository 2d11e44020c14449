"""Sales-pipeline stages: where a lead stands, advanced automatically when conditions hold.

A pipeline is data (``Pipeline``; brokers override it in ``leadflow.broker_settings``): ordered
stages, each with the condition that lets a lead enter it automatically and the days of
inactivity after which a lead in it counts as stalled. Automatic moves only go forward; passing
several stages at once records each stage entered, so the funnel counts every stage a lead
reached. "perdido" can be entered from any stage (by default when the lead opts out).
Pure: facts in, transitions out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

LOST = "perdido"


@dataclass(frozen=True)
class Stage:
    code: str
    name: str
    # Condition names from CONDITIONS, all of which must hold; empty: only entered by hand.
    requires: tuple[str, ...] = ()
    stall_days: int | None = None


@dataclass(frozen=True)
class Pipeline:
    stages: tuple[Stage, ...]
    lost_when: tuple[str, ...] = ("opted_out",)

    def position(self, code: str | None) -> int:
        if code is None:
            return -1
        if code == LOST:
            return len(self.stages)
        return next(i for i, s in enumerate(self.stages) if s.code == code)

    def stage(self, code: str) -> Stage:
        if code == LOST:
            return Stage(LOST, "Perdido")
        return self.stages[self.position(code)]

    @classmethod
    def from_settings(cls, settings: dict[str, Any] | None) -> Pipeline:
        """A broker's pipeline from its settings, ``{"stages": [{"code", "name", "requires", "stall_days"}]}``.

        Without stages in the settings, the default pipeline.
        """
        if not settings or not settings.get("stages"):
            return DEFAULT_PIPELINE
        stages = tuple(Stage(s["code"], s.get("name", s["code"]), tuple(s.get("requires", ())), s.get("stall_days"))
                       for s in settings["stages"])
        unknown = {c for s in stages for c in s.requires} - set(CONDITIONS)
        if unknown:
            raise ValueError(f"unknown stage conditions {sorted(unknown)}; known: {sorted(CONDITIONS)}")
        return cls(stages, tuple(settings.get("lost_when", ("opted_out",))))


DEFAULT_PIPELINE = Pipeline((
    Stage("entrada", "Entrada", (), 2),
    Stage("perfilamiento", "Perfilamiento", ("has_name", "has_contact_or_budget"), 5),
    Stage("calificacion_financiera", "Calificación financiera", ("scored_warm", "has_budget", "has_location"), 7),
    Stage("potencial", "Potencial", ("financing_ready", "scored_hot"), 7),
    Stage("agendado", "Agendado", ("visit_accepted",), 10),
    Stage("seguimiento", "Seguimiento", (), 14),
    Stage("referidos", "Referidos", (), 30),
    Stage("ganado", "Ganado", ()),
))


@dataclass(frozen=True)
class StageFacts:
    has_name: bool = False
    has_contact: bool = False
    has_budget: bool = False
    has_location: bool = False
    score: int = 0
    temperature: str = "cold"
    financing_ready: bool = False
    opted_out: bool = False
    visit_accepted: bool = False
    warm_threshold: int = 40


CONDITIONS = {
    "has_name": lambda f: f.has_name,
    "has_contact": lambda f: f.has_contact,
    "has_budget": lambda f: f.has_budget,
    "has_location": lambda f: f.has_location,
    "has_contact_or_budget": lambda f: f.has_contact or f.has_budget,
    "scored_warm": lambda f: f.score >= f.warm_threshold,
    "scored_hot": lambda f: f.temperature == "hot",
    "financing_ready": lambda f: f.financing_ready,
    "visit_accepted": lambda f: f.visit_accepted,
    "opted_out": lambda f: f.opted_out,
}


@dataclass(frozen=True)
class Transition:
    from_stage: str | None
    to_stage: str
    reason: str


def stage_moment(evidence_at: datetime, entered_at: datetime | None,
                 last_sequence: int | None) -> tuple[datetime, int]:
    """When a move out of the current stage happened, and the sequence number of its first event.

    A move happens at the time of the evidence that caused it (the lead's newest message, or the
    moment a person or campaign acted), so a funnel over replayed or back-filled messages counts
    each stage when the lead reached it, not when Leadflow got round to it. It never happens before
    the lead entered its current stage: evidence older than that (a late message, a rescoring)
    moves the lead at that same instant, numbered after the events already there, so the stage
    visits keep their order.
    """
    if entered_at is None or evidence_at > entered_at:
        return evidence_at, 0
    return entered_at, (-1 if last_sequence is None else last_sequence) + 1


def advance(current: str | None, facts: StageFacts, pipeline: Pipeline = DEFAULT_PIPELINE) -> list[Transition]:
    """The transitions that the facts allow from ``current`` (None: a new lead), never backwards."""
    if current == LOST:
        return []
    if any(CONDITIONS[c](facts) for c in pipeline.lost_when):
        return [Transition(current, LOST, "auto: " + " and ".join(c for c in pipeline.lost_when
                                                                   if CONDITIONS[c](facts)))]
    transitions: list[Transition] = []
    if current is None:
        first = pipeline.stages[0]
        transitions.append(Transition(None, first.code, "auto: new lead"))
        current = first.code
    position = pipeline.position(current)
    for stage in pipeline.stages[position + 1:]:
        if not stage.requires or not all(CONDITIONS[c](facts) for c in stage.requires):
            break  # stages are entered in order; a manual or unmet stage stops the advance
        transitions.append(Transition(current, stage.code, "auto: " + " and ".join(stage.requires)))
        current = stage.code
    return transitions


_VISIT_PROPOSED = re.compile(r"visita|visitar|agendar|agendamos|conocer (?:el|la) (?:depto|casa|propiedad)|\bvisit\b"
                             r"|\bshowing\b|\bviewing\b|\btour\b", re.IGNORECASE)
_VISIT_ACCEPTED = re.compile(r"\b(?:si|sí|dale|perfecto|ok|de acuerdo|confirmo|me acomoda|me sirve|nos vemos|listo)\b"
                             r"|\b(?:yes|sure|works for me|see you|confirmed|sounds good)\b", re.IGNORECASE)
_DECLINED = re.compile(r"\b(?:no puedo|no me acomoda|no gracias|otro dia|otro día|can't|cannot|not available)\b",
                       re.IGNORECASE)


def accepts_visit(text: str) -> bool:
    """A lead's answer to a visit proposal that says yes (and not "no puedo")."""
    return bool(_VISIT_ACCEPTED.search(text)) and not _DECLINED.search(text)


def visit_accepted(turns: Sequence[dict[str, Any]]) -> bool:
    """The lead said yes right after the agent proposed a visit (until a calendar integration says so)."""
    proposed = False
    for turn in turns:
        text = turn.get("text") or ""
        if turn.get("role") == "agent":
            proposed = bool(_VISIT_PROPOSED.search(text))
        elif proposed:
            if accepts_visit(text):
                return True
            proposed = False
    return False
