"""The workspace's visits: the calendar's and the lead page's reads, and a person's bookings and status changes.

Everything runs on the caller's scoped cursor (``reports_api.scope``), so row security decides what a person
sees (an AGENT: the visits of its leads and its own visits) and what it may write; the core
(``leadflow.appointments.store``) does the booking, and its exclusion constraint refuses a double booking
however the slot was picked. A person's changes are signed with their id (``appointment_events``, the stage
moves that follow, ``audit_log``). Refusals are ``db.NotFound`` / ``db.Conflict`` / ``db.Invalid`` with a
message a person can act on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg2.extensions

from leadflow.appointments import store
from leadflow.appointments.rules import Kind
from leadflow.appointments.slots import Slot
from leadflow.leads.stages import Pipeline, stage_moment
from reports_api.security import Principal
from reports_api.workspace import db

Cursor = psycopg2.extensions.cursor
PersonStatus = Literal["confirmed", "completed", "no_show", "cancelled"]
STATUS_LABELS = {"proposed": "propuesta", "confirmed": "confirmada", "completed": "realizada",
                 "no_show": "no asistió", "cancelled": "cancelada", "rescheduled": "reagendada"}
KIND_LABELS = {"in_person": "presencial", "virtual": "virtual"}
CALENDAR_LABELS = {"pending": "por sincronizar", "synced": "sincronizada", "failed": "error de sincronización",
                   "not_connected": "sin Google Calendar"}
ACTOR_LABELS = {"lead": "el lead", "bot": "el bot", "campaign": "una campaña", "person": "una persona",
                "system": "el sistema"}
SHORT_DAYS = ("lun", "mar", "mié", "jue", "vie", "sáb", "dom")
# What the pages' templates name these by.
LABELS: dict[str, Any] = {"STATUS_LABELS": STATUS_LABELS, "KIND_LABELS": KIND_LABELS,
                          "CALENDAR_LABELS": CALENDAR_LABELS, "ACTOR_LABELS": ACTOR_LABELS, "SHORT_DAYS": SHORT_DAYS}
# What a refusal says, in the pages and the JSON alike (a person reads both); the code travels in a page's URL.
MESSAGES = {
    "taken": "Ese horario ya está tomado: la persona tiene otra visita a esa hora (o en su margen entre visitas). "
             "No se agendó nada; elige otro horario.",
    "not_free": "Ese horario ya no está libre (se tomó mientras tanto, está fuera del horario o ya pasó). "
                "No se agendó nada; elige otro.",
    "not_started": "La visita aún no empieza: se marca realizada o no asistida desde su hora de inicio.",
    "transition": "La visita no admite ese cambio en su estado actual (una cancelada o reagendada ya no cambia).",
    "same_status": "La visita ya estaba en ese estado: no se cambió nada.",
    "virtual_off": "Esta corredora no hace visitas virtuales (sus reglas de visitas).",
    "admins_only": "Solo un administrador agenda fuera de los horarios libres.",
    "no_offset": "La hora de inicio necesita su zona horaria.",
    "not_person": "Esa persona no es una persona activa de la corredora.",
    "not_found": "Esa visita no existe o no la puedes modificar.",
    "bad_time": "Escribe una fecha y una hora válidas.",
    "no_slot": "Elige un horario libre (o, si eres administrador, escribe una fecha y hora).",
}


class Conflict(db.Conflict):
    """The time is taken or the visit's status does not allow the change (409); ``code`` names which."""

    def __init__(self, code: str) -> None:
        super().__init__(MESSAGES[code])
        self.code = code


class Invalid(db.Invalid):
    """The booking is not allowed as asked (422); ``code`` names why."""

    def __init__(self, code: str) -> None:
        super().__init__(MESSAGES[code])
        self.code = code


class NotFound(db.NotFound):
    code = "not_found"

    def __init__(self) -> None:
        super().__init__(MESSAGES["not_found"])
MAX_ADDRESS = 300
# Visits are booked and looked at within these years: far dates would only overflow the arithmetic.
YEARS = range(2000, 2101)
MAX_NOTE = 500

_COLUMNS = """a.appointment_id, a.lead_id, l.display_name, a.agent_id, u.display_name, a.kind, a.address,
              a.starts_at, a.ends_at, a.timezone, a.status, a.source, a.channel, a.meet_link, a.calendar_state,
              a.calendar_error, a.rescheduled_from, a.created_at"""
_FROM = """leadflow.appointments a LEFT JOIN leadflow.leads l ON l.lead_id = a.lead_id
           LEFT JOIN leadflow.users u ON u.user_id = a.agent_id"""
_KEYS = ("appointment_id", "lead_id", "lead_name", "agent_id", "agent_name", "kind", "address", "starts_at",
         "ends_at", "timezone", "status", "source", "channel", "meet_link", "calendar_state", "calendar_error",
         "rescheduled_from", "created_at")


def now_of(request: Any) -> datetime:
    """The app's clock (``app.state.clock``; tests fix it), else the real one."""
    clock: Callable[[], datetime] | None = getattr(request.app.state, "clock", None)
    return clock() if clock is not None else datetime.now(UTC)


def _rows(cur: Cursor) -> list[dict[str, Any]]:
    return [dict(zip(_KEYS, row, strict=True)) for row in cur.fetchall()]


def listing(cur: Cursor, broker_id: int, start: datetime, end: datetime,
            agent_id: int | None = None) -> list[dict[str, Any]]:
    """The visits starting in [start, end), earliest first; ``agent_id``: one person's. Row security leaves an
    AGENT its leads' visits and its own."""
    cur.execute(f"""SELECT {_COLUMNS} FROM {_FROM}
                    WHERE a.broker_id = %s AND a.starts_at >= %s AND a.starts_at < %s
                      AND (%s::bigint IS NULL OR a.agent_id = %s)
                    ORDER BY a.starts_at, a.appointment_id""", (broker_id, start, end, agent_id, agent_id))
    return _rows(cur)


def of_lead(cur: Cursor, broker_id: int, lead_id: int) -> list[dict[str, Any]]:
    """The lead's visits, newest first, each with its history (who changed what, when)."""
    cur.execute(f"""SELECT {_COLUMNS} FROM {_FROM} WHERE a.broker_id = %s AND a.lead_id = %s
                    ORDER BY a.starts_at DESC, a.appointment_id DESC""", (broker_id, lead_id))
    found = _rows(cur)
    history = events(cur, broker_id, [a["appointment_id"] for a in found])
    return [{**a, "events": history.get(a["appointment_id"], [])} for a in found]


def one(cur: Cursor, broker_id: int, appointment_id: int) -> dict[str, Any]:
    cur.execute(f"SELECT {_COLUMNS} FROM {_FROM} WHERE a.broker_id = %s AND a.appointment_id = %s",
                (broker_id, appointment_id))
    found = _rows(cur)
    if not found:
        raise NotFound()
    return {**found[0], "events": events(cur, broker_id, [appointment_id]).get(appointment_id, [])}


def events(cur: Cursor, broker_id: int, appointment_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    if not appointment_ids:
        return {}
    cur.execute("""SELECT e.appointment_id, e.from_status, e.to_status, e.actor, e.user_id, u.display_name, e.note,
                          e.at
                   FROM leadflow.appointment_events e LEFT JOIN leadflow.users u ON u.user_id = e.user_id
                   WHERE e.broker_id = %s AND e.appointment_id = ANY(%s) ORDER BY e.event_id""",
                (broker_id, appointment_ids))
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for aid, before, after, actor, user_id, name, note, at in cur.fetchall():
        found[int(aid)].append({"from_status": before, "to_status": after, "actor": actor, "user_id": user_id,
                                "by_name": name, "note": note, "at": at})
    return found


def days_of(cur: Cursor, broker_id: int, now: datetime, days: int) -> list[dict[str, Any]]:
    """The free slots of the next ``days`` days grouped by local day, for a person to pick one."""
    _, timezone = store.broker_rules(cur, broker_id)
    zone = ZoneInfo(timezone)
    grouped: dict[date, list[Slot]] = defaultdict(list)
    for slot in store.available(cur, broker_id, now, days=days):
        grouped[slot.start.astimezone(zone).date()].append(slot)
    return [{"day": day, "slots": slots} for day, slots in sorted(grouped.items())]


# --- writes ---------------------------------------------------------------------------------------------------

def person_mover(who: Principal) -> store.StageMover:
    """Moves the lead forward as ``store`` asks (confirmed → agendado, completed → seguimiento), signed with the
    person whose change caused it: a manual stage event, as a person's move from the lead page is."""

    def move(cur: Cursor, broker_id: int, lead_id: int, target: str, pipeline: Pipeline, now: datetime,
             reason: str) -> str | None:
        cur.execute("""SELECT st.stage, st.entered_at,
                              (SELECT max(e.sequence) FROM leadflow.stage_events e
                               WHERE e.lead_id = st.lead_id AND e.occurred_at = st.entered_at)
                       FROM leadflow.lead_stages st WHERE st.lead_id = %s FOR UPDATE""", (lead_id,))
        stage, entered_at, last_sequence = cur.fetchone() or (None, None, None)
        if pipeline.position(target) <= pipeline.position(stage):
            return None  # a visit never sends a lead back (a lead already past it stays)
        moved_at, sequence = stage_moment(now, entered_at, last_sequence)
        cur.execute("""INSERT INTO leadflow.stage_events (broker_id, lead_id, from_stage, to_stage, occurred_at,
                                                          reason, automatic, sequence, moved_by)
                       VALUES (%s, %s, %s, %s, %s, %s, false, %s, %s)""",
                    (broker_id, lead_id, stage, target, moved_at, reason, sequence, who.user_id))
        cur.execute("""INSERT INTO leadflow.lead_stages (lead_id, broker_id, stage, entered_at, evaluated_at)
                       VALUES (%s, %s, %s, %s, %s) ON CONFLICT (lead_id) DO UPDATE SET stage = EXCLUDED.stage,
                       entered_at = EXCLUDED.entered_at, evaluated_at = EXCLUDED.evaluated_at, stalled = false,
                       stalled_days = NULL""", (lead_id, broker_id, target, moved_at, now))
        db.audit(cur, broker_id, "stage.move", lead_id, {"stage": stage, "entered_at": entered_at},
                 {"stage": target, "entered_at": moved_at, "reason": reason})
        return stage or ""

    return move


def _agent(cur: Cursor, broker_id: int, agent_id: int | None) -> None:
    if agent_id is None:
        return
    cur.execute("""SELECT 1 FROM leadflow.users WHERE user_id = %s AND broker_id = %s AND NOT disabled
                   AND role IN ('ADMIN', 'AGENT')""", (agent_id, broker_id))
    if cur.fetchone() is None:
        raise Invalid("not_person")


def _place(cur: Cursor, broker_id: int, kind: Kind | None, address: str | None) -> tuple[Kind, str | None]:
    rules, _ = store.broker_rules(cur, broker_id)
    chosen: Kind = kind or rules.default_kind
    if chosen == "virtual" and not rules.virtual_allowed:
        raise Invalid("virtual_off")
    place = db.clean_text(address, MAX_ADDRESS, "la dirección") if address and address.strip() else None
    return chosen, place


def _slot_at(cur: Cursor, broker_id: int, start: datetime, now: datetime, agent_id: int | None, *,
             ignore: int | None = None) -> Slot:
    """The free slot starting at ``start`` (with ``agent_id`` among its people when given); Conflict when the
    grid has none there any more."""
    zone = ZoneInfo(store.broker_rules(cur, broker_id)[1])
    day = start.astimezone(zone).date()
    for slot in store.available(cur, broker_id, now, days=1, first_day=day, ignore=ignore):
        if slot.start == start and (agent_id is None or agent_id in slot.agents):
            return slot if agent_id is None else Slot(slot.start, slot.end, (agent_id,))
    raise Conflict("not_free")


def book(cur: Cursor, who: Principal, broker_id: int, lead_id: int, start: datetime, now: datetime, *,
         agent_id: int | None = None, kind: Kind | None = None, address: str | None = None,
         status: Literal["proposed", "confirmed"] = "proposed", outside_grid: bool = False) -> dict[str, Any]:
    """A person books a visit for the lead: at a free slot of the grid, or (an ADMIN, ``outside_grid``) at any
    time, past ones included, which only the database's no-double-booking rule still checks."""
    if start.tzinfo is None:
        raise Invalid("no_offset")
    if start.year not in YEARS:
        raise Invalid("bad_time")
    if outside_grid and who.role == "AGENT":
        raise Invalid("admins_only")
    db._lead(cur, broker_id, lead_id)
    _agent(cur, broker_id, agent_id)
    chosen, place = _place(cur, broker_id, kind, address)
    if outside_grid:
        rules, _ = store.broker_rules(cur, broker_id)
        slot = Slot(start, start + timedelta(minutes=rules.visit_minutes), (agent_id,))
    else:
        slot = _slot_at(cur, broker_id, start, now, agent_id)
    booked = store.book(cur, broker_id, lead_id, slot, now, source="person", actor="person", user_id=who.user_id,
                        status=status, kind=chosen, address=place, agent_id=agent_id, check_free=not outside_grid,
                        mover=person_mover(who))
    if isinstance(booked, store.Taken):
        raise Conflict("taken")
    db.audit(cur, broker_id, "appointment.book", lead_id, None,
             {"appointment_id": booked.appointment_id, "starts_at": booked.starts_at, "agent_id": booked.agent_id,
              "status": booked.status, "kind": booked.kind, "outside_grid": outside_grid})
    return one(cur, broker_id, booked.appointment_id)


def _current(cur: Cursor, broker_id: int, appointment_id: int) -> store.Appointment:
    found = store.get(cur, broker_id, appointment_id)
    if found is None:
        raise NotFound()
    # Row security lets an AGENT see its own visit of a lead it may not see; changing it is the lead's owners'.
    db._lead(cur, broker_id, found.lead_id)
    return found


def set_status(cur: Cursor, who: Principal, broker_id: int, appointment_id: int, to: PersonStatus, now: datetime,
               note: str | None = None) -> dict[str, Any]:
    """Confirm, cancel, or mark held / missed (only once the visit has started), signed by the person."""
    current = _current(cur, broker_id, appointment_id)
    text = db.clean_text(note, MAX_NOTE, "la nota") if note and note.strip() else None
    if current.status == to:
        raise Conflict("same_status")
    if to not in store.TRANSITIONS[current.status]:
        raise Conflict("transition")
    if to in ("completed", "no_show") and current.starts_at > now:
        raise Conflict("not_started")
    try:
        changed = store.change_status(cur, broker_id, appointment_id, to, now, actor="person", user_id=who.user_id,
                                      note=text, mover=person_mover(who))
    except store.AppointmentError as exc:  # what the checks above did not foresee
        raise Conflict("transition") from exc
    db.audit(cur, broker_id, "appointment.status", current.lead_id,
             {"appointment_id": appointment_id, "status": current.status},
             {"appointment_id": appointment_id, "status": changed.status, **({"note": text} if text else {})})
    return one(cur, broker_id, appointment_id)


def reschedule(cur: Cursor, who: Principal, broker_id: int, appointment_id: int, start: datetime, now: datetime, *,
               outside_grid: bool = False) -> dict[str, Any]:
    """Move the visit to another free slot (an ADMIN: any time); the old one is kept as ``rescheduled``, the new
    one points back to it. Conflict, with the visit left where it was, when the time is taken."""
    if start.tzinfo is None:
        raise Invalid("no_offset")
    if start.year not in YEARS:
        raise Invalid("bad_time")
    if outside_grid and who.role == "AGENT":
        raise Invalid("admins_only")
    current = _current(cur, broker_id, appointment_id)
    if not current.active:
        raise Conflict("transition")
    if outside_grid:
        slot = Slot(start, start + (current.ends_at - current.starts_at), (current.agent_id,))
    else:
        slot = _slot_at(cur, broker_id, start, now, None, ignore=appointment_id)
        if current.agent_id in slot.agents:  # the same person keeps the visit when free
            slot = Slot(slot.start, slot.end, (current.agent_id,))
    try:
        moved = store.reschedule(cur, broker_id, appointment_id, slot, now, actor="person", user_id=who.user_id,
                                 check_free=not outside_grid, mover=person_mover(who))
    except store.AppointmentError as exc:  # what the checks above did not foresee
        raise Conflict("transition") from exc
    if isinstance(moved, store.Taken):
        raise Conflict("taken")
    db.audit(cur, broker_id, "appointment.reschedule", current.lead_id,
             {"appointment_id": appointment_id, "starts_at": current.starts_at},
             {"appointment_id": moved.appointment_id, "starts_at": moved.starts_at, "agent_id": moved.agent_id})
    return one(cur, broker_id, moved.appointment_id)
