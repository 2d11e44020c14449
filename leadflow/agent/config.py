"""A broker's agent settings: whether the bot talks, how it sounds, and the facts it may state.

Read from the broker's settings (a JSON object) with ``AgentConfig.from_settings``; anything the
broker did not set takes the default, and a wrong value fails with the field and the reason.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Language = Literal["es-CL", "es-MX", "es-AR", "es-ES", "en-US"]
COUNTRY_LANGUAGE: dict[str, Language] = {"CL": "es-CL", "MX": "es-MX", "AR": "es-AR", "ES": "es-ES", "US": "en-US"}
# Leadflow's first market; a broker in any other country sets its language explicitly.
DEFAULT_LANGUAGE: Language = "es-CL"


class AgentConfigError(ValueError):
    """Invalid agent settings; the message names each wrong field and why."""


class AgentFacts(BaseModel):
    """What the bot may state about the broker, in the broker's own words. Unset: the bot says it
    will check with a person instead of making something up."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    commission: str | None = Field(default=None, min_length=1, max_length=400)
    areas: str | None = Field(default=None, min_length=1, max_length=400)
    office_hours: str | None = Field(default=None, min_length=1, max_length=200)
    how_it_works: str | None = Field(default=None, min_length=1, max_length=600)


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    # Off unless the broker turns it on: no broker gets a bot talking in its name by surprise.
    enabled: bool = False
    policy: Literal["offline", "llm"] = "offline"
    persona_name: str | None = Field(default=None, min_length=1, max_length=40)
    tone: Literal["cercano", "formal"] = "cercano"
    language: Language = DEFAULT_LANGUAGE
    facts: AgentFacts = AgentFacts()
    # Where a handed-off conversation is announced to the broker's people (never shown to leads):
    # "telegram:<chat id>" (a group of the broker's agents, through the broker's own bot) or an
    # http(s) URL that receives the notice as JSON (a Slack/Teams/CRM webhook). Unset: recorded only.
    handoff_channel: str | None = Field(default=None, max_length=400,
                                        pattern=r"^(telegram:-?[0-9]{1,20}|https?://[^\s]+)$")
    # After a handoff nobody answered for this long, a new lead message gets a holding reply.
    handoff_quiet_minutes: int = Field(default=30, ge=1, le=24 * 60)
    visit_proposal: str | None = Field(default=None, min_length=1, max_length=400)
    visit_slots: tuple[Annotated[str, Field(min_length=1, max_length=60)], ...] = Field(default=(), max_length=5)
    # A lead who floods the chat does not get a bot that floods back.
    max_replies_per_hour: int = Field(default=20, ge=1, le=200)

    @classmethod
    def from_settings(cls, settings: dict[str, Any] | None, country: str | None) -> AgentConfig:
        """The broker's agent settings; ``language`` defaults from the broker's country."""
        data = dict(settings or {})
        data.setdefault("language", COUNTRY_LANGUAGE.get((country or "").upper(), DEFAULT_LANGUAGE))
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg']}"
                                 for error in exc.errors())
            raise AgentConfigError(f"agent settings: {problems}") from exc
