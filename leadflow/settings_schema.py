"""A broker's settings, section by section: what each may hold, checked before anything is saved.

Sections are the JSON columns of ``leadflow.broker_settings``: ``scoring`` (``ScoringConfig``), ``pipeline``
(``leads.stages.Pipeline``), ``llm`` (the qualifier's provider, model and prompt additions), ``campaigns``
(``campaigns.eligibility.ContactRules`` and the broker's own opt-out words), ``agent`` (``AgentConfig``) and
``appointments`` (``appointments.rules.ScheduleRules``: the visiting rules).
The models those readers build stay the one source of each rule; this module adds what only shows
across fields (thresholds that cross, steps out of order, a pipeline that would send leads back).

``validate`` answers the value to store: only what differs from the code's defaults, so a default improved
later still reaches every broker that never changed it. ``effective`` answers what the readers will use,
defaults filled (what a form shows). A refusal is a ``SettingsError`` listing every bad field at once.
Pure: no database, no web framework.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import TypeAdapter, ValidationError

from leadflow.agent.config import COUNTRY_LANGUAGE, DEFAULT_LANGUAGE, AgentConfig
from leadflow.appointments.rules import ScheduleRules, hours_json
from leadflow.campaigns.eligibility import ContactRules
from leadflow.leads.stages import CONDITIONS, DEFAULT_PIPELINE, LOST, Pipeline
from leadflow.qualification.llm import PROVIDERS
from leadflow.qualification.schema import Commitment, Financing, Hesitation
from leadflow.qualification.scoring import ScoringConfig

Section = Literal["scoring", "pipeline", "llm", "campaigns", "agent", "appointments"]
SECTIONS: tuple[Section, ...] = get_args(Section)

MAX_POINTS = 100  # a score is clipped to 0–100: a weight beyond that says nothing more
MAX_STAGES = 30
MAX_PROMPT_ADDITIONS = 2000
MAX_OPT_OUT_WORDS = 50
STAGE_CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,99}$")
# Letters or digits at both ends: the words are matched whole (``\b``), which needs a word character there.
OPT_OUT_WORD = re.compile(r"^[^\W_](?:[\w '’-]{0,58}[^\W_])?$")


@dataclass(frozen=True)
class Problem:
    field: str  # the path in the section's JSON: "hot", "stages[2].code", "facts.commission"
    message: str


class SettingsError(ValueError):
    """The value cannot be saved; ``problems`` names every bad field and why."""

    def __init__(self, section: str, problems: list[Problem]) -> None:
        super().__init__(f"{section}: " + "; ".join(f"{p.field}: {p.message}" for p in problems))
        self.section = section
        self.problems = problems


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "settings"


def _pydantic_problems(exc: ValidationError, prefix: tuple[int | str, ...] = ()) -> list[Problem]:
    return [Problem(_path((*prefix, *error["loc"])), str(error["msg"])) for error in exc.errors()]


def _object(section: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SettingsError(section, [Problem("settings", "must be a JSON object")])
    return value


def _unknown(value: Mapping[str, Any], known: set[str]) -> list[Problem]:
    return [Problem(str(key), f"unknown field; known: {', '.join(sorted(known))}") for key in value
            if key not in known]


def _without_defaults(value: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    return {key: item for key, item in value.items() if defaults.get(key, object()) != item}


def _plain(value: Any) -> Any:
    """Tuples as lists, as JSON round-trips them: stored and default values compare equal."""
    result: Any = json.loads(json.dumps(value))
    return result


# --- scoring ----------------------------------------------------------------------------------------------

_SCORING = TypeAdapter(ScoringConfig)
_SCORING_DEFAULTS: dict[str, Any] = _plain(dataclasses.asdict(ScoringConfig()))
_POINT_KEYS: dict[str, tuple[str, ...]] = {
    "financing": get_args(Financing), "commitment": get_args(Commitment), "hesitation": get_args(Hesitation)}
# Steps are (limit, points) read in order, the first that matches wins: the order that makes each reachable.
_STEPS = {"timeline": ("<=", "months"), "engagement": (">=", "messages"), "income_brackets": (">=", "income")}


def validate_scoring(value: Any) -> dict[str, Any]:
    data = _object("scoring", value)
    problems = _unknown(data, set(ScoringConfig.__dataclass_fields__))
    try:
        config = _SCORING.validate_json(json.dumps({k: v for k, v in data.items()
                                                    if k in ScoringConfig.__dataclass_fields__}), strict=True)
    except ValidationError as exc:
        raise SettingsError("scoring", problems + _pydantic_problems(exc)) from exc
    problems += _scoring_rules(config)
    if problems:
        raise SettingsError("scoring", problems)
    return _without_defaults(_plain(dataclasses.asdict(config)), _SCORING_DEFAULTS)


def _scoring_rules(c: ScoringConfig) -> list[Problem]:
    problems: list[Problem] = []
    if not 0 < c.warm < MAX_POINTS:
        problems.append(Problem("warm", f"must be between 1 and {MAX_POINTS - 1}"))
    if not 0 < c.hot <= MAX_POINTS:
        problems.append(Problem("hot", f"must be between 1 and {MAX_POINTS} (scores never pass {MAX_POINTS})"))
    if c.hot <= c.warm:
        problems.append(Problem("hot", f"the hot threshold ({c.hot}) must be above the warm one ({c.warm}): "
                                       "otherwise no lead is ever warm"))
    for name, item in dataclasses.asdict(c).items():
        if name in ("hot", "warm"):
            continue
        if isinstance(item, int) and not -MAX_POINTS <= item <= MAX_POINTS:
            problems.append(Problem(name, f"must be between -{MAX_POINTS} and {MAX_POINTS} points"))
    for name in ("rent_income_ratio", "fast_reply_minutes", "inactive_days"):
        if getattr(c, name) <= 0:
            problems.append(Problem(name, "must be above 0"))
    if c.max_arrears < 0:
        problems.append(Problem("max_arrears", "must be 0 or more"))
    for name, keys in _POINT_KEYS.items():
        points: dict[str, int] = getattr(c, name)
        for key, item in points.items():
            if key not in keys:
                problems.append(Problem(f"{name}.{key}", f"unknown; known: {', '.join(keys)}"))
            elif not -MAX_POINTS <= item <= MAX_POINTS:
                problems.append(Problem(f"{name}.{key}", f"must be between -{MAX_POINTS} and {MAX_POINTS} points"))
    for name, (compare, unit) in _STEPS.items():
        steps: tuple[tuple[float, int], ...] = getattr(c, name)
        for i, (limit, item) in enumerate(steps):
            if limit < 0:
                problems.append(Problem(f"{name}[{i}][0]", f"{unit} cannot be negative"))
            if not -MAX_POINTS <= item <= MAX_POINTS:
                problems.append(Problem(f"{name}[{i}][1]", f"must be between -{MAX_POINTS} and {MAX_POINTS} points"))
        limits = [limit for limit, _ in steps]
        ordered = sorted(limits) if compare == "<=" else sorted(limits, reverse=True)
        if limits != ordered or len(set(limits)) != len(limits):
            order = "shortest first" if compare == "<=" else "largest first"
            problems.append(Problem(name, f"steps are read in order and the first that matches wins: list each "
                                          f"{unit} once, {order}"))
    return problems


def effective_scoring(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    result: dict[str, Any] = _plain(dataclasses.asdict(ScoringConfig.from_settings(stored)))
    return result


# --- pipeline ---------------------------------------------------------------------------------------------

_STAGE_KEYS = {"code", "name", "requires", "stall_days"}


def _pipeline_json(pipeline: Pipeline) -> dict[str, Any]:
    return {"stages": [{"code": s.code, "name": s.name, "requires": list(s.requires), "stall_days": s.stall_days}
                       for s in pipeline.stages], "lost_when": list(pipeline.lost_when)}


_PIPELINE_DEFAULTS = _pipeline_json(DEFAULT_PIPELINE)


def validate_pipeline(value: Any, current: Mapping[str, Any] | None = None,
                      occupied: Mapping[str, int] | None = None) -> dict[str, Any]:
    """A pipeline to store; ``current`` (the stored one) and ``occupied`` (leads per stage now) refuse one that
    would send leads back."""
    data = _object("pipeline", value)
    problems = _unknown(data, {"stages", "lost_when"})
    # Left out, as in a stored {}: the default pipeline's stages.
    stages = data.get("stages", _PIPELINE_DEFAULTS["stages"])
    if not isinstance(stages, list) or not stages:
        problems.append(Problem("stages", "list at least one stage"))
        stages = []
    elif len(stages) > MAX_STAGES:
        problems.append(Problem("stages", f"at most {MAX_STAGES} stages"))
    seen: set[str] = set()
    for i, stage in enumerate(stages):
        where = f"stages[{i}]"
        if not isinstance(stage, dict):
            problems.append(Problem(where, 'must be an object {"code", "name", "requires", "stall_days"}'))
            continue
        problems += [Problem(f"{where}.{p.field}", p.message) for p in _unknown(stage, _STAGE_KEYS)]
        code = stage.get("code")
        if not isinstance(code, str) or not STAGE_CODE.match(code):
            problems.append(Problem(f"{where}.code", "1-40 lowercase letters, digits and _, starting with a letter"))
        elif code == LOST:
            problems.append(Problem(f"{where}.code", f"'{LOST}' is always there, after the last stage: leave it out"))
        elif code in seen:
            problems.append(Problem(f"{where}.code", f"'{code}' is already a stage"))
        else:
            seen.add(code)
        name = stage.get("name", code)
        if not isinstance(name, str) or not 0 < len(name.strip()) <= 60:
            problems.append(Problem(f"{where}.name", "1-60 characters"))
        requires = stage.get("requires", [])
        if not isinstance(requires, list) or not all(isinstance(c, str) for c in requires):
            problems.append(Problem(f"{where}.requires", "a list of condition names"))
        else:
            known = ", ".join(sorted(CONDITIONS))
            problems += [Problem(f"{where}.requires", f"unknown condition '{c}'; known: {known}")
                         for c in requires if c not in CONDITIONS]
        stall = stage.get("stall_days")
        if stall is not None and (isinstance(stall, bool) or not isinstance(stall, int) or not 0 < stall <= 365):
            problems.append(Problem(f"{where}.stall_days", "empty (never stalled) or whole days between 1 and 365"))
    lost_when = data.get("lost_when", ["opted_out"])
    if not isinstance(lost_when, list) or not all(isinstance(c, str) and c in CONDITIONS for c in lost_when):
        problems.append(Problem("lost_when", f"a list of conditions among {', '.join(sorted(CONDITIONS))}"))
    if problems:
        raise SettingsError("pipeline", problems)
    new = Pipeline.from_settings({"stages": [{**s, "name": s.get("name", s["code"]).strip()} for s in stages],
                                  "lost_when": lost_when})
    problems = stage_regressions(Pipeline.from_settings(dict(current or {})), new, occupied or {})
    if problems:
        raise SettingsError("pipeline", problems)
    stored = _pipeline_json(new)
    return {} if stored == _PIPELINE_DEFAULTS else stored


def stage_regressions(old: Pipeline, new: Pipeline, occupied: Mapping[str, int]) -> list[Problem]:
    """What in ``new`` would move leads back: a stage that has leads removed, or a stage they passed put after it.

    Stages only go forward: a lead in "potencial" went through "perfilamiento"; put "perfilamiento" after
    "potencial" and the next run would move the lead to a stage it had already left.
    """
    problems: list[Problem] = []
    codes = [s.code for s in new.stages]
    for position, stage in enumerate(old.stages):
        leads = occupied.get(stage.code, 0)
        if not leads:
            continue
        if stage.code not in codes:
            problems.append(Problem("stages", f"stage '{stage.code}' has {leads} lead(s): it cannot be removed "
                                              "(move them on first)"))
            continue
        for before in old.stages[:position]:
            if before.code in codes and codes.index(before.code) > codes.index(stage.code):
                problems.append(Problem(
                    f"stages[{codes.index(before.code)}].code",
                    f"stage '{before.code}' cannot go after '{stage.code}': its {leads} lead(s) would go back to it"))
    return problems


def effective_pipeline(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    return _pipeline_json(Pipeline.from_settings(dict(stored or {})))


# --- llm (the qualifier) ----------------------------------------------------------------------------------

_LLM_DEFAULTS: dict[str, Any] = {"provider": "rules", "model": None, "prompt_additions": ""}


def validate_llm(value: Any) -> dict[str, Any]:
    data = _object("llm", value)
    problems = _unknown(data, set(_LLM_DEFAULTS))
    merged = {**_LLM_DEFAULTS, **data}
    provider, model, additions = merged["provider"], merged["model"], merged["prompt_additions"]
    if provider not in ("rules", *PROVIDERS):
        problems.append(Problem("provider", f"one of rules, {', '.join(PROVIDERS)}"))
    if model == "":
        model = None
    if model is not None:
        if not isinstance(model, str) or not MODEL_NAME.match(model):
            problems.append(Problem("model", "a model name of the provider (letters, digits, . _ : / @ -), at most "
                                             "100 characters; empty: the provider's default"))
        elif provider == "rules":
            problems.append(Problem("model", "only with a provider: the rules have no model"))
    if not isinstance(additions, str) or len(additions) > MAX_PROMPT_ADDITIONS:
        problems.append(Problem("prompt_additions", f"text of at most {MAX_PROMPT_ADDITIONS} characters"))
    if problems:
        raise SettingsError("llm", problems)
    return _without_defaults({"provider": provider, "model": model, "prompt_additions": additions.strip()},
                             _LLM_DEFAULTS)


def effective_llm(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    return {**_LLM_DEFAULTS, **{k: v for k, v in (stored or {}).items() if k in _LLM_DEFAULTS}}


# --- campaigns (contact rules) ----------------------------------------------------------------------------

_CAMPAIGN_DEFAULTS: dict[str, Any] = {**dataclasses.asdict(ContactRules()), "opt_out_words": []}


def validate_campaigns(value: Any) -> dict[str, Any]:
    data = _object("campaigns", value)
    problems = _unknown(data, set(_CAMPAIGN_DEFAULTS))
    merged = {**_CAMPAIGN_DEFAULTS, **data}
    for name in ("quiet_start", "quiet_end"):
        hour = merged[name]
        if isinstance(hour, bool) or not isinstance(hour, int) or not 0 <= hour <= 23:
            problems.append(Problem(name, "a local hour, 0 to 23"))
    cap = merged["cap_messages"]
    if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= 50:
        problems.append(Problem("cap_messages", "whole messages, 1 to 50"))
    days = merged["cap_days"]
    if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= 90:
        problems.append(Problem("cap_days", "days above 0, at most 90"))
    words = merged["opt_out_words"]
    cleaned: list[str] = []
    if not isinstance(words, list) or len(words) > MAX_OPT_OUT_WORDS:
        problems.append(Problem("opt_out_words", f"a list of at most {MAX_OPT_OUT_WORDS} words or phrases"))
    else:
        for i, word in enumerate(words):
            text = " ".join(word.split()).lower() if isinstance(word, str) else None
            if text is None or not OPT_OUT_WORD.match(text):
                problems.append(Problem(f"opt_out_words[{i}]", "2-60 characters: letters, digits, spaces, ' and -, "
                                                               "starting and ending with a letter or digit"))
            elif text not in cleaned:
                cleaned.append(text)
    if problems:
        raise SettingsError("campaigns", problems)
    normalized = {**merged, "cap_days": float(days), "opt_out_words": cleaned}
    return _without_defaults(normalized, _CAMPAIGN_DEFAULTS)


def effective_campaigns(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    return {**_CAMPAIGN_DEFAULTS, **{k: v for k, v in (stored or {}).items() if k in _CAMPAIGN_DEFAULTS}}


# --- agent ------------------------------------------------------------------------------------------------

def _country_language(country: str | None) -> str:
    return COUNTRY_LANGUAGE.get((country or "").upper(), DEFAULT_LANGUAGE)


def validate_agent(value: Any, country: str | None = None) -> dict[str, Any]:
    data = dict(_object("agent", value))
    data.setdefault("language", _country_language(country))
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise SettingsError("agent", _pydantic_problems(exc)) from exc
    stored: dict[str, Any] = config.model_dump(mode="json", exclude_defaults=True)
    # The language's default is the country's, not the model's: keep it only when it differs from that.
    stored.pop("language", None)
    if config.language != _country_language(country):
        stored["language"] = config.language
    return stored


def effective_agent(stored: Mapping[str, Any] | None, country: str | None = None) -> dict[str, Any]:
    data = {k: v for k, v in (stored or {}).items() if k in AgentConfig.model_fields}
    data.setdefault("language", _country_language(country))
    try:
        result: dict[str, Any] = AgentConfig.model_validate(data).model_dump(mode="json")
    except ValidationError:  # stored before it was validated: show the defaults rather than fail the page
        result = AgentConfig.model_validate({"language": data["language"]}).model_dump(mode="json")
    return result


# --- appointments (visiting rules) -----------------------------------------------------------------------

def _rules_json(rules: ScheduleRules) -> dict[str, Any]:
    # Hours as people write them ("09:00"), days in week order.
    return {**rules.model_dump(mode="json"), "hours": hours_json(rules.hours)}


_APPOINTMENTS_DEFAULTS: dict[str, Any] = _rules_json(ScheduleRules())


def validate_appointments(value: Any) -> dict[str, Any]:
    data = _object("appointments", value)
    try:
        rules = ScheduleRules.model_validate(data)
    except ValidationError as exc:
        raise SettingsError("appointments", _appointment_problems(exc)) from exc
    stored: dict[str, Any] = _without_defaults(_rules_json(rules), _APPOINTMENTS_DEFAULTS)
    return stored


def _appointment_problems(exc: ValidationError) -> list[Problem]:
    # A rule across fields (no window fits a visit) has no location of its own: it is about the hours.
    return [Problem(_path(tuple(e["loc"])) if e["loc"] else "hours",
                    str(e["msg"]).removeprefix("Value error, ")) for e in exc.errors()]


def effective_appointments(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        result: dict[str, Any] = _rules_json(ScheduleRules.model_validate(dict(stored or {})))
    except ValidationError:  # stored before it was validated: show the defaults rather than fail the page
        result = dict(_APPOINTMENTS_DEFAULTS)
    return result


# --- every section ----------------------------------------------------------------------------------------

def validate(section: str, value: Any, *, country: str | None = None, current: Mapping[str, Any] | None = None,
             occupied: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The value of ``section`` to store, or ``SettingsError``. ``current`` and ``occupied`` (leads per stage)
    are the pipeline's; ``country`` the agent's (its default language)."""
    validators: dict[str, Callable[[Any], dict[str, Any]]] = {
        "scoring": validate_scoring, "llm": validate_llm, "campaigns": validate_campaigns,
        "pipeline": lambda v: validate_pipeline(v, current, occupied),
        "agent": lambda v: validate_agent(v, country), "appointments": validate_appointments}
    if section not in validators:
        raise SettingsError(section, [Problem("section", f"unknown; known: {', '.join(SECTIONS)}")])
    unstorable = _unstorable(value)
    if not unstorable:
        return validators[section](value)
    try:
        validators[section](_storable(value))
    except SettingsError as exc:  # the other fields' problems too, in one answer
        unstorable += [p for p in exc.problems if p.field not in {u.field for u in unstorable}]
    raise SettingsError(section, unstorable)


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return "".join(ch for ch in value if ch != "\x00" and not 0xD800 <= ord(ch) <= 0xDFFF)
    if isinstance(value, dict):
        return {_storable(str(key)): _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


def _unstorable(value: Any, path: str = "") -> list[Problem]:
    """Text PostgreSQL's jsonb refuses (NUL, a lone surrogate): named here rather than failing the save."""
    if isinstance(value, str):
        bad = "\x00" in value or any(0xD800 <= ord(ch) <= 0xDFFF for ch in value)
        return [Problem(path or "settings", "contains characters that cannot be stored")] if bad else []
    if isinstance(value, dict):
        return [p for key, item in value.items()
                for p in _unstorable(str(key), path or "settings") + _unstorable(item, f"{path}.{key}" if path
                                                                                   else str(key))]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _unstorable(item, f"{path}[{i}]")]
    return []


def effective(section: str, stored: Mapping[str, Any] | None, country: str | None = None) -> dict[str, Any]:
    """What the readers of ``section`` use for this stored value: the defaults filled in."""
    if section == "scoring":
        return effective_scoring(stored)
    if section == "pipeline":
        return effective_pipeline(stored)
    if section == "llm":
        return effective_llm(stored)
    if section == "campaigns":
        return effective_campaigns(stored)
    if section == "agent":
        return effective_agent(stored, country)
    if section == "appointments":
        return effective_appointments(stored)
    raise SettingsError(section, [Problem("section", f"unknown; known: {', '.join(SECTIONS)}")])


def diff(before: Any, after: Any, prefix: str = "") -> list[dict[str, Any]]:
    """Every leaf that changed, by path ("hot", "stages[1].stall_days"), with its value before and after."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[dict[str, Any]] = []
        for key in [*before, *(k for k in after if k not in before)]:
            out += diff(before.get(key), after.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after) and \
            all(isinstance(x, dict) for x in [*before, *after]):
        return [change for i, (b, a) in enumerate(zip(before, after, strict=True))
                for change in diff(b, a, f"{prefix}[{i}]")]
    if before == after:
        return []
    return [{"field": prefix or "settings", "before": before, "after": after}]
