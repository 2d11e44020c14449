"""A broker's channels, for its admins: credentials stored encrypted (never shown back), Telegram's setWebhook and a
test message — the JSON routes (in /docs) and the page with its forms.

The work is in ``reports_api.admin.channels``; here the caller is resolved (bearer token or session cookie and
CSRF token), the owner connection and the master keys are taken from ``app.state``, and errors become answers.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

from datetime import datetime
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Body, HTTPException, Request, status
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from leadflow import credentials
from leadflow.config import ConfigurationError
from leadflow.credentials import CredentialError
from reports_api.admin import channels
from reports_api.deps import ERRORS, Caller, Id, Tokens
from reports_api.routes.workspace_pages import SessionDep
from reports_api.routes.workspace_settings import form_lists
from reports_api.security import Principal
from reports_api.workspace import csrf
from reports_api.workspace.render import page

api = APIRouter(prefix="/admin/brokers/{broker_id}/channels", tags=["admin"], responses=ERRORS)
pages = APIRouter(prefix="/dashboard/brokers/{broker_id}/admin/channels", tags=["admin pages"],
                  include_in_schema=False)
Channel = Annotated[str, PathParam(pattern=r"^[a-z_]{2,40}$")]
Kind = Annotated[str, PathParam(pattern=r"^[a-z][a-z0-9_]{1,62}$")]


class CredentialState(BaseModel):
    kind: str
    label: str
    secret: bool = Field(description="a secret is never shown back: only its hint (last 4 characters of a long one)")
    generated: bool = Field(description="Leadflow can generate it (a webhook secret it checks)")
    shape: str
    source: Literal["stored", "environment"] | None = Field(description="where the value in force comes from")
    hint: str
    environment_variable: str = Field(description="the variable read when nothing is stored")
    version: int | None
    updated_at: datetime | None
    updated_by: str | None


class ChannelState(BaseModel):
    channel: str
    configured: bool
    credentials: list[CredentialState]
    webhook_url: str | None = Field(description="where the provider must send this broker's webhooks")


class CredentialsIn(BaseModel):
    values: dict[str, str] = Field(default_factory=dict, description="credential kind → value; blank ones are kept "
                                                                     "as they are")
    generate: list[str] = Field(default_factory=list, description="webhook secrets for Leadflow to generate")


class SavedOut(BaseModel):
    saved: list[str]
    generated: dict[str, str] = Field(description="the generated values, shown this once: give them to the provider")
    channels: list[ChannelState]


class TestIn(BaseModel):
    to: str = Field(min_length=1, max_length=64, pattern=r"^[+0-9A-Za-z_@-]+$",
                    description="a Telegram chat id, or a WhatsApp number in international format")


def _owner(request: Request) -> Any:
    return request.app.state.owner


def _keys(request: Request) -> credentials.MasterKeys:
    try:
        keys: credentials.MasterKeys = request.app.state.master_keys()
    except ConfigurationError as exc:
        # The operator's to fix, not the admin's input: said as such rather than a 500.
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"credentials cannot be stored now: {exc}") from exc
    return keys


def _status(request: Request, broker_id: int) -> list[dict[str, Any]]:
    with _owner(request).cursor() as cur:
        return channels.status_of(cur, channels.broker(cur, broker_id), request.app.state.ingest_public_url)


def _save(request: Request, who: Principal, broker_id: int, channel: str, body: CredentialsIn) -> channels.Saved:
    channels.require_admin(who, broker_id)
    try:
        keys = _keys(request)
        with _owner(request).cursor() as cur:
            channels.broker(cur, broker_id)
            saved = channels.save(cur, keys, broker_id, who, channel, body.values, body.generate)
    except CredentialError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    request.app.state.credentials.refresh(force=True)
    return saved


def _forget(request: Request, who: Principal, broker_id: int, kind: str) -> None:
    channels.require_admin(who, broker_id)
    with _owner(request).cursor() as cur:
        channels.broker(cur, broker_id)
        channels.forget(cur, broker_id, who, kind)
    request.app.state.credentials.refresh(force=True)


def _webhook(request: Request, who: Principal, broker_id: int) -> dict[str, Any]:
    channels.require_admin(who, broker_id)
    state = request.app.state
    with _owner(request).cursor() as cur:
        found = channels.broker(cur, broker_id)
        stored = credentials.infos(cur, broker_id)
        token, secret = channels.webhook_values(cur, _keys(request) if stored else None, found)
    with httpx.Client(timeout=10.0) as client:
        answer = channels.set_telegram_webhook(token, secret, found, state.telegram_api_url,
                                               state.ingest_public_url, client)
    with _owner(request).cursor() as cur:
        channels.record_webhook(cur, broker_id, who, answer["url"])
    return answer


def _test(request: Request, who: Principal, broker_id: int, channel: str, to: str) -> str:
    channels.require_admin(who, broker_id)
    sender = request.app.state.senders.get(channel)
    if sender is None or channel not in ("telegram", "whatsapp"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "test messages go through telegram or whatsapp")
    with _owner(request).cursor() as cur:
        found = channels.broker(cur, broker_id)
    # What was just saved, not what the process read up to two seconds ago.
    request.app.state.credentials.refresh(force=True)
    return channels.send_test(found, who, channel, to, sender)


@api.get("", response_model=list[ChannelState])
def get_channels(request: Request, who: Caller, broker_id: Id) -> list[dict[str, Any]]:
    """The broker's channels (ADMIN of the broker, or SUPERADMIN): for each credential, whether it is stored,
    comes from the environment or is missing, with its hint; never a secret's value."""
    channels.require_admin(who, broker_id)
    return _status(request, broker_id)


@api.put("/{channel}", response_model=SavedOut,
         responses={422: {"description": "a value of the wrong shape, named by its field"}})
def put_channel(request: Request, who: Caller, broker_id: Id, channel: Channel, body: CredentialsIn) -> dict[str, Any]:
    """Store one channel's credentials, sealed under the master key (audited without the values). The ingest
    API, the dispatcher and the agent use them within seconds, without a restart; a stored value wins over
    the environment variable of the same credential."""
    saved = _save(request, who, broker_id, channel, body)
    return {"saved": saved.kinds, "generated": saved.generated, "channels": _status(request, broker_id)}


@api.delete("/credentials/{kind}", status_code=status.HTTP_204_NO_CONTENT)
def delete_credential(request: Request, who: Caller, broker_id: Id, kind: Kind) -> Response:
    """Forget a stored credential (audited); the environment variable, if set, applies again."""
    _forget(request, who, broker_id, kind)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@api.post("/telegram/webhook", responses={502: {"description": "Telegram did not answer"}})
def post_telegram_webhook(request: Request, who: Caller, broker_id: Id) -> dict[str, Any]:
    """Call Telegram's setWebhook for the broker's bot: its webhook URL (LEADFLOW_INGEST_PUBLIC_URL) and its
    stored secret token, which Telegram then sends with every update."""
    return _webhook(request, who, broker_id)


@api.post("/{channel}/test", responses={502: {"description": "the provider did not answer"}})
def post_test(request: Request, who: Caller, broker_id: Id, channel: Channel,
              body: Annotated[TestIn, Body()]) -> dict[str, str]:
    """Send one test message with the broker's credentials (WhatsApp: Meta's hello_world template)."""
    return {"provider_message_id": _test(request, who, broker_id, channel, body.to)}


# --- the page ----------------------------------------------------------------------------------------

def _render(request: Request, tokens: Any, session: Any, broker_id: int, status_code: int = 200,
            **extra: Any) -> Response:
    who = session.principal
    with _owner(request).cursor() as cur:
        found = channels.broker(cur, broker_id)
        state = channels.status_of(cur, found, request.app.state.ingest_public_url)
    return page("admin_channels.html", status_code, who=who, broker=found, channels=state,
                csrf=csrf.token_for(tokens.secret, session.token), **extra)


async def _form(request: Request) -> dict[str, str]:
    # Parsed as the workspace's forms are (no multipart library): the first value of each field.
    return {key: values[0] for key, values in (await form_lists(request)).items() if values}


@pages.get("")
def channels_page(request: Request, tokens: Tokens, session: SessionDep, broker_id: Id) -> Response:
    if session is None:
        return RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER)
    try:
        channels.require_admin(session.principal, broker_id)
        return _render(request, tokens, session, broker_id)
    except HTTPException as exc:
        return page("error.html", exc.status_code, who=session.principal, message=exc.detail)


async def _page_action(request: Request, tokens: Any, session: Any, broker_id: int, action: Any,
                       done: str) -> Response:
    """Run a form's action; re-render the page with what happened, or with the error naming the field."""
    if session is None:
        return RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER)
    who = session.principal
    form = await _form(request)
    if not csrf.valid(tokens.secret, session.token, form.get(csrf.FIELD)):
        return page("error.html", status.HTTP_403_FORBIDDEN, who=who,
                    message="El formulario venció. Vuelve a intentarlo.")
    try:
        channels.require_admin(who, broker_id)
        result = await run_in_threadpool(action, who, form)
    except HTTPException as exc:
        if exc.status_code in (status.HTTP_403_FORBIDDEN, status.HTTP_404_NOT_FOUND):
            return page("error.html", exc.status_code, who=who, message=exc.detail)
        return await run_in_threadpool(_render, request, tokens, session, broker_id, exc.status_code,
                                       error=str(exc.detail))
    return await run_in_threadpool(_render, request, tokens, session, broker_id, 200, done=done, result=result)


@pages.post("/{channel}")
async def save_form(request: Request, tokens: Tokens, session: SessionDep, broker_id: Id,
                    channel: Channel) -> Response:
    def action(who: Principal, form: dict[str, str]) -> dict[str, str]:
        kinds = {k.name for k in credentials.kinds_of(channel)}
        body = CredentialsIn(values={k: v for k, v in form.items() if k in kinds},
                             generate=[k[len("generate_"):] for k in form if k.startswith("generate_")])
        return _save(request, who, broker_id, channel, body).generated

    return await _page_action(request, tokens, session, broker_id, action, "saved")


@pages.post("/credentials/{kind}/forget")
async def forget_form(request: Request, tokens: Tokens, session: SessionDep, broker_id: Id, kind: Kind) -> Response:
    return await _page_action(request, tokens, session, broker_id,
                              lambda who, form: _forget(request, who, broker_id, kind), "forgotten")


@pages.post("/telegram/webhook")
async def webhook_form(request: Request, tokens: Tokens, session: SessionDep, broker_id: Id) -> Response:
    return await _page_action(request, tokens, session, broker_id,
                              lambda who, form: _webhook(request, who, broker_id), "webhook")


@pages.post("/{channel}/test")
async def test_form(request: Request, tokens: Tokens, session: SessionDep, broker_id: Id,
                    channel: Channel) -> Response:
    def action(who: Principal, form: dict[str, str]) -> str:
        try:
            body = TestIn(to=form.get("to", "").strip())
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                "to: a Telegram chat id or a WhatsApp number such as +56912345678") from exc
        return _test(request, who, broker_id, channel, body.to)

    return await _page_action(request, tokens, session, broker_id, action, "test")


router = APIRouter()
router.include_router(api)
router.include_router(pages)
