"""Campaign targeting: who enters which campaign, and what each due step does now. Pure: frames in, frames out.

One batch, at time ``now``:

1. **Enroll**: each active campaign's trigger over its broker's lead profiles; a lead goes through a
   campaign once, and an opted-out lead is never enrolled.
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
from typing import Any

import polars as pl

from leadflow.campaigns.definitions import CampaignDefinition, Step
from leadflow.campaigns.eligibility import ContactRules, in_whatsapp_window, quiet_until
from leadflow.campaigns.templates import render
from leadflow.campaigns.visits import describe_slot, proposed_slot

# What the voice agent is asked to do when a call step has no template of its own.
DEFAULT_CALL_TASK = ("Llama a {{name}} de parte de {{broker}} para retomar su búsqueda: {{operation}} "
                     "{{property_type}} en {{location}}, presupuesto {{budget}}. Confirma si sigue interesado y "
                     "ofrece agendar una visita.")

ENROLLMENT_SCHEMA: dict[str, pl.DataType] = {"campaign_id": pl.Int64(), "broker_id": pl.Int64(), "lead_id": pl.Int64(),
                                       "next_step": pl.Int64(), "next_due_at": pl.Datetime("us", "UTC")}


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


def _trigger(campaign: Campaign, profiles: pl.DataFrame, members: pl.DataFrame) -> pl.DataFrame:
    trigger = campaign.definition.trigger
    leads = profiles.filter((pl.col("broker_id") == campaign.broker_id) & ~pl.col("opted_out"))
    if trigger.type == "manual":
        return leads.clear()
    if trigger.type == "score_threshold":
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
           now: datetime) -> pl.DataFrame:
    """New enrollments (campaign_id, broker_id, lead_id, next_step 0, next_due_at): triggered, not yet in."""
    found = []
    for campaign in campaigns:
        leads = _trigger(campaign, profiles, members).select("lead_id")
        already = enrolled.filter(pl.col("campaign_id") == campaign.campaign_id).select("lead_id")
        first_delay = timedelta(hours=campaign.definition.steps[0].delay_hours)
        found.append(leads.join(already, on="lead_id", how="anti").select(
            pl.lit(campaign.campaign_id, pl.Int64).alias("campaign_id"),
            pl.lit(campaign.broker_id, pl.Int64).alias("broker_id"), pl.col("lead_id").cast(pl.Int64),
            pl.lit(0, pl.Int64).alias("next_step"), pl.lit(now + first_delay).dt.cast_time_unit("us")
            .dt.convert_time_zone("UTC").alias("next_due_at")))
    return pl.concat(found) if found else pl.DataFrame(schema=ENROLLMENT_SCHEMA)


@dataclass(frozen=True)
class Decision:
    campaign_id: int
    broker_id: int
    lead_id: int
    step: int
    action: str
    decision: str  # send | skip | defer | stop
    reason: str | None = None
    channel: str | None = None
    payload: dict[str, Any] | None = None
    next_due_at: datetime | None = None  # defer: when to look again; send/skip: when the next step is due
    done: bool = False  # no step left after this one


def _condition_failure(step: Step, lead: dict[str, Any]) -> str | None:
    c = step.conditions
    score = lead.get("score")
    if c.score_min is not None and (score is None or score < c.score_min):
        return f"score {score} below {c.score_min}"
    if c.score_max is not None and (score is None or score > c.score_max):
        return f"score {score} above {c.score_max}"
    missing = [f for f in c.required_fields if lead.get(f) in (None, [], "")]
    if missing:
        return f"missing {', '.join(missing)}"
    tagged = sorted(set(c.excluded_tags) & set(lead.get("tags") or []))
    if tagged:
        return f"tagged {', '.join(tagged)}"
    return None


def _route(step: Step, lead: dict[str, Any], now: datetime, timezone: str) -> tuple[str | None, dict[str, Any] | str]:
    """(channel, payload) for a step, or (None, reason) when the lead cannot be reached that way."""
    if step.action == "move_stage":
        return "pipeline", {"stage": step.stage}
    if step.action == "call":
        if not lead.get("phone_e164"):
            return None, "no phone number to call"
        task = render(step.template or DEFAULT_CALL_TASK, lead)
        return step.provider, {"phone": lead["phone_e164"], "name": lead.get("name") or "", "task": task}
    visit: dict[str, Any] | None = None
    if step.action == "visit":
        slot = proposed_slot(now, timezone)
        lead = {**lead, "visit_time": describe_slot(slot)}
        visit = {"start": slot.isoformat(), "minutes": step.visit_minutes}
    text = render(step.template or "", lead)
    wants = step.channel
    if wants in ("auto", "whatsapp") and lead.get("wa_id"):
        payload: dict[str, Any] = {"to": lead["wa_id"], "text": text,
                                   "last_inbound_at": _iso(lead.get("last_whatsapp_at"))}
        if step.whatsapp_template is not None:  # the dispatcher uses it if the window has closed by then
            payload["template"] = {"name": step.whatsapp_template.name, "language": step.whatsapp_template.language,
                                   "parameters": [render(p, lead) for p in step.whatsapp_template.parameters]}
        elif not in_whatsapp_window(lead.get("last_whatsapp_at"), now):
            return None, "outside the WhatsApp 24-hour window and no approved template"
        if visit is not None:
            payload["visit"] = visit
        return "whatsapp", payload
    if wants in ("auto", "telegram") and lead.get("telegram_chat_id"):
        payload = {"chat_id": lead["telegram_chat_id"], "text": text}
        if visit is not None:
            payload["visit"] = visit
        return "telegram", payload
    return None, f"no {'chat' if wants == 'auto' else wants} channel for this lead"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def decide(due: pl.DataFrame, profiles: pl.DataFrame, campaigns: dict[int, Campaign], brokers: dict[int, Broker],
           recent_sends: pl.DataFrame, now: datetime) -> list[Decision]:
    """A decision for every due step. ``due``: campaign_id, lead_id, next_step; ``recent_sends``:
    lead_id, sends (how many the lead got within its broker's cap window)."""
    joined = due.join(profiles, on="lead_id", how="inner").join(recent_sends, on="lead_id", how="left")
    quiet = {b.broker_id: quiet_until(now, b.timezone, b.rules) for b in brokers.values()}
    decisions = []
    for lead in joined.iter_rows(named=True):
        campaign = campaigns[lead["campaign_id"]]
        steps = campaign.definition.steps
        index = int(lead["next_step"])
        step = steps[index]
        last = index + 1 >= len(steps)
        following = None if last else now + timedelta(hours=steps[index + 1].delay_hours)
        base = {"campaign_id": campaign.campaign_id, "broker_id": campaign.broker_id, "lead_id": lead["lead_id"],
                "step": index, "action": step.action}
        if lead["opted_out"]:
            decisions.append(Decision(**base, decision="stop", reason="opted out", done=True))
            continue
        failure = _condition_failure(step, lead)
        timezone = brokers[campaign.broker_id].timezone
        channel, routed = (None, failure) if failure else _route(step, lead, now, timezone)
        if channel is None:
            decisions.append(Decision(**base, decision="skip", reason=str(routed), next_due_at=following, done=last))
            continue
        assert isinstance(routed, dict)
        broker = brokers[campaign.broker_id]
        if channel != "pipeline":
            resume = quiet[campaign.broker_id]
            if resume is not None:
                decisions.append(Decision(**base, decision="defer", reason="quiet hours", next_due_at=resume))
                continue
            if (lead.get("sends") or 0) >= broker.rules.cap_messages:
                decisions.append(Decision(**base, decision="defer", reason="frequency cap",
                                          next_due_at=now + timedelta(days=1)))
                continue
        routed.update(campaign=campaign.name, broker_slug=lead.get("broker_slug"))
        decisions.append(Decision(**base, decision="send", channel=channel, payload=routed, next_due_at=following,
                                  done=last))
    return decisions
