"""The demo's live part: a few people write to the demo brokers and the lead agent answers them.

Each person writes through the real, signed webhooks of the ingest API; the agent (the same
``LeadAgent`` that ``leadflow agent run`` runs) reads the topic, decides and sends through the
channel senders to a stand-in provider on loopback; the person reads the reply and answers what was
asked. The transcript is printed as a chat, and every message lands afterwards like any other.

The people, their chat ids and their messages' ids are the same on every run: a second `make demo`
finds their conversations already answered, prints them from what the agent recorded and sends
nothing (a rerun changes no row and no figure).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from leadflow.agent.notify import Notifier
from leadflow.agent.store import save_agent_settings
from leadflow.agent.stream import LeadAgent
from leadflow.brokers import Broker
from leadflow.config import Settings
from leadflow.credentials import StoredCredentials
from leadflow.db.connection import transaction
from leadflow.demo.provider import StandInProvider
from leadflow.demo.webhooks import signed
from leadflow.outbound.senders import TelegramSender, WhatsAppSender

AGENT_SETTINGS: dict[str, dict[str, Any]] = {
    "CL": {"enabled": True, "persona_name": "Vale", "facts": {
        "commission": "2% + IVA del valor de venta, solo si se concreta", "areas": "Providencia, Ñuñoa y Las Condes",
        "office_hours": "lunes a viernes de 9 a 18 h"}},
    "MX": {"enabled": True, "persona_name": "Sofía", "facts": {
        "commission": "un mes de renta al cerrar el contrato", "areas": "Polanco, Condesa y Roma"}},
}


@dataclass(frozen=True)
class Person:
    name: str
    country: str
    channel: str
    opening: str
    answers: dict[str, str]  # what they say when asked for a slot, or to a visit proposal


PEOPLE = (
    Person("Camila Rojas", "CL", "telegram",
           "Hola! busco depto para comprar en Ñuñoa, tengo crédito preaprobado y hasta 5.200 UF",
           {"bedrooms": "2", "timeline": "en 3 meses", "propose_visit": "sí, el sábado en la mañana me sirve",
            "name": "Camila Rojas", "contact": "camila.rojas@correo.cl", "visit_time": "el sábado a las 11"}),
    Person("Luis Hernández", "MX", "whatsapp",
           "Hola, necesito rentar un depa en la Condesa urgente, hasta 25 mil pesos al mes",
           {"bedrooms": "2 recámaras", "propose_visit": "va, me late", "name": "Luis Hernández",
            "visit_time": "mañana a las 5"}),
    Person("Pedro Soto", "CL", "telegram", "hola quiero hablar con un ejecutivo, no con un bot", {}),
)


def _user(index: int, person: Person) -> str:
    """The person's chat id (Telegram) or number (WhatsApp): fixed, so a rerun is the same conversation."""
    return str(880_000_000 + index) if person.channel == "telegram" else f"5215588{index:06d}"


def _message_id(user: str, turn: int) -> int:
    return int(user[-6:]) * 100 + turn + 700_000_000


def _decision(settings: Settings, broker_id: int, contact: str, nth: int) -> tuple[str, str | None]:
    for _ in range(500):
        with transaction(settings.database_url) as conn, conn.cursor() as cur:
            cur.execute("""SELECT action, asks FROM leadflow.agent_replies WHERE broker_id = %s AND contact_key = %s
                           AND status = 'sent' ORDER BY reply_id""", (broker_id, contact))
            rows = cur.fetchall()
        if len(rows) >= nth:
            return rows[nth - 1][0], rows[nth - 1][1]
        time.sleep(0.02)
    raise RuntimeError(f"the agent's reply {nth} to {contact} was never recorded")


def _say(http: httpx.Client, ingest_url: str, broker: Broker, person: Person, user: str, text: str,
         turn: int) -> None:
    n = _message_id(user, turn)
    epoch = int(datetime.now(UTC).timestamp())
    if person.channel == "telegram":
        payload: dict[str, Any] = {"update_id": n, "message": {
            "message_id": n, "date": epoch, "text": text, "chat": {"id": int(user), "type": "private"},
            "from": {"id": int(user), "is_bot": False, "first_name": person.name.split()[0]}}}
    else:
        payload = {"object": "whatsapp_business_account", "entry": [{"id": "demo", "changes": [{
            "field": "messages", "value": {
                "messaging_product": "whatsapp", "metadata": {"phone_number_id": "demo"},
                "contacts": [{"profile": {"name": person.name}, "wa_id": user}],
                "messages": [{"from": user, "id": f"wamid.demo{n}", "timestamp": str(epoch), "type": "text",
                              "text": {"body": text}}]}}]}]}
    path, headers, body = signed(person.channel, broker, payload)
    response = http.post(ingest_url + path, content=body, headers=headers)
    response.raise_for_status()


def _converse(settings: Settings, http: httpx.Client, ingest_url: str, provider: StandInProvider, broker: Broker,
              person: Person, user: str, max_turns: int = 10) -> Transcript:
    chat = [(person.name, person.opening)]
    _say(http, ingest_url, broker, person, user, person.opening, 0)
    for turn in range(1, max_turns + 1):
        deadline = time.monotonic() + 15
        while len(provider.to(person.channel, user)) < turn and time.monotonic() < deadline:
            time.sleep(0.02)
        got = provider.to(person.channel, user)
        if len(got) < turn:
            chat.append(("(agent)", "— no reply within 15 s —"))
            break
        chat.append(("agent", got[turn - 1]))
        action, asks = _decision(settings, broker.broker_id, user, turn)
        answer = person.answers.get(asks or action)
        if action in ("close", "handoff") or answer is None:
            break
        chat.append((person.name, answer))
        _say(http, ingest_url, broker, person, user, answer, turn)
    return chat


Transcript = list[tuple[str, str]]


def run_conversations(settings: Settings, brokers: list[Broker], ingest_url: str) -> list[tuple[Person, Transcript]]:
    """Turn the demo brokers' agents on, run the scripted people against the agent, return the transcripts."""
    by_country = {b.country: b for b in brokers}
    for country, agent_settings in AGENT_SETTINGS.items():
        if country in by_country:
            save_agent_settings(settings.database_url, by_country[country].slug, agent_settings)
    provider = StandInProvider().start()
    stored = StoredCredentials.from_settings(settings)
    agent = LeadAgent(settings, {"telegram": TelegramSender(provider.url, credentials=stored),
                                 "whatsapp": WhatsAppSender(provider.url, credentials=stored)},
                      notifier=Notifier(provider.url, credentials=stored), burst_s=0.3, max_wait_s=1.0)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        if not agent.ready.wait(60):
            raise RuntimeError("the lead agent did not start")
        out: list[tuple[Person, Transcript]] = []
        with httpx.Client(timeout=15) as http:
            for index, person in enumerate(PEOPLE):
                if person.country not in by_country:
                    continue
                broker, user = by_country[person.country], _user(index, person)
                earlier = recorded(settings, broker.broker_id, user, person.name)
                out.append((person, earlier or _converse(settings, http, ingest_url, provider, broker, person, user)))
        return out
    finally:
        stop.set()
        thread.join(30)
        provider.stop()


def recorded(settings: Settings, broker_id: int, user: str, name: str) -> Transcript | None:
    """The conversation as the agent recorded it in an earlier run (what it heard, what it said); None if new."""
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("""SELECT heard, body, status FROM leadflow.agent_replies WHERE broker_id = %s AND contact_key = %s
                       ORDER BY reply_id""", (broker_id, user))
        rows = cur.fetchall()
    if not rows:
        return None
    chat: Transcript = [("", "(answered in an earlier run: shown as recorded, nothing sent again)")]
    for heard, body, status in rows:
        chat += [(name, m["text"]) for m in heard or ()]
        if status == "sent" and body:
            chat.append(("agent", body))
    return chat


def print_transcripts(transcripts: list[tuple[Person, Transcript]]) -> None:
    for person, chat in transcripts:
        print(f"\n— {person.name} on {person.channel} —")
        for who, text in chat:
            print(f"  {who:>16}: {text}")
