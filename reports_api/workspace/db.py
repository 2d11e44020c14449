"""The workspace's writes: notes, tags, assignment and stage moves, each audited in ``leadflow.audit_log``.

A write runs in its own read-write transaction as ``leadflow_reports``, scoped to the broker and the acting
person (and, for an AGENT, its own leads) by ``ScopedPool.cursor``; migration 0015's policies then refuse, in
PostgreSQL, a row of a lead the person may not see or a row signed with someone else's id. The functions
here check the same things first so that a refusal is a clear 404/409/422 rather than a policy error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import psycopg2.errors
import psycopg2.extensions
from fastapi import HTTPException, status

from leadflow.leads.stages import LOST, Pipeline, stage_moment
from reports_api import queries
from reports_api.scope import ScopedPool
from reports_api.security import Principal
from reports_api.workspace import reads

T = TypeVar("T")
MAX_NOTE = 5000
MAX_TAG = 40
MAX_REASON = 500


class NotFound(LookupError):
    """The lead (or the tag, the person) is not there for this caller."""


class Conflict(ValueError):
    """The write would change nothing (the lead is already in that stage)."""


class Invalid(ValueError):
    """The write is not allowed as asked (lost without a reason, an unknown stage); the message says why."""


@contextmanager
def write_cursor(pool: ScopedPool, who: Principal, broker_id: int) -> Iterator[psycopg2.extensions.cursor]:
    """A read-write cursor that sees and writes ``broker_id`` only, as ``who``: 403 when ``who`` may not use
    the broker, 404 when a SUPERADMIN names a broker that does not exist. Committed when the block ends,
    rolled back on an exception."""
    if not who.may_read(broker_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this account may not read that broker")
    try:
        with pool.cursor(who, broker_id, write=True) as cur:
            if who.role == "SUPERADMIN" and queries.broker(cur, broker_id) is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"there is no broker {broker_id}")
            yield cur
    finally:
        # After the commit (or the rollback): the inbox's counts of the broker may have changed.
        reads.COUNTS.forget(broker_id)


def write(pool: ScopedPool, who: Principal, broker_id: int, action: Callable[[psycopg2.extensions.cursor], T]) -> T:
    """Run ``action`` in a write transaction, its refusals as HTTP answers (nothing is written then)."""
    try:
        with write_cursor(pool, who, broker_id) as cur:
            return action(cur)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except Invalid as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    except psycopg2.errors.InsufficientPrivilege as exc:
        # Row security refused what the checks let through: not this caller's lead (or settings).
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not a lead you may change") from exc


def _json(value: Any) -> str:
    def plain(item: Any) -> Any:
        if isinstance(item, datetime | date):
            return item.isoformat()
        if isinstance(item, Decimal):
            return float(item)
        raise TypeError(type(item).__name__)

    return json.dumps(value, default=plain)


def audit(cur: psycopg2.extensions.cursor, broker_id: int, action: str, lead_id: int | None,
          before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    """One entry of the audit; the person is the transaction's (``leadflow.user_id``), never an argument."""
    cur.execute("""INSERT INTO leadflow.audit_log (broker_id, action, lead_id, before, after)
                   VALUES (%s, %s, %s, %s, %s)""",
                (broker_id, action, lead_id, None if before is None else _json(before),
                 None if after is None else _json(after)))


def _lead(cur: psycopg2.extensions.cursor, broker_id: int, lead_id: int) -> dict[str, Any]:
    """The live lead, locked for this write; NotFound when the caller may not see it or it was merged away."""
    cur.execute("""SELECT lead_id, merged_into, assigned_user_id FROM leadflow.leads
                   WHERE lead_id = %s AND broker_id = %s FOR UPDATE""", (lead_id, broker_id))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"broker {broker_id} has no lead {lead_id} you may change")
    if row[1] is not None:
        raise NotFound(f"lead {lead_id} was merged into lead {row[1]}; open that one")
    return {"lead_id": row[0], "assigned_user_id": row[2]}


def _name(cur: psycopg2.extensions.cursor, user_id: int | None) -> str | None:
    """A person's display name (None for a SUPERADMIN, whom the broker-scoped cursor does not see)."""
    if user_id is None:
        return None
    cur.execute("SELECT display_name FROM leadflow.users WHERE user_id = %s", (user_id,))
    row = cur.fetchone()
    return None if row is None else str(row[0])


def clean_text(text: str, limit: int, what: str) -> str:
    """``text`` stripped; Invalid when empty, too long, or holding what PostgreSQL text cannot store."""
    text = text.strip()
    if not text:
        raise Invalid(f"{what} is empty")
    if len(text) > limit:
        raise Invalid(f"{what} is longer than {limit} characters")
    if "\x00" in text:
        raise Invalid(f"{what} must not contain NUL characters")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise Invalid(f"{what} must be valid Unicode text") from None
    return text


def clean_tag(tag: str) -> str:
    """Tags are compared as campaigns compare them: trimmed, lower case, inner spaces collapsed."""
    tag = " ".join(clean_text(tag, MAX_TAG, "the tag").lower().split())
    if any(not ch.isprintable() for ch in tag):
        raise Invalid("the tag must be printable text")
    return tag


def add_note(cur: psycopg2.extensions.cursor, broker_id: int, lead_id: int, body: str) -> dict[str, Any]:
    body = clean_text(body, MAX_NOTE, "the note")
    _lead(cur, broker_id, lead_id)
    cur.execute("""INSERT INTO leadflow.lead_notes (broker_id, lead_id, body) VALUES (%s, %s, %s)
                   RETURNING note_id, body, created_at, author_id""", (broker_id, lead_id, body))
    row = cur.fetchone()
    assert row is not None
    note = {"note_id": row[0], "body": row[1], "created_at": row[2], "author_id": row[3]}
    audit(cur, broker_id, "note.add", lead_id, None, note)
    return {**note, "author": _name(cur, row[3])}


def add_tag(cur: psycopg2.extensions.cursor, broker_id: int, lead_id: int, tag: str) -> tuple[dict[str, Any], bool]:
    """The tag on the lead, and whether it was new (a tag already there is left as it was, not audited)."""
    tag = clean_tag(tag)
    _lead(cur, broker_id, lead_id)
    cur.execute("""INSERT INTO leadflow.lead_tags (lead_id, broker_id, tag) VALUES (%s, %s, %s)
                   ON CONFLICT (lead_id, tag) DO NOTHING RETURNING tag, added_at, added_by""",
                (lead_id, broker_id, tag))
    row = cur.fetchone()
    if row is None:
        cur.execute("SELECT tag, added_at, added_by FROM leadflow.lead_tags WHERE lead_id = %s AND tag = %s",
                    (lead_id, tag))
        row = cur.fetchone()
        assert row is not None
        return {"tag": row[0], "added_at": row[1], "added_by_id": row[2], "added_by": _name(cur, row[2])}, False
    added = {"tag": row[0], "added_at": row[1], "added_by_id": row[2]}
    audit(cur, broker_id, "tag.add", lead_id, None, added)
    return {**added, "added_by": _name(cur, row[2])}, True


def remove_tag(cur: psycopg2.extensions.cursor, broker_id: int, lead_id: int, tag: str) -> None:
    tag = clean_tag(tag)
    _lead(cur, broker_id, lead_id)
    cur.execute("""DELETE FROM leadflow.lead_tags WHERE lead_id = %s AND broker_id = %s AND tag = %s
                   RETURNING tag, added_at, added_by""", (lead_id, broker_id, tag))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"lead {lead_id} has no tag {tag!r}")
    audit(cur, broker_id, "tag.remove", lead_id, {"tag": row[0], "added_at": row[1], "added_by_id": row[2]}, None)


def assign(cur: psycopg2.extensions.cursor, broker_id: int, lead_id: int, user_id: int | None) -> dict[str, Any]:
    """Give the lead to an active ADMIN or AGENT of its broker, or to nobody (None)."""
    lead = _lead(cur, broker_id, lead_id)
    person = None
    if user_id is not None:
        cur.execute("""SELECT user_id, display_name, email FROM leadflow.users
                       WHERE user_id = %s AND broker_id = %s AND role IN ('ADMIN', 'AGENT') AND NOT disabled""",
                    (user_id, broker_id))
        row = cur.fetchone()
        if row is None:
            raise Invalid(f"user {user_id} is not an active person of broker {broker_id}")
        person = {"user_id": row[0], "display_name": row[1], "email": row[2]}
    before = {"assigned_user_id": lead["assigned_user_id"]}
    after = {"assigned_user_id": user_id}
    if before != after:
        cur.execute("UPDATE leadflow.leads SET assigned_user_id = %s WHERE lead_id = %s AND broker_id = %s",
                    (user_id, lead_id, broker_id))
        audit(cur, broker_id, "lead.assign", lead_id, before, after)
    return {"lead_id": lead_id, "assigned": person}


def move_stage(cur: psycopg2.extensions.cursor, broker_id: int, lead_id: int, target: str, reason: str | None,
               pipeline: Pipeline, who: Principal) -> dict[str, Any]:
    """A person puts the lead in ``target``: forward, back, to won or to lost (lost needs a reason).

    Recorded as a manual stage event signed by the person, at the database's now (never before the
    current stage's entry: ``stage_moment``); the automatic stages only ever move forward from there.
    """
    codes = [s.code for s in pipeline.stages] + [LOST]
    if target not in codes:
        raise Invalid(f"unknown stage {target!r}; the pipeline's stages are {', '.join(codes)}")
    reason = clean_text(reason, MAX_REASON, "the reason") if reason and reason.strip() else None
    if target == LOST and reason is None:
        raise Invalid("say why the lead is lost (a reason is required)")
    _lead(cur, broker_id, lead_id)
    cur.execute("""SELECT st.stage, st.entered_at,
                          (SELECT max(e.sequence) FROM leadflow.stage_events e
                           WHERE e.lead_id = st.lead_id AND e.occurred_at = st.entered_at), now()
                   FROM leadflow.lead_stages st WHERE st.lead_id = %s FOR UPDATE""", (lead_id,))
    found = cur.fetchone()
    current, entered_at, last_sequence = found[:3] if found else (None, None, None)
    if found is None:
        cur.execute("SELECT now()")
        now_row = cur.fetchone()
        assert now_row is not None
        now = now_row[0]
    else:
        now = found[3]
    if current == target:
        raise Conflict(f"lead {lead_id} is already in {target}")
    moved_at, sequence = stage_moment(now, entered_at, last_sequence)
    recorded = reason or "moved by hand"
    cur.execute("""INSERT INTO leadflow.stage_events (broker_id, lead_id, from_stage, to_stage, occurred_at, reason,
                                                      automatic, sequence, moved_by)
                   VALUES (%s, %s, %s, %s, %s, %s, false, %s, %s)""",
                (broker_id, lead_id, current, target, moved_at, recorded, sequence, who.user_id))
    cur.execute("""INSERT INTO leadflow.lead_stages (lead_id, broker_id, stage, entered_at, evaluated_at)
                   VALUES (%s, %s, %s, %s, %s) ON CONFLICT (lead_id) DO UPDATE SET stage = EXCLUDED.stage,
                   entered_at = EXCLUDED.entered_at, evaluated_at = EXCLUDED.evaluated_at, stalled = false,
                   stalled_days = NULL""", (lead_id, broker_id, target, moved_at, now))
    direction = "back" if current in codes and codes.index(target) < codes.index(current) else "forward"
    move = {"lead_id": lead_id, "from_stage": current, "to_stage": target, "occurred_at": moved_at,
            "reason": recorded, "direction": direction}
    audit(cur, broker_id, "stage.move", lead_id, {"stage": current, "entered_at": entered_at},
          {"stage": target, "entered_at": moved_at, "reason": recorded})
    return move


MAX_NAME = 200
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def edit_lead(cur: psycopg2.extensions.cursor, broker_id: int, lead_id: int, who: Principal, name: str | None,
              phone: str | None, email: str | None) -> dict[str, Any]:
    """A person sets the lead's name, phone or email (None or blank: left as it is); audited.

    What a person sets is kept over what later messages say (``leadflow.lead_contact_edits``, migration
    0020). A phone (E.164 in the broker's country) or email also becomes an identity of the lead, so later
    messages from it resolve here; Conflict, with nothing written, when it is another lead's (merging is a
    separate, deliberate act). Invalid for a phone or email that is not one.
    """
    import re

    import psycopg2.errors

    from leadflow.leads.store.identities import LOCK_LEADS
    from leadflow.phones import to_e164

    lead = _lead(cur, broker_id, lead_id)
    changes: dict[str, str] = {}
    if name is not None and name.strip():
        changes["display_name"] = " ".join(clean_text(name, MAX_NAME, "the name").split())
    if phone is not None and phone.strip():
        found = queries.broker(cur, broker_id)
        country = str(found["country"]) if found else None
        e164 = to_e164(clean_text(phone, 40, "the phone"), country)
        if e164 is None:
            raise Invalid(f"{phone.strip()!r} is not a valid phone number (for {country or 'an international'} "
                          "numbers; write +<country code> for another country)")
        changes["phone_e164"] = e164
    if email is not None and email.strip():
        address = clean_text(email, 254, "the email").lower()
        if not re.match(_EMAIL, address):
            raise Invalid(f"{email.strip()!r} is not an email address")
        changes["email"] = address
    if not changes:
        raise Invalid("give a name, a phone or an email to set")
    cur.execute("SELECT display_name, phone_e164, email FROM leadflow.leads WHERE lead_id = %s", (lead["lead_id"],))
    row = cur.fetchone()
    assert row is not None
    current = dict(zip(("display_name", "phone_e164", "email"), row, strict=True))
    by = _name(cur, who.user_id) or who.email
    # Identity resolution links identities under this lock; taken here, the check below and the insert are one
    # step for it too.
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_LEADS,))
    added: list[dict[str, str]] = []
    for kind, column in (("phone", "phone_e164"), ("email", "email")):
        value = changes.get(column)
        if value is None:
            continue
        cur.execute("""SELECT i.lead_id, l.display_name FROM leadflow.lead_identities i
                       LEFT JOIN leadflow.leads l ON l.lead_id = i.lead_id
                       WHERE i.broker_id = %s AND i.identity_kind = %s AND i.identity_value = %s""",
                    (broker_id, kind, value))
        owner = cur.fetchone()
        if owner is not None and owner[0] == lead_id:
            continue
        if owner is not None:
            raise Conflict(f"the {kind} {value} already belongs to lead {owner[0]}"
                           f"{f' ({owner[1]})' if owner[1] else ''}; merge the two leads instead")
        reason = f"set by {by}"
        try:
            cur.execute("""INSERT INTO leadflow.lead_identities (broker_id, identity_kind, identity_value, lead_id,
                                                                 reason) VALUES (%s, %s, %s, %s, %s)""",
                        (broker_id, kind, value, lead_id, reason))
        except psycopg2.errors.UniqueViolation:
            # Row security hid the owner: a lead this AGENT may not see.
            raise Conflict(f"the {kind} {value} already belongs to another lead of the broker (one you may not "
                           "see); ask an admin to merge the two leads") from None
        added.append({"kind": kind, "value": value, "reason": reason})
    cur.execute("""INSERT INTO leadflow.lead_contact_edits (lead_id, broker_id, display_name, phone_e164, email)
                   VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (lead_id) DO UPDATE SET
                       display_name = coalesce(EXCLUDED.display_name, leadflow.lead_contact_edits.display_name),
                       phone_e164 = coalesce(EXCLUDED.phone_e164, leadflow.lead_contact_edits.phone_e164),
                       email = coalesce(EXCLUDED.email, leadflow.lead_contact_edits.email),
                       edited_by = EXCLUDED.edited_by, edited_at = now()""",
                (lead_id, broker_id, changes.get("display_name"), changes.get("phone_e164"), changes.get("email")))
    cur.execute("SELECT display_name, phone_e164, email FROM leadflow.leads WHERE lead_id = %s", (lead_id,))
    row = cur.fetchone()
    assert row is not None
    now = dict(zip(("display_name", "phone_e164", "email"), row, strict=True))
    audit(cur, broker_id, "lead.edit", lead_id, {k: current[k] for k in changes},
          {**{k: now[k] for k in changes}, "identities_added": added})
    return {"lead_id": lead_id, **now, "identities_added": added}
