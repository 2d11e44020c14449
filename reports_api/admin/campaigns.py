"""A broker's segments and campaigns as its admins edit them: the live count of a segment, a campaign's checks and
its preview for a real lead, its status, applying it to chosen leads, and the per-lead log.

These run as the database owner (``manual_enrollments`` is out of the reports role's reach, and the segment
count reads every profile of the broker as the batch does), so every function checks the caller first
(``require_campaigner``) and writes its ``audit_log`` row in the same transaction. A definition or a rule is
checked here with every problem named by its path (``steps[0].template``, ``all[2].value``), so a form can point
at the field, and nothing reaches the batch that would make it fail: the pydantic models, then what they do not
know (template variables, the broker's segments and stages, WhatsApp's template names, text PostgreSQL refuses).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import polars as pl
import psycopg2.extensions
from pydantic import ValidationError

from leadflow.campaigns import store
from leadflow.campaigns.definitions import CampaignDefinition
from leadflow.campaigns.segments import PROFILE_FIELDS, Condition, SegmentRules, members
from leadflow.campaigns.targeting import DEFAULT_CALL_TASK
from leadflow.campaigns.templates import VARIABLES, render_expr, template_columns, unknown_variables
from leadflow.campaigns.visits import describe_slot, proposed_slot
from leadflow.leads.stages import LOST, Pipeline
from reports_api.admin import audit
from reports_api.admin.access import Conflict, Forbidden, Invalid, NotFound
from reports_api.security import Principal

ADMINS_ONLY = "only the broker's admins edit its segments and campaigns and apply them to leads"
MAX_NAME = 200
MAX_TEXT = 4096  # WhatsApp's limit on a text message's body
MAX_STEPS = 20
MAX_LEADS = 1000  # leads in one apply
SAMPLE = 10
LOG_STATUSES = ("pending", "sent", "delivered", "read", "replied", "failed", "skipped")
_WA_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_WA_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class FieldsInvalid(Invalid):
    """Several problems of one input, each by its path; the message joins them."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems.items()),
                         next(iter(problems)))
        self.problems = problems


def require_campaigner(who: Principal, broker_id: int) -> None:
    """An ADMIN of the broker or a SUPERADMIN. An AGENT is refused even for its own leads: a campaign speaks
    for the broker to every lead it enrolls, and these writes run outside row security."""
    if who.role == "SUPERADMIN" or (who.role == "ADMIN" and who.broker_id == broker_id):
        return
    raise Forbidden(ADMINS_ONLY)


def broker(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int) -> dict[str, Any]:
    require_campaigner(who, broker_id)
    cur.execute("SELECT broker_id, slug, name, timezone FROM leadflow.brokers WHERE broker_id = %s", (broker_id,))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"there is no broker {broker_id}")
    return dict(zip(("broker_id", "slug", "name", "timezone"), row, strict=True))


# --- checks --------------------------------------------------------------------------------------------

def _path(prefix: str, loc: tuple[Any, ...]) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _problems(exc: ValidationError, prefix: str = "") -> dict[str, str]:
    """One message per field. A model's own check (loc at the model) names its field in quotes: 'template'."""
    found: dict[str, str] = {}
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        loc = tuple(error["loc"])
        named = re.search(r"needs (?:a |an )?'(\w+)'", message)
        if named and (not loc or isinstance(loc[-1], int) or loc[-1] == "trigger"):
            loc = (*loc, named.group(1))
        found.setdefault(_path(prefix, loc), message)
    return found


def _text_problem(value: str, limit: int = MAX_TEXT) -> str | None:
    try:
        value.encode()
    except UnicodeEncodeError:
        return "not valid text"
    if _CONTROL.search(value):
        return "holds control characters"
    if len(value) > limit:
        return f"longer than {limit} characters"
    return None


def _texts(value: Any, path: str, problems: dict[str, str]) -> None:
    """Every string of ``value`` is text PostgreSQL stores (no NUL, no lone surrogate) and not too long."""
    if isinstance(value, str):
        problem = _text_problem(value)
        if problem:
            problems.setdefault(path, problem)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _texts(item, f"{path}[{i}]", problems)
    elif isinstance(value, dict):
        for key, item in value.items():
            _texts(item, f"{path}.{key}" if path else str(key), problems)


def _condition_field(message: str) -> str:
    if message.startswith("unknown field"):
        return "field"
    return "op" if "use one of" in message else "value"


def _rules_problems(rules: Any, at: str) -> dict[str, str]:
    if not isinstance(rules, dict):
        return {at or "rules": "a segment is an object with 'all' and/or 'any' lists of conditions"}
    problems: dict[str, str] = {}
    for key in set(rules) - {"all", "any"}:
        problems[f"{at}.{key}" if at else str(key)] = "a segment has only 'all' and 'any'"
    for group in ("all", "any"):
        items = rules.get(group, [])
        path = f"{at}.{group}" if at else group
        if not isinstance(items, list):
            problems[path] = "a list of conditions"
            continue
        for i, item in enumerate(items):
            here = f"{path}[{i}]"
            if isinstance(item, dict) and "field" not in item and ("all" in item or "any" in item):
                problems.update(_rules_problems(item, here))
                continue
            try:
                Condition.model_validate(item)
            except ValidationError as exc:
                for error in exc.errors():
                    message = str(error["msg"]).removeprefix("Value error, ")
                    loc = tuple(error["loc"]) or (_condition_field(message),)
                    problems.setdefault(_path(here, loc), message)
    return problems


def check_rules(rules: Any) -> SegmentRules:
    """The rules parsed, or ``FieldsInvalid`` naming each bad condition's field, operator or value."""
    problems = _rules_problems(rules, "")
    _texts(rules, "", problems)
    if not problems:
        try:
            return SegmentRules.model_validate(rules)
        except ValidationError as exc:
            problems = {"all": "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())}
    raise FieldsInvalid(problems)


def check_name(value: Any, field: str = "name") -> str:
    name = value.strip() if isinstance(value, str) else ""
    problem = _text_problem(name, MAX_NAME) if name else f"write a name of 1 to {MAX_NAME} characters"
    if problem or "\n" in name:
        raise FieldsInvalid({field: problem or "on one line"})
    return name


def stage_codes(cur: psycopg2.extensions.cursor, broker_id: int) -> list[str]:
    cur.execute("SELECT pipeline FROM leadflow.broker_settings WHERE broker_id = %s", (broker_id,))
    row = cur.fetchone()
    pipeline = Pipeline.from_settings(row[0] if row else None)
    return [s.code for s in (*pipeline.stages, pipeline.stage(LOST))]


def _segment_names(cur: psycopg2.extensions.cursor, broker_id: int) -> list[str]:
    cur.execute("SELECT name FROM leadflow.segments WHERE broker_id = %s ORDER BY name", (broker_id,))
    return [str(r[0]) for r in cur.fetchall()]


def _against_broker(cur: psycopg2.extensions.cursor, broker_id: int, definition: dict[str, Any]) -> dict[str, str]:
    """What the models do not know, read from the definition as given (so it is said together with their own
    problems): template variables, WhatsApp's template names, the broker's segments and stages."""
    problems: dict[str, str] = {}
    stages = stage_codes(cur, broker_id)
    trigger = definition.get("trigger")
    if isinstance(trigger, dict):
        segment = trigger.get("segment")
        if isinstance(segment, str) and segment not in (segments := _segment_names(cur, broker_id)):
            problems["trigger.segment"] = f"no segment {segment!r} for this broker" + (
                f" (there are {', '.join(segments)})" if segments else " (create one first)")
        stage = trigger.get("stage")
        if trigger.get("type") == "stage_change" and isinstance(stage, str) and stage not in stages:
            problems["trigger.stage"] = f"{stage!r} is not a stage of this broker: use {', '.join(stages)}"
    steps = definition.get("steps")
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        if not isinstance(step, dict):
            continue
        at = f"steps[{i}]"
        template = step.get("template")
        unknown = unknown_variables(template) if isinstance(template, str) else []
        if unknown:
            problems[f"{at}.template"] = f"unknown variables {', '.join(unknown)}: use {', '.join(VARIABLES)}"
        stage = step.get("stage")
        if step.get("action") == "move_stage" and isinstance(stage, str) and stage not in stages:
            problems[f"{at}.stage"] = f"{stage!r} is not a stage of this broker: use {', '.join(stages)}"
        wa = step.get("whatsapp_template")
        if isinstance(wa, dict):
            if isinstance(wa.get("name"), str) and not _WA_NAME.match(wa["name"]):
                problems[f"{at}.whatsapp_template.name"] = ("an approved template's name: lowercase letters, digits "
                                                            "and underscores")
            if isinstance(wa.get("language"), str) and not _WA_LANGUAGE.match(wa["language"]):
                problems[f"{at}.whatsapp_template.language"] = "a language code such as es or es_MX"
            parameters = wa.get("parameters")
            unknown = [v for p in (parameters if isinstance(parameters, list) else []) if isinstance(p, str)
                       for v in unknown_variables(p)]
            if unknown:
                problems[f"{at}.whatsapp_template.parameters"] = (f"unknown variables {', '.join(unknown)}: use "
                                                                  f"{', '.join(VARIABLES)}")
        conditions = step.get("conditions")
        required = conditions.get("required_fields") if isinstance(conditions, dict) else None
        missing = [f for f in (required if isinstance(required, list) else [])
                   if isinstance(f, str) and f not in PROFILE_FIELDS]
        if missing:
            problems[f"{at}.conditions.required_fields"] = (f"unknown fields {', '.join(missing)}: use "
                                                            f"{', '.join(sorted(PROFILE_FIELDS))}")
    return problems


def check_definition(cur: psycopg2.extensions.cursor, broker_id: int, definition: Any) -> CampaignDefinition:
    """The definition parsed and fit for this broker, or ``FieldsInvalid`` with one message per field."""
    problems: dict[str, str] = {}
    _texts(definition, "", problems)
    if isinstance(definition, dict):
        if isinstance(definition.get("steps"), list) and len(definition["steps"]) > MAX_STEPS:
            problems["steps"] = f"at most {MAX_STEPS} steps"
        problems.update(_against_broker(cur, broker_id, definition))
    try:
        parsed = CampaignDefinition.model_validate(definition)
    except ValidationError as exc:
        raise FieldsInvalid({**_problems(exc), **problems}) from exc
    if problems:
        raise FieldsInvalid(problems)
    return parsed


# --- segments ------------------------------------------------------------------------------------------

def _profiles(cur: psycopg2.extensions.cursor, broker_id: int) -> pl.DataFrame:
    return store.load_profiles(cur, [broker_id], datetime.now(UTC))


def _members(profiles: pl.DataFrame, broker_id: int, rules: dict[str, Any]) -> pl.DataFrame:
    """The broker's leads in the segment now, newest first: the batch's own ``members``."""
    if profiles.is_empty():
        return pl.DataFrame(schema={"lead_id": pl.Int64, "name": pl.String})
    found = members(profiles, pl.DataFrame({"segment_id": [0], "broker_id": [broker_id],
                                            "rules": [json.dumps(rules)]}))
    return (profiles.join(found.select("lead_id"), on="lead_id", how="semi").sort("lead_id", descending=True))


def _sample(frame: pl.DataFrame) -> list[dict[str, Any]]:
    columns = ["lead_id", "name", "phone_e164", "score", "temperature", "stage"]
    return [dict(r) for r in frame.head(SAMPLE).select(c for c in columns if c in frame.columns)
            .iter_rows(named=True)]


def count(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, rules: Any) -> dict[str, Any]:
    """How many of the broker's live leads the rules take now, and the newest of them."""
    broker(cur, who, broker_id)
    parsed = check_rules(rules)
    found = _members(_profiles(cur, broker_id), broker_id, parsed.model_dump(exclude_defaults=True))
    return {"count": found.height, "sample": _sample(found)}


def member_ids(cur: psycopg2.extensions.cursor, broker_id: int, rules: dict[str, Any]) -> list[int]:
    return [int(x) for x in _members(_profiles(cur, broker_id), broker_id, rules)["lead_id"]]


_SEGMENT = "segment_id, broker_id, name, rules, created_at"


def _segment_row(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(("segment_id", "broker_id", "name", "rules", "created_at"), row, strict=True))


def list_segments(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int) -> list[dict[str, Any]]:
    """The broker's segments, each with its members now (one read of the profiles for all)."""
    broker(cur, who, broker_id)
    cur.execute(f"SELECT {_SEGMENT} FROM leadflow.segments WHERE broker_id = %s ORDER BY name", (broker_id,))
    found = [_segment_row(r) for r in cur.fetchall()]
    if not found:
        return []
    profiles = _profiles(cur, broker_id)
    counts: dict[int, int] = {}
    if not profiles.is_empty():
        frame = pl.DataFrame({"segment_id": [s["segment_id"] for s in found], "broker_id": [broker_id] * len(found),
                              "rules": [json.dumps(s["rules"]) for s in found]})
        counts = dict(members(profiles, frame).group_by("segment_id").len().iter_rows())
    return [{**s, "members": int(counts.get(s["segment_id"], 0))} for s in found]


def segment(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, segment_id: int) -> dict[str, Any]:
    broker(cur, who, broker_id)
    cur.execute(f"SELECT {_SEGMENT} FROM leadflow.segments WHERE segment_id = %s AND broker_id = %s",
                (segment_id, broker_id))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"the broker has no segment {segment_id}")
    found = _segment_row(row)
    matching = _members(_profiles(cur, broker_id), broker_id, found["rules"])
    return {**found, "members": matching.height, "sample": _sample(matching)}


def _campaigns_using(cur: psycopg2.extensions.cursor, broker_id: int, name: str) -> list[str]:
    cur.execute("""SELECT name FROM leadflow.campaigns WHERE broker_id = %s AND status <> 'completed'
                   AND definition -> 'trigger' ->> 'segment' = %s ORDER BY name""", (broker_id, name))
    return [str(r[0]) for r in cur.fetchall()]


def save_segment(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, segment_id: int | None,
                 name: Any, rules: Any) -> dict[str, Any]:
    """Create (``segment_id`` None) or change a segment (audited). A name is the broker's once; a segment a
    campaign names keeps its name (the campaign finds it by name)."""
    broker(cur, who, broker_id)
    problems: dict[str, str] = {}
    clean = ""
    try:
        clean = check_name(name)
    except FieldsInvalid as exc:
        problems.update(exc.problems)
    try:
        parsed = check_rules(rules)
    except FieldsInvalid as exc:
        problems.update({f"rules.{k}" if k != "rules" else k: v for k, v in exc.problems.items()})
    if problems:
        raise FieldsInvalid(problems)
    stored = json.dumps(parsed.model_dump(exclude_defaults=True))
    before = None
    if segment_id is not None:
        cur.execute(f"SELECT {_SEGMENT} FROM leadflow.segments WHERE segment_id = %s AND broker_id = %s FOR UPDATE",
                    (segment_id, broker_id))
        row = cur.fetchone()
        if row is None:
            raise NotFound(f"the broker has no segment {segment_id}")
        before = _segment_row(row)
        using = _campaigns_using(cur, broker_id, before["name"]) if before["name"] != clean else []
        if using:
            raise Conflict(f"name: campaigns {', '.join(using)} use this segment by its name; keep it", "name")
    cur.execute("SELECT 1 FROM leadflow.segments WHERE broker_id = %s AND name = %s AND segment_id <> %s",
                (broker_id, clean, segment_id or 0))
    if cur.fetchone() is not None:
        raise Conflict(f"name: the broker already has a segment {clean!r}", "name")
    if segment_id is None:
        cur.execute(f"INSERT INTO leadflow.segments (broker_id, name, rules) VALUES (%s, %s, %s) RETURNING {_SEGMENT}",
                    (broker_id, clean, stored))
    else:
        cur.execute(f"UPDATE leadflow.segments SET name = %s, rules = %s WHERE segment_id = %s RETURNING {_SEGMENT}",
                    (clean, stored, segment_id))
    row = cur.fetchone()
    assert row is not None
    saved = _segment_row(row)
    shown = {k: saved[k] for k in ("segment_id", "name", "rules")}
    audit.record(cur, broker_id, who.user_id, "segment.create" if before is None else "segment.update",
                 None if before is None else {k: before[k] for k in ("segment_id", "name", "rules")}, shown)
    return saved


# --- campaigns -----------------------------------------------------------------------------------------

_CAMPAIGN = "campaign_id, broker_id, name, status, definition, activated_at, created_at"


def _campaign_row(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(("campaign_id", "broker_id", "name", "status", "definition", "activated_at", "created_at"), row,
                    strict=True))


def list_campaigns(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int) -> list[dict[str, Any]]:
    broker(cur, who, broker_id)
    cur.execute(f"SELECT {_CAMPAIGN} FROM leadflow.campaigns WHERE broker_id = %s ORDER BY campaign_id DESC",
                (broker_id,))
    return [_campaign_row(r) for r in cur.fetchall()]


def campaign(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, campaign_id: int,
             lock: bool = False) -> dict[str, Any]:
    broker(cur, who, broker_id)
    cur.execute(f"SELECT {_CAMPAIGN} FROM leadflow.campaigns WHERE campaign_id = %s AND broker_id = %s"
                + (" FOR UPDATE" if lock else ""), (campaign_id, broker_id))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"the broker has no campaign {campaign_id}")
    return _campaign_row(row)


def _shown(found: dict[str, Any]) -> dict[str, Any]:
    return {k: found[k] for k in ("campaign_id", "name", "status", "definition")}


def save_campaign(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, campaign_id: int | None,
                  name: Any, definition: Any) -> dict[str, Any]:
    """Create a campaign as a draft (``campaign_id`` None) or change a draft's or a paused one's name and
    definition (audited). An active campaign is paused first: its leads are mid-way through the steps."""
    broker(cur, who, broker_id)
    problems: dict[str, str] = {}
    clean = ""
    try:
        clean = check_name(name)
    except FieldsInvalid as exc:
        problems.update(exc.problems)
    try:
        parsed = check_definition(cur, broker_id, definition)
    except FieldsInvalid as exc:
        problems.update(exc.problems)
    if problems:
        raise FieldsInvalid(problems)
    before = None
    if campaign_id is not None:
        before = campaign(cur, who, broker_id, campaign_id, lock=True)
        if before["status"] in ("active", "completed"):
            raise Conflict(f"status: a {before['status']} campaign is not edited"
                           + (" (pause it first)" if before["status"] == "active" else ""), "status")
    cur.execute("SELECT 1 FROM leadflow.campaigns WHERE broker_id = %s AND name = %s AND campaign_id <> %s",
                (broker_id, clean, campaign_id or 0))
    if cur.fetchone() is not None:
        raise Conflict(f"name: the broker already has a campaign {clean!r}", "name")
    if campaign_id is None:
        cur.execute(f"""INSERT INTO leadflow.campaigns (broker_id, name, status, definition)
                        VALUES (%s, %s, 'draft', %s) RETURNING {_CAMPAIGN}""",
                    (broker_id, clean, parsed.model_dump_json()))
    else:
        cur.execute(f"""UPDATE leadflow.campaigns SET name = %s, definition = %s WHERE campaign_id = %s
                        RETURNING {_CAMPAIGN}""", (clean, parsed.model_dump_json(), campaign_id))
    row = cur.fetchone()
    assert row is not None
    saved = _campaign_row(row)
    audit.record(cur, broker_id, who.user_id, "campaign.create" if before is None else "campaign.update",
                 None if before is None else _shown(before), _shown(saved))
    return saved


def change_status(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, campaign_id: int,
                  action: str) -> dict[str, Any]:
    """activate (a draft), pause, resume or complete (audited); see ``leadflow.campaigns.store.change_status``."""
    found = campaign(cur, who, broker_id, campaign_id, lock=True)
    if action == "activate":
        check_definition(cur, broker_id, found["definition"])  # its segment or stage may be gone since it was saved
    try:
        before, after = store.change_status(cur, campaign_id, action)
    except store.CampaignError as exc:
        raise Conflict(f"status: {exc}", "status") from exc
    audit.record(cur, broker_id, who.user_id, f"campaign.{action}", {"campaign_id": campaign_id, "status": before},
                 {"campaign_id": campaign_id, "status": after})
    return campaign(cur, who, broker_id, campaign_id)


def apply(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, campaign_id: int,
          lead_ids: list[int]) -> store.Applied:
    """Apply a manual campaign to leads (audited): the next campaign batch enrolls them or says why not."""
    found = campaign(cur, who, broker_id, campaign_id, lock=True)
    if found["definition"]["trigger"]["type"] != "manual":
        raise Conflict(f"campaign_id: {found['name']!r} enrolls leads by its trigger "
                       f"({found['definition']['trigger']['type']}); only a manual campaign is applied to leads",
                       "campaign_id")
    if found["status"] == "completed":
        raise Conflict(f"campaign_id: {found['name']!r} is completed", "campaign_id")
    if not lead_ids:
        raise Invalid("lead_ids: choose at least one lead", "lead_ids")
    if len(lead_ids) > MAX_LEADS:
        raise Invalid(f"lead_ids: at most {MAX_LEADS} leads at a time", "lead_ids")
    applied = store.request_enrollments(cur, broker_id, campaign_id, lead_ids, who.user_id)
    audit.record(cur, broker_id, who.user_id, "campaign.apply", None,
                 {"campaign_id": campaign_id, "requested": applied.requested, "already": applied.already,
                  "refused": {str(k): v for k, v in applied.refused.items()}})
    return applied


# --- preview -------------------------------------------------------------------------------------------

def preview(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, definition: Any,
            lead_id: int) -> dict[str, Any]:
    """Each step's text (and WhatsApp template parameters) rendered for one live lead of the broker, as the
    batch renders them (``templates.render_expr`` over the lead's profile row)."""
    found = broker(cur, who, broker_id)
    parsed = check_definition(cur, broker_id, definition)
    now = datetime.now(UTC)
    profile = store.load_profiles(cur, [broker_id], now)
    profile = profile.filter(pl.col("lead_id") == lead_id) if not profile.is_empty() else profile
    if profile.is_empty():
        raise Invalid(f"lead_id: no live lead {lead_id} of this broker", "lead_id")
    # The slots a visit step offers are chosen when the batch writes its send: the preview shows a sample one.
    sample = describe_slot(proposed_slot(now, found["timezone"]))
    row = profile.with_columns(visit_time=pl.lit(sample), visit_options=pl.lit(f"1) {sample}"))
    row = row.with_columns(**template_columns())
    steps = []
    for i, step in enumerate(parsed.steps):
        template = step.template or (DEFAULT_CALL_TASK if step.action == "call" else "")
        wa = step.whatsapp_template
        steps.append({
            "step": i, "action": step.action, "channel": step.provider if step.action == "call" else step.channel,
            "delay_hours": step.delay_hours, "text": row.select(render_expr(template)).item() if template else None,
            "whatsapp_template": None if wa is None else {
                "name": wa.name, "language": wa.language,
                "parameters": [row.select(render_expr(p)).item() for p in wa.parameters]}})
    lead = profile.row(0, named=True)
    return {"lead": {"lead_id": lead_id, "name": lead.get("name"), "phone_e164": lead.get("phone_e164"),
                     "opted_out": bool(lead.get("opted_out"))}, "steps": steps}


# --- the per-lead log ----------------------------------------------------------------------------------

# Every lead the campaign touched, one row per step: its sends (outbound_sends, with the receipts and replies
# closing the loop wrote on them), the step an enrollment waits on, and the leads applied by hand that the
# batch has not taken yet or refused.
_ENTRIES = """
    WITH entries AS (
        SELECT s.lead_id, s.step, s.action, s.channel,
               CASE WHEN s.status = 'sending' THEN 'pending' ELSE s.status END AS status,
               CASE WHEN s.status = 'sending' THEN 'being sent (not confirmed yet)'
                    WHEN s.status = 'pending' AND s.attempts > 0 THEN coalesce('retrying: ' || s.reason, 'retrying')
                    ELSE s.reason END AS reason,
               m.requested_at, s.created_at AS decided_at, s.sent_at, s.delivered_at, s.read_at, s.replied_at,
               s.updated_at
        FROM leadflow.outbound_sends s
        LEFT JOIN leadflow.manual_enrollments m USING (campaign_id, lead_id)
        WHERE s.campaign_id = %(campaign)s
      UNION ALL
        SELECT e.lead_id, e.next_step, NULL, NULL, 'pending',
               'step ' || (e.next_step + 1) || ' due ' || to_char(e.next_due_at AT TIME ZONE 'UTC',
                                                                   'YYYY-MM-DD HH24:MI "UTC"'),
               m.requested_at, e.enrolled_at, NULL, NULL, NULL, NULL, e.enrolled_at
        FROM leadflow.campaign_enrollments e
        LEFT JOIN leadflow.manual_enrollments m USING (campaign_id, lead_id)
        WHERE e.campaign_id = %(campaign)s AND e.status = 'active' AND NOT EXISTS (
            SELECT 1 FROM leadflow.outbound_sends s WHERE s.campaign_id = e.campaign_id AND s.lead_id = e.lead_id
                                                      AND s.step = e.next_step)
      UNION ALL
        SELECT m.lead_id, 0, NULL, NULL,
               CASE WHEN m.status = 'requested' THEN 'pending' ELSE 'skipped' END,
               CASE WHEN m.status = 'requested' THEN 'applied: enrolled at the next campaign batch' ELSE m.reason END,
               m.requested_at, m.decided_at, NULL, NULL, NULL, NULL, coalesce(m.decided_at, m.requested_at)
        FROM leadflow.manual_enrollments m
        WHERE m.campaign_id = %(campaign)s AND m.status IN ('requested', 'refused')
    )
"""
_LOG = _ENTRIES + """
    SELECT e.*, coalesce(q.name, l.display_name) AS name, l.phone_e164, count(*) OVER () AS total
    FROM entries e JOIN leadflow.leads l USING (lead_id)
    LEFT JOIN leadflow.lead_qualifications q USING (lead_id)
    WHERE %(status)s::text IS NULL OR e.status = %(status)s
    ORDER BY e.updated_at DESC, e.lead_id DESC, e.step DESC
    LIMIT %(limit)s OFFSET %(offset)s
"""
_LOG_COLUMNS = ("lead_id", "step", "action", "channel", "status", "reason", "requested_at", "decided_at", "sent_at",
                "delivered_at", "read_at", "replied_at", "updated_at", "name", "phone_e164", "total")


def log(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, campaign_id: int, status: str | None,
        offset: int, limit: int) -> dict[str, Any]:
    """The campaign's per-lead log, most recent first, optionally one status; with the counts by status."""
    found = campaign(cur, who, broker_id, campaign_id)
    if status is not None and status not in LOG_STATUSES:
        raise Invalid(f"status: use one of {', '.join(LOG_STATUSES)}", "status")
    cur.execute(_LOG, {"campaign": campaign_id, "status": status, "limit": limit, "offset": offset})
    rows = [dict(zip(_LOG_COLUMNS, r, strict=True)) for r in cur.fetchall()]
    total = int(rows[0]["total"]) if rows else 0
    for r in rows:
        del r["total"]
        r["step"] = int(r["step"])
    cur.execute(_ENTRIES + "SELECT status, count(*) FROM entries GROUP BY status", {"campaign": campaign_id})
    counts = {s: 0 for s in LOG_STATUSES} | {str(s): int(n) for s, n in cur.fetchall()}
    return {"campaign": found, "entries": rows, "total": total, "counts": counts,
            "next_offset": offset + limit if offset + limit < total else None}

