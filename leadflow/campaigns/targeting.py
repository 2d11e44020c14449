"""Campaign targeting: who enters which campaign, and what each due step does now. Pure: frames in, frames out.

One batch, at time ``now``:

1. **Enroll**: each active campaign's trigger over its broker's lead profiles; a lead goes through a
   campaign once, and an opted-out lead is never enrolled. A ``manual`` campaign enrolls the leads a person
   applied it to (``requested``); ``manual_outcomes`` says what became of each of those requests.
2. **Decide** every due step (enrollment whose ``next_due_at`` ≤ now), in this order:
   opted out → ``stop`` (the enrollment ends; nothing is sent, on any channel); the step's conditions
   fail → ``skip`` (the enrollment moves on); no way to reach the lead on the step's channel →
   ``skip``; WhatsApp outside the 24-hour window without an approved template → ``skip``; quiet
   hours in the broker's timezone or the lead's frequency cap → ``defer`` (same step, later);
   otherwise → ``send``.

The caller writes decisions with the key (campaign, lead, step), so a batch run twice sends nothing
twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import polars as pl

from leadflow.campaigns.definitions import CampaignDefinition
from leadflow.campaigns.eligibility import WHATSAPP_WINDOW, ContactRules, quiet_until
from leadflow.campaigns.templates import VISIT_OPTIONS_MARK, VISIT_TIME_MARK, render_expr, template_columns

# What the voice agent is asked to do when a call step has no template of its own.
DEFAULT_CALL_TASK = ("Llama a {{name}} de parte de {{broker}} para retomar su búsqueda: {{operation}} "
                     "{{property_type}} en {{location}}, presupuesto {{budget}}. Confirma si sigue interesado y "
                     "ofrece agendar una visita.")

ENROLLMENT_SCHEMA: dict[str, pl.DataType] = {
    "campaign_id": pl.Int64(), "broker_id": pl.Int64(), "lead_id": pl.Int64(), "next_step": pl.Int64(),
    "next_due_at": pl.Datetime("us", "UTC")}


@dataclass(frozen=True)
class Campaign:
    campaign_id: int
    broker_id: int
    name: str
    definition: CampaignDefinition
    activated_at: datetime


@dataclass(frozen=True)
class Broker:
    broker_id: int
    name: str
    timezone: str
    rules: ContactRules = field(default_factory=ContactRules)


REQUEST_SCHEMA: dict[str, pl.DataType] = {"campaign_id": pl.Int64(), "lead_id": pl.Int64()}


def _requested(campaign: Campaign, requested: pl.DataFrame | None) -> pl.DataFrame:
    if requested is None:
        return pl.DataFrame(schema={"lead_id": pl.Int64})
    return requested.filter(pl.col("campaign_id") == campaign.campaign_id).select(pl.col("lead_id").cast(pl.Int64))


def _trigger(campaign: Campaign, profiles: pl.DataFrame, members: pl.DataFrame,
             requested: pl.DataFrame | None = None) -> pl.DataFrame:
    trigger = campaign.definition.trigger
    leads = profiles.filter((pl.col("broker_id") == campaign.broker_id) & ~pl.col("opted_out"))
    if trigger.type == "manual":
        leads = leads.join(_requested(campaign, requested), on="lead_id", how="semi")
    elif trigger.type == "score_threshold":
        leads = leads.filter(pl.col("score") >= trigger.score_min)
    elif trigger.type == "stage_change":
        # Entered the stage since the campaign was switched on: a change, not a state.
        leads = leads.filter((pl.col("stage") == trigger.stage) & (pl.col("stage_entered_at") >= campaign.activated_at))
    elif trigger.type == "inactivity":
        leads = leads.filter(pl.col("days_silent") >= trigger.days)
    if trigger.segment is not None:
        in_segment = members.filter((pl.col("broker_id") == campaign.broker_id)
                                    & (pl.col("segment") == trigger.segment)).select("lead_id")
        leads = leads.join(in_segment, on="lead_id", how="semi")
    return leads


def enroll(campaigns: list[Campaign], profiles: pl.DataFrame, members: pl.DataFrame, enrolled: pl.DataFrame,
           now: datetime, requested: pl.DataFrame | None = None) -> pl.DataFrame:
    """New enrollments (campaign_id, broker_id, lead_id, next_step 0, next_due_at): triggered, not yet in.

    ``requested`` (campaign_id, lead_id): the leads people applied ``manual`` campaigns to, which are what
    such a campaign's trigger enrolls (still never an opted-out lead, and narrowed by its segment, if any).
    """
    found = []
    for campaign in campaigns:
        leads = _trigger(campaign, profiles, members, requested).select("lead_id")
        already = enrolled.filter(pl.col("campaign_id") == campaign.campaign_id).select("lead_id")
        first_delay = timedelta(hours=campaign.definition.steps[0].delay_hours)
        found.append(leads.join(already, on="lead_id", how="anti").select(
            pl.lit(campaign.campaign_id, pl.Int64).alias("campaign_id"),
            pl.lit(campaign.broker_id, pl.Int64).alias("broker_id"), pl.col("lead_id").cast(pl.Int64),
            pl.lit(0, pl.Int64).alias("next_step"), pl.lit(now + first_delay).dt.cast_time_unit("us")
            .dt.convert_time_zone("UTC").alias("next_due_at")))
    return pl.concat(found) if found else pl.DataFrame(schema=ENROLLMENT_SCHEMA)


OUTCOME_SCHEMA: dict[str, pl.DataType] = {"campaign_id": pl.Int64(), "lead_id": pl.Int64(), "status": pl.String(),
                                          "reason": pl.String()}


def manual_outcomes(campaigns: list[Campaign], requested: pl.DataFrame, profiles: pl.DataFrame,
                    members: pl.DataFrame, enrolled: pl.DataFrame) -> pl.DataFrame:
    """What became of each request (campaign_id, lead_id) of these campaigns: ``enrolled`` (in ``enrolled``,
    which holds this batch's new enrollments too) or ``refused``, with the reason a person reads in the log.

    The reasons follow ``_trigger``'s order: a lead that is no longer live (merged into another since it was
    chosen), then consent, then the campaign's segment.
    """
    col, lit = pl.col, pl.lit
    found = []
    for campaign in campaigns:
        asked = _requested(campaign, requested)
        if asked.is_empty():
            continue
        segment = campaign.definition.trigger.segment
        live = profiles.filter(col("broker_id") == campaign.broker_id).select(
            "lead_id", pl.col("opted_out").fill_null(False).alias("_opted_out"))
        inside = (members.filter((col("broker_id") == campaign.broker_id) & (col("segment") == segment))
                  .select("lead_id", pl.lit(True).alias("_member")) if segment is not None
                  else pl.DataFrame(schema={"lead_id": pl.Int64, "_member": pl.Boolean}))
        done = enrolled.filter(col("campaign_id") == campaign.campaign_id).select(
            pl.col("lead_id").cast(pl.Int64), pl.lit(True).alias("_enrolled"))
        frame = (asked.join(done, on="lead_id", how="left").join(live, on="lead_id", how="left")
                 .join(inside.unique("lead_id"), on="lead_id", how="left"))
        reason = (pl.when(col("_enrolled").is_not_null()).then(lit(None, pl.String))
                  .when(col("_opted_out").is_null())
                  .then(lit("no longer a live lead of this broker (merged into another lead)"))
                  .when(col("_opted_out")).then(lit("opted out"))
                  .when(lit(segment is not None) & col("_member").is_null())
                  .then(lit(f"not in the campaign's segment {segment!r}"))
                  .otherwise(lit("not enrolled by the campaign's trigger")))
        found.append(frame.select(
            pl.lit(campaign.campaign_id, pl.Int64).alias("campaign_id"), "lead_id",
            status=pl.when(col("_enrolled").is_not_null()).then(lit("enrolled")).otherwise(lit("refused")),
            reason=reason))
    return pl.concat(found) if found else pl.DataFrame(schema=OUTCOME_SCHEMA)


DECISION_SCHEMA: dict[str, pl.DataType] = {
    "campaign_id": pl.Int64(), "broker_id": pl.Int64(), "broker_slug": pl.String(), "lead_id": pl.Int64(),
    "step": pl.Int64(), "action": pl.String(), "channel": pl.String(), "decision": pl.String(),
    "reason": pl.String(), "payload": pl.String(), "next_due_at": pl.Datetime("us", "UTC"), "done": pl.Boolean()}


def _steps(campaigns: dict[int, Campaign]) -> pl.DataFrame:
    """Every step of every campaign as a row: what ``decide`` joins the due leads to."""
    rows = []
    for c in campaigns.values():
        for index, step in enumerate(c.definition.steps):
            following = c.definition.steps[index + 1] if index + 1 < len(c.definition.steps) else None
            wa = step.whatsapp_template
            rows.append({
                "campaign_id": c.campaign_id, "step": index, "campaign": c.name, "action": step.action,
                "template": step.template or (DEFAULT_CALL_TASK if step.action == "call" else ""),
                "wa_name": wa.name if wa else None, "wa_language": wa.language if wa else None,
                "wa_parameters": list(wa.parameters) if wa else [], "wants": step.channel, "provider": step.provider,
                "target_stage": step.stage, "visit_minutes": step.visit_minutes,
                "score_min": step.conditions.score_min, "score_max": step.conditions.score_max,
                "required": list(step.conditions.required_fields), "excluded": list(step.conditions.excluded_tags),
                "next_delay_s": following.delay_hours * 3600 if following else None, "last": following is None})
    return pl.DataFrame(rows, schema_overrides={"wa_name": pl.String, "wa_language": pl.String,
                                               "wa_parameters": pl.List(pl.String), "target_stage": pl.String,
                                               "score_min": pl.Int64, "score_max": pl.Int64,
                                               "required": pl.List(pl.String), "excluded": pl.List(pl.String),
                                               "next_delay_s": pl.Float64})


# What ``decide`` reads from a profile; a column a caller's profiles lack is read as unknown (null).
_PROFILE_COLUMNS: dict[str, pl.DataType] = {
    "name": pl.String(), "phone_e164": pl.String(), "score": pl.Int64(), "stage": pl.String(),
    "operation": pl.String(), "property_type": pl.String(), "bedrooms_min": pl.Int64(), "budget_min": pl.Float64(),
    "budget_max": pl.Float64(), "budget_currency": pl.String(), "locations": pl.List(pl.String()),
    "tags": pl.List(pl.String()), "opted_out": pl.Boolean(), "wa_id": pl.String(), "telegram_chat_id": pl.String(),
    "last_whatsapp_at": pl.Datetime("us", "UTC"), "broker_slug": pl.String(), "broker_name": pl.String(),
}


def _missing(field: str) -> pl.Expr:
    col = pl.col(field)
    if field in ("locations", "tags", "channels"):
        return col.is_null() | (col.list.len() == 0)
    return col.is_null() | (col.cast(pl.String) == "")


def decide(due: pl.DataFrame, profiles: pl.DataFrame, campaigns: dict[int, Campaign], brokers: dict[int, Broker],
           recent_sends: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """A decision for every due step, as one frame (``DECISION_SCHEMA``), computed over columns.

    ``due``: campaign_id, lead_id, next_step; ``recent_sends``: lead_id, sends (how many the lead got
    within its broker's cap window). ``payload`` is the send's JSON (what the dispatcher needs).
    """
    if due.is_empty():
        return pl.DataFrame(schema=DECISION_SCHEMA)
    utc = pl.Datetime("us", "UTC")
    broker_rows = []
    for b in brokers.values():
        broker_rows.append({"broker_id": b.broker_id, "quiet_until": quiet_until(now, b.timezone, b.rules),
                            "cap": b.rules.cap_messages, "visit_time": VISIT_TIME_MARK,
                            "visit_options": VISIT_OPTIONS_MARK})
    broker_frame = pl.DataFrame(broker_rows, schema_overrides={"quiet_until": utc})
    profiles = profiles.with_columns(pl.lit(None, dtype).alias(name) for name, dtype in _PROFILE_COLUMNS.items()
                                     if name not in profiles.columns)
    frame = (due.rename({"next_step": "step"}).join(_steps(campaigns), on=["campaign_id", "step"])
             .join(profiles, on="lead_id").join(recent_sends, on="lead_id", how="left")
             .join(broker_frame, on="broker_id", how="left"))
    if frame.is_empty():
        return pl.DataFrame(schema=DECISION_SCHEMA)
    col, lit = pl.col, pl.lit
    required = sorted({f for c in campaigns.values() for st in c.definition.steps
                       for f in st.conditions.required_fields})
    missing = pl.concat_str([pl.when(col("required").list.contains(f) & _missing(f)).then(lit(f)) for f in required],
                            separator=", ", ignore_nulls=True) if required else lit("")
    tagged = col("tags").list.set_intersection(col("excluded")).list.sort().list.join(", ")
    failure = (pl.when(col("score_min").is_not_null() & (col("score").is_null() | (col("score") < col("score_min"))))
               .then(pl.format("score {} below {}", col("score"), col("score_min")))
               .when(col("score_max").is_not_null() & (col("score").is_null() | (col("score") > col("score_max"))))
               .then(pl.format("score {} above {}", col("score"), col("score_max")))
               .when(missing != "").then(lit("missing ") + missing)
               .when(tagged != "").then(lit("tagged ") + tagged))
    wa_ok = col("wants").is_in(["auto", "whatsapp"]) & col("wa_id").is_not_null()
    tg_ok = col("wants").is_in(["auto", "telegram"]) & col("telegram_chat_id").is_not_null()
    in_window = col("last_whatsapp_at").is_not_null() & (lit(now) - col("last_whatsapp_at") < WHATSAPP_WINDOW)
    channel = (pl.when(col("action") == "move_stage").then(lit("pipeline"))
               .when(col("action") == "call").then(pl.when(col("phone_e164").is_not_null()).then(col("provider")))
               .when(wa_ok).then(lit("whatsapp")).when(tg_ok).then(lit("telegram")))
    unreachable = (pl.when(col("action") == "call").then(lit("no phone number to call"))
                   .otherwise(pl.format("no {} channel for this lead",
                                        pl.when(col("wants") == "auto").then(lit("chat")).otherwise(col("wants")))))
    following = pl.when(~col("last")).then(lit(now) + pl.duration(seconds=col("next_delay_s")))
    frame = frame.with_columns(_failure=failure, channel=channel).with_columns(
        decision=pl.when(col("opted_out")).then(lit("stop"))
        .when(col("_failure").is_not_null() | col("channel").is_null()).then(lit("skip"))
        .when((col("channel") == "whatsapp") & col("wa_name").is_null() & ~in_window).then(lit("skip"))
        .when((col("channel") != "pipeline") & col("quiet_until").is_not_null()).then(lit("defer"))
        .when((col("channel") != "pipeline") & (col("sends").fill_null(0) >= col("cap"))).then(lit("defer"))
        .otherwise(lit("send")),
        reason=pl.when(col("opted_out")).then(lit("opted out"))
        .when(col("_failure").is_not_null()).then(col("_failure"))
        .when(col("channel").is_null()).then(unreachable)
        .when((col("channel") == "whatsapp") & col("wa_name").is_null() & ~in_window)
        .then(lit("outside the WhatsApp 24-hour window and no approved template"))
        .when((col("channel") != "pipeline") & col("quiet_until").is_not_null()).then(lit("quiet hours"))
        .when((col("channel") != "pipeline") & (col("sends").fill_null(0) >= col("cap"))).then(lit("frequency cap")),
    ).with_columns(
        channel=pl.when(col("decision").is_in(["send", "defer"])).then(col("channel")),
        next_due_at=pl.when(col("reason") == "quiet hours").then(col("quiet_until"))
        .when(col("reason") == "frequency cap").then(lit(now + timedelta(days=1)))
        .when(col("decision").is_in(["send", "skip"])).then(following).cast(utc),
        done=col("decision").is_in(["send", "skip", "stop"]) & (col("last") | (col("decision") == "stop")),
    )
    sends = _with_payloads(frame.filter(col("decision") == "send"), now)
    others = frame.filter(col("decision") != "send").with_columns(payload=lit(None, pl.String))
    decided = pl.concat([sends, others], how="diagonal_relaxed").select(list(DECISION_SCHEMA))
    return decided.cast(pl.Schema(DECISION_SCHEMA))


def _with_payloads(sends: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """Each send's payload (JSON), per channel, with its templates rendered over the lead's columns."""
    if sends.is_empty():
        return sends.with_columns(payload=pl.lit(None, pl.String))
    col, lit = pl.col, pl.lit
    sends = sends.with_columns(**template_columns())
    parts = []
    keyed = sends.with_columns(_params=col("wa_parameters").list.join("\x1f"))
    for (template, params), group in keyed.group_by("template", "_params"):
        rendered = [render_expr(p) for p in str(params).split("\x1f")] if params else []
        parts.append(group.with_columns(text=render_expr(str(template)), wa_rendered=pl.concat_list(rendered)
                                        if rendered else lit([], pl.List(pl.String))))
    sends = pl.concat(parts, how="diagonal_relaxed")
    # The offer's id is added when the send is written (``store.offer_visits``).
    visit = pl.when(col("action") == "visit").then(pl.struct(minutes=col("visit_minutes")))
    template = pl.when(col("wa_name").is_not_null()).then(pl.struct(
        name=col("wa_name"), language=col("wa_language"), parameters=col("wa_rendered")))
    last_inbound = col("last_whatsapp_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00")
    payloads = {
        "whatsapp": pl.struct(to=col("wa_id"), text=col("text"), last_inbound_at=last_inbound, template=template,
                              visit=visit, campaign=col("campaign"), broker_slug=col("broker_slug")),
        "telegram": pl.struct(chat_id=col("telegram_chat_id"), text=col("text"), visit=visit,
                              campaign=col("campaign"), broker_slug=col("broker_slug")),
        "vapi": pl.struct(phone=col("phone_e164"), name=col("name").fill_null(""), task=col("text"),
                          campaign=col("campaign"), broker_slug=col("broker_slug")),
        "bland": pl.struct(phone=col("phone_e164"), name=col("name").fill_null(""), task=col("text"),
                           campaign=col("campaign"), broker_slug=col("broker_slug")),
        "pipeline": pl.struct(stage=col("target_stage"), campaign=col("campaign"), broker_slug=col("broker_slug")),
    }
    out = []
    for (channel,), group in sends.group_by("channel"):
        out.append(group.with_columns(payload=payloads[str(channel)].struct.json_encode()))
    return pl.concat(out, how="diagonal_relaxed")
