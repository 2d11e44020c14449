"""A broker's settings as its admins change them: read, save, versions, revert, and the scoring preview.

Each section of ``leadflow.broker_settings`` (``leadflow.settings_schema.SECTIONS``) is validated before it is
saved; a save writes the column, a row of ``broker_settings_versions`` and an ``audit_log`` entry in the caller's
one (owner) transaction, so all three exist or none. The leads job, the campaigns and the agent read the column
at each run or message: nothing restarts. Versions count from 1, the value as it stood before the first change
made here (recorded with that change, by nobody). A save names the version it was based on: another one saved
meanwhile makes it a 409, not a silent overwrite. Every function checks ``access.require_admin_of`` first: these
run as the owner, outside row security.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg2.extensions

from leadflow.leads.store.scores import preview_temperatures
from leadflow.leads.store.stages import LOCK as STAGES_LOCK
from leadflow.qualification.scoring import ScoringConfig
from leadflow.settings_schema import SECTIONS, Problem, SettingsError, diff, effective, validate
from reports_api.admin import audit, people
from reports_api.admin.access import Conflict, Invalid, NotFound
from reports_api.security import Principal


class SettingsInvalid(Invalid):
    """The value cannot be saved; ``problems`` names each bad field (a 422 listing them)."""

    def __init__(self, exc: SettingsError) -> None:
        super().__init__(str(exc), exc.problems[0].field if exc.problems else None)
        self.problems = exc.problems


def _section(section: str) -> str:
    if section not in SECTIONS:
        raise NotFound(f"no settings section {section!r}; sections: {', '.join(SECTIONS)}")
    return section


def _stored(cur: psycopg2.extensions.cursor, broker_id: int, section: str, lock: bool = False) -> dict[str, Any]:
    # The column name comes from SECTIONS (checked by _section), never from the request as such.
    cur.execute(f"SELECT {section} FROM leadflow.broker_settings WHERE broker_id = %s"
                + (" FOR UPDATE" if lock else ""), (broker_id,))
    row = cur.fetchone()
    return dict(row[0]) if row and row[0] else {}


def _latest(cur: psycopg2.extensions.cursor, broker_id: int, section: str) -> dict[str, Any] | None:
    cur.execute("""SELECT v.version, v.changed_at, v.changed_by, u.display_name, u.email, v.reverted_from
                   FROM leadflow.broker_settings_versions v LEFT JOIN leadflow.users u ON u.user_id = v.changed_by
                   WHERE v.broker_id = %s AND v.section = %s ORDER BY v.version DESC LIMIT 1""",
                (broker_id, section))
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip(("version", "changed_at", "changed_by", "changed_by_name", "changed_by_email", "reverted_from"),
                    row, strict=True))


def _state(cur: psycopg2.extensions.cursor, broker: dict[str, Any], section: str) -> dict[str, Any]:
    stored = _stored(cur, broker["broker_id"], section)
    latest = _latest(cur, broker["broker_id"], section) or {
        "version": 1, "changed_at": None, "changed_by": None, "changed_by_name": None, "changed_by_email": None,
        "reverted_from": None}
    return {"section": section, **latest, "value": effective(section, stored, broker["country"]), "stored": stored}


def read(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, section: str) -> dict[str, Any]:
    """The section as the readers use it now (``value``, defaults filled), what is stored, and its version."""
    broker = people.broker(cur, who, broker_id)
    return _state(cur, broker, _section(section))


def read_all(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int) -> list[dict[str, Any]]:
    broker = people.broker(cur, who, broker_id)
    return [_state(cur, broker, section) for section in SECTIONS]


def _occupied(cur: psycopg2.extensions.cursor, broker_id: int) -> dict[str, int]:
    cur.execute("""SELECT st.stage, count(*) FROM leadflow.lead_stages st JOIN leadflow.leads l USING (lead_id)
                   WHERE st.broker_id = %s AND l.merged_into IS NULL GROUP BY st.stage""", (broker_id,))
    return {str(stage): int(n) for stage, n in cur.fetchall()}


def _write(cur: psycopg2.extensions.cursor, who: Principal, broker: dict[str, Any], section: str, value: Any,
           based_on: int | None, reverted_from: int | None = None) -> dict[str, Any]:
    broker_id = broker["broker_id"]
    if section == "pipeline":
        # Taken before the row lock, in the order the stages run takes it: no run moves a lead into a stage
        # between the count of leads per stage below and the commit.
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (STAGES_LOCK,))
    cur.execute("INSERT INTO leadflow.broker_settings (broker_id) VALUES (%s) ON CONFLICT DO NOTHING", (broker_id,))
    current = _stored(cur, broker_id, section, lock=True)
    latest = _latest(cur, broker_id, section)
    version = latest["version"] if latest else 1
    if based_on is not None and based_on != version:
        raise Conflict(f"{section}: version {version} was saved after version {based_on} you started from; "
                       "reload to see it, then make your change again", "based_on")
    try:
        new = validate(section, value, country=broker["country"], current=current,
                       occupied=_occupied(cur, broker_id) if section == "pipeline" else None)
    except SettingsError as exc:
        raise SettingsInvalid(exc) from exc
    if new == current:
        return _state(cur, broker, section)  # nothing changed: no version, no audit entry
    if latest is None:
        cur.execute("""INSERT INTO leadflow.broker_settings_versions (broker_id, section, version, value)
                       VALUES (%s, %s, 1, %s)""", (broker_id, section, json.dumps(current)))
    cur.execute(f"UPDATE leadflow.broker_settings SET {section} = %s WHERE broker_id = %s",
                (json.dumps(new), broker_id))
    cur.execute("""INSERT INTO leadflow.broker_settings_versions (broker_id, section, version, value, changed_by,
                                                                  reverted_from)
                   VALUES (%s, %s, %s, %s, %s, %s)""",
                (broker_id, section, version + 1, json.dumps(new), who.user_id, reverted_from))
    audit.record(cur, broker_id, who.user_id, f"settings.{section}" + (".revert" if reverted_from else ""),
                 {"version": version, "value": current},
                 {"version": version + 1, "value": new, **({"reverted_from": reverted_from} if reverted_from else {})})
    return _state(cur, broker, section)


def save(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, section: str, value: Any,
         based_on: int) -> dict[str, Any]:
    """Validate and save a section (a new version, audited); ``based_on`` is the version the change started
    from (409 when another was saved since). The same value again saves nothing."""
    broker = people.broker(cur, who, broker_id)
    return _write(cur, who, broker, _section(section), value, based_on)


def revert(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, section: str, version: int,
           based_on: int | None = None) -> dict[str, Any]:
    """Make version ``version``'s value current again, as a new version; validated again (a pipeline that
    would now send leads back is refused like any other save)."""
    broker = people.broker(cur, who, broker_id)
    _section(section)
    cur.execute("""SELECT value FROM leadflow.broker_settings_versions
                   WHERE broker_id = %s AND section = %s AND version = %s""", (broker_id, section, version))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"{section} has no version {version}", "version")
    return _write(cur, who, broker, section, dict(row[0]), based_on, reverted_from=version)


def versions(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, section: str) -> list[dict[str, Any]]:
    """Every version, newest first: who saved it and when, which it reverted to, and what it changed (each
    field's value before and after, defaults filled) from the version before it."""
    broker = people.broker(cur, who, broker_id)
    _section(section)
    cur.execute("""SELECT v.version, v.value, v.changed_at, v.changed_by, u.display_name, u.email, v.reverted_from
                   FROM leadflow.broker_settings_versions v LEFT JOIN leadflow.users u ON u.user_id = v.changed_by
                   WHERE v.broker_id = %s AND v.section = %s ORDER BY v.version""", (broker_id, section))
    found: list[dict[str, Any]] = []
    before: dict[str, Any] | None = None
    for version, value, changed_at, changed_by, name, email, reverted_from in cur.fetchall():
        shown = effective(section, value, broker["country"])
        found.append({"version": int(version), "value": shown, "stored": value, "changed_at": _when(changed_at),
                      "changed_by": changed_by, "changed_by_name": name, "changed_by_email": email,
                      "reverted_from": reverted_from, "changes": [] if before is None else diff(before, shown)})
        before = shown
    if not found:
        found.append({"version": 1, "value": effective(section, _stored(cur, broker_id, section), broker["country"]),
                      "stored": _stored(cur, broker_id, section), "changed_at": None, "changed_by": None,
                      "changed_by_name": None, "changed_by_email": None, "reverted_from": None, "changes": []})
    return found[::-1]


def preview(cur: psycopg2.extensions.cursor, who: Principal, broker_id: int, value: Any) -> dict[str, Any]:
    """How many of the broker's leads are hot, warm and cold under its saved scoring and would be under
    ``value`` (a scoring section, validated as a save would be); nothing is written."""
    people.broker(cur, who, broker_id)
    try:
        stored = validate("scoring", value)
    except SettingsError as exc:
        raise SettingsInvalid(exc) from exc
    found = preview_temperatures(cur, broker_id, ScoringConfig.from_settings(stored))
    return {"now": found.now, "proposed": found.proposed, "changed": found.changed, "leads": found.leads}


def problems_of(exc: SettingsInvalid) -> list[dict[str, str]]:
    return [{"field": p.field, "message": p.message} for p in exc.problems]


def _when(value: Any) -> datetime:
    assert isinstance(value, datetime)
    return value


__all__ = ["Problem", "SettingsInvalid", "preview", "problems_of", "read", "read_all", "revert", "save", "versions"]
