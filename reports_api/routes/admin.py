"""Broker self-service's JSON API (tag "admin"): brokers, their people, invitations and the audit log.

A SUPERADMIN registers brokers; an ADMIN manages its own broker's people and reads its audit log (a SUPERADMIN,
any broker's). These routes write as the database owner (``owner_cursor``), so the checks of
``reports_api.admin.access`` are all that stands between a caller and another broker: every refusal has a test
in tests/test_admin_people.py.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import psycopg2.extensions
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from leadflow.users import UserError, hash_password
from reports_api.admin import audit, people
from reports_api.admin.access import AdminError
from reports_api.deps import ERRORS, MAX_ID, Caller, Id
from reports_api.schemas import Problem
from reports_api.sessions import OwnerConnections, PgAccounts

T = TypeVar("T")
router = APIRouter(prefix="/admin", tags=["admin"], responses=ERRORS)
REFUSALS: dict[int | str, dict[str, Any]] = {409: {"model": Problem}, 422: {"model": Problem}}


async def get_owner(request: Request) -> OwnerConnections:
    owner: OwnerConnections = request.app.state.owner
    return owner


Owner = Annotated[OwnerConnections, Depends(get_owner)]


@contextmanager
def refusals() -> Iterator[None]:
    """``reports_api.admin``'s refusals as HTTP answers (the transaction is rolled back: nothing is written)."""
    try:
        yield
    except AdminError as exc:
        raise HTTPException(exc.status, str(exc)) from exc


def run(owner: OwnerConnections, action: Callable[[psycopg2.extensions.cursor], T]) -> T:
    """``action`` in one owner transaction, its refusals as HTTP answers."""
    with refusals(), owner.cursor() as cur:
        return action(cur)


def forget_sessions(request: Request, user_id: int) -> None:
    """This process stops trusting its cached answers about the account: a deactivated person's next request
    is refused at once (other processes within ``sessions.SESSION_CACHE_S``)."""
    accounts = request.app.state.accounts
    if isinstance(accounts, PgAccounts):
        accounts.forget_user(user_id)


def invitation_url(request: Request, invitation: people.Invitation) -> str:
    return str(request.base_url).rstrip("/") + invitation.path


# --- models ---------------------------------------------------------------------------------------------

class BrokerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: str = Field(max_length=63, description="2-63 lowercase letters, digits and dashes; the webhooks' URLs use it")
    name: str = Field(min_length=1, max_length=people.MAX_NAME)
    country: str = Field(max_length=8, description="ISO 3166 two-letter code: CL, MX, AR, ES, US…")
    timezone: str = Field(max_length=64, description="IANA name, e.g. America/Santiago")
    admin_email: str = Field(max_length=254, description="the broker's first ADMIN, invited")
    admin_display_name: str = Field(min_length=1, max_length=people.MAX_NAME)


class Broker(BaseModel):
    broker_id: int
    slug: str
    name: str
    country: str
    timezone: str


class BrokerListed(Broker):
    active_people: int = Field(description="accounts of the broker that are not deactivated")


class Person(BaseModel):
    user_id: int
    email: str
    display_name: str
    role: str
    disabled: bool
    invitation_pending: bool = Field(description="invited and has not set a password yet (cannot log in)")
    invitation_expires_at: datetime | None = Field(description="when the current invitation link stops working")
    created_at: datetime


class Invited(BaseModel):
    person: Person
    invitation_url: str = Field(description="the one-time link to set a password; shown only in this answer "
                                            "(only its hash is kept): send it to the person")
    invitation_expires_at: datetime


class BrokerCreated(BaseModel):
    broker: Broker
    admin: Invited


class InviteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=254)
    display_name: str = Field(min_length=1, max_length=people.MAX_NAME)
    role: Literal["ADMIN", "AGENT"]


class PersonPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["ADMIN", "AGENT"] | None = None
    disabled: bool | None = Field(default=None, description="true deactivates (its sessions end at once), false "
                                                            "reactivates (the person logs in anew)")
    display_name: str | None = Field(default=None, min_length=1, max_length=people.MAX_NAME)


class AuditEntry(BaseModel):
    audit_id: int
    at: datetime
    action: str = Field(description="e.g. broker.create, user.invite, user.update, lead.assign")
    lead_id: int | None
    user_id: int | None = Field(description="who did it (null: done automatically)")
    user_name: str | None
    user_email: str | None
    before: Any
    after: Any


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_before_id: int | None = Field(description="pass as `before_id` for the next (older) page; null on the last")


class AcceptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(max_length=200, description="the last part of the invitation link")
    password: str = Field(max_length=200, description="at least 10 characters, at most 72 bytes")


def invited(request: Request, person: dict[str, Any], invitation: people.Invitation) -> Invited:
    return Invited(person=Person.model_validate(person), invitation_url=invitation_url(request, invitation),
                   invitation_expires_at=invitation.expires_at)


# --- routes ---------------------------------------------------------------------------------------------

@router.get("/brokers", response_model=list[BrokerListed])
def list_brokers(owner: Owner, who: Caller) -> list[dict[str, Any]]:
    """Every broker (SUPERADMIN only)."""
    return run(owner, lambda cur: people.list_brokers(cur, who))


@router.post("/brokers", response_model=BrokerCreated, status_code=201, responses=REFUSALS)
def create_broker(request: Request, owner: Owner, who: Caller, body: BrokerIn) -> BrokerCreated:
    """Register a broker and its first ADMIN (SUPERADMIN only; audited), in one transaction. The ADMIN is invited:
    the answer carries the one-time link to set a password. A slug already taken, or an email that already has
    an account, is a 409 and nothing is created; an invalid slug, country, timezone, name or email is a 422
    naming the field."""
    def create(cur: psycopg2.extensions.cursor) -> tuple[dict[str, Any], dict[str, Any], people.Invitation]:
        return people.create_broker(cur, who, slug=body.slug, name=body.name, country=body.country,
                                    timezone=body.timezone, admin_email=body.admin_email,
                                    admin_display_name=body.admin_display_name)

    broker, admin, invitation = run(owner, create)
    return BrokerCreated(broker=Broker.model_validate(broker), admin=invited(request, admin, invitation))


@router.get("/brokers/{broker_id}/users", response_model=list[Person])
def list_people(owner: Owner, who: Caller, broker_id: Id) -> list[dict[str, Any]]:
    """The broker's people with their role and state (its ADMINs, or a SUPERADMIN)."""
    return run(owner, lambda cur: people.list_people(cur, who, broker_id))


@router.post("/brokers/{broker_id}/users", response_model=Invited, status_code=201, responses=REFUSALS)
def invite(request: Request, owner: Owner, who: Caller, broker_id: Id, body: InviteIn) -> Invited:
    """Invite a person as ADMIN or AGENT of the broker (its ADMINs, or a SUPERADMIN; audited). The account has no
    password until the person opens the link in the answer (valid 7 days, shown only here). An email that
    already has an account is a 409."""
    person, invitation = run(owner, lambda cur: people.invite(cur, who, broker_id, email=body.email,
                                                              display_name=body.display_name, role=body.role))
    return invited(request, person, invitation)


@router.post("/brokers/{broker_id}/users/{user_id}/invitation", response_model=Invited, status_code=201,
             responses=REFUSALS)
def reinvite(request: Request, owner: Owner, who: Caller, broker_id: Id, user_id: Id) -> Invited:
    """A new invitation link for a person who has not set a password yet; the earlier link stops working."""
    person, invitation = run(owner, lambda cur: people.reinvite(cur, who, broker_id, user_id))
    return invited(request, person, invitation)


@router.patch("/brokers/{broker_id}/users/{user_id}", response_model=Person, responses=REFUSALS)
def update_person(request: Request, owner: Owner, who: Caller, broker_id: Id, user_id: Id,
                  body: PersonPatch) -> dict[str, Any]:
    """Change a person's role (ADMIN or AGENT), name, or deactivate / reactivate them (audited). Deactivating or
    changing the role ends the person's sessions at once. Nobody is made SUPERADMIN here, a SUPERADMIN's account
    is not changed here (403), and an ADMIN cannot demote or deactivate the broker's last active ADMIN (409)."""
    changed = run(owner, lambda cur: people.update(cur, who, broker_id, user_id, role=body.role,
                                                   disabled=body.disabled, display_name=body.display_name))
    forget_sessions(request, user_id)
    return changed


@router.get("/brokers/{broker_id}/audit", response_model=AuditPage)
def read_audit(owner: Owner, who: Caller, broker_id: Id,
               before_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="entries older than this")] = None,
               limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = 50) -> AuditPage:
    """The broker's audit log, newest first (its ADMINs, or a SUPERADMIN): every write of its admins and people,
    with who did it and the row before and after."""
    def read(cur: psycopg2.extensions.cursor) -> tuple[list[dict[str, Any]], int | None]:
        people.broker(cur, who, broker_id)
        return audit.entries(cur, broker_id, before_id, limit)

    found, next_id = run(owner, read)
    return AuditPage(entries=[AuditEntry.model_validate(e) for e in found], next_before_id=next_id)


@router.post("/invitations/accept", response_model=Person, responses={404: {"model": Problem},
                                                                       422: {"model": Problem}})
async def accept_invitation(owner: Owner, body: AcceptIn) -> dict[str, Any]:
    """Set the password of an invited account with its link's token (no login needed: the token is the proof).
    The link works once; then log in at POST /auth/token."""
    if await run_in_threadpool(run, owner, lambda cur: people.invitation(cur, body.token)) is None:
        raise HTTPException(404, people.INVALID_LINK)
    try:
        # Hashed outside the transaction: bcrypt takes a quarter of a second.
        password_hash = await run_in_threadpool(hash_password, body.password)
    except UserError as exc:
        raise HTTPException(422, f"password: {exc}") from exc
    except UnicodeEncodeError as exc:  # a lone surrogate, which JSON can carry
        raise HTTPException(422, "password: not valid text") from exc
    return await run_in_threadpool(run, owner, lambda cur: people.accept(cur, body.token, password_hash))

