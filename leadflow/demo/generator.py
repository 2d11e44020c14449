"""A realistic stream of provider webhooks: Spanish and English leads on every channel.

Deterministic for a seed, so rerunning the demo sends the same provider ids and the landing
absorbs them as duplicates. The output is a list of ``Webhook`` (channel + provider payload),
in the order a provider would deliver them; ``leadflow.demo.webhooks`` signs and sends them.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

FOLLOW_UP_CALL_RATE = 0.2
# How contacts found the agency: a Click-to-WhatsApp ad (the first message carries its referral) or a
# Telegram deep link from a listing portal (the chat opens with "/start <source>").
AD_RATE = 0.35
LINK_RATE = 0.3
CHANNEL_WEIGHTS = {"whatsapp": 40, "telegram": 25, "vapi": 12, "bland": 10, "form": 13}

FIRST_NAMES = {
    "es": ["Camila", "Matías", "Valentina", "Benjamín", "Sofía", "Joaquín", "Fernanda", "Diego", "Javiera",
           "Tomás", "Isidora", "Martín", "Catalina", "Lucas", "Daniela", "Ximena", "Santiago", "Lucía",
           "Alejandro", "Guadalupe", "Rodrigo", "Florencia", "Agustín", "Paula"],
    "en": ["Emily", "James", "Olivia", "Michael", "Ava", "Daniel", "Grace", "Ryan", "Chloe", "Ethan"],
}
LAST_NAMES = ["González", "Muñoz", "Rojas", "Díaz", "Pérez", "Soto", "Contreras", "Silva", "Martínez",
              "Sepúlveda", "Hernández", "López", "García", "Ramírez", "Fernández", "Smith", "Johnson", "Brown"]

MARKETS: dict[str, dict[str, Any]] = {
    "CL": {
        "phone": lambda r: f"+569{r.randint(40000000, 99999999)}",
        "places": ["Providencia", "Ñuñoa", "Las Condes", "Vitacura", "La Florida", "Maipú", "Santiago Centro",
                   "La Reina", "Viña del Mar", "Concepción"],
        "buy": ["{n}.{m:03d} UF", "entre {n}.000 y {n2}.000 UF", "hasta {n}.500 UF", "{mm} millones"],
        "rent": ["{l} lucas", "hasta {l} mil pesos", "arriendo hasta {l} mil", "{l}.000 CLP"],
        "finance": ["tengo crédito hipotecario preaprobado", "necesito crédito hipotecario", "pago al contado",
                    "tengo el pie del 20%", "postulo con subsidio DS1", "tengo {p} UF de pie"],
        "home": ["depto", "departamento", "casa", "dpto"],
    },
    "MX": {
        "phone": lambda r: f"+5255{r.randint(10000000, 99999999)}",
        "places": ["Polanco", "Condesa", "Roma Norte", "Del Valle", "Coyoacán", "Santa Fe", "Narvarte",
                   "Guadalajara", "Monterrey", "Querétaro"],
        "buy": ["{mx} millones de pesos", "hasta {mx} millones MXN", "USD {k}k", "alrededor de {mx}.5 millones"],
        "rent": ["{r} mil pesos al mes", "hasta {r},000 MXN de renta", "renta máxima {r} mil"],
        "finance": ["tengo crédito Infonavit", "crédito bancario preaprobado", "pago de contado",
                    "necesito financiamiento", "uso mi Fovissste"],
        "home": ["depa", "departamento", "casa", "terreno"],
    },
}

OPENERS_ES = ["Hola, vi el aviso en el portal", "Buenas tardes, consulta por la propiedad",
              "Hola! me interesa un {home} en {place}", "Hola, estoy buscando {home}",
              "Buenos días, quiero información", "Hola 👋 sigue disponible?"]
OPENERS_EN = ["Hi, I saw your listing", "Hello, I'm looking for a place in {place}",
              "Hi there, is the apartment still available?"]
AGENT_ES = ["¡Hola {name}! Gracias por escribirnos. ¿Buscas comprar o arrendar?",
            "Perfecto. ¿En qué comuna o sector te interesa?", "¿Cuántos dormitorios necesitas?",
            "¿Cuál es tu presupuesto aproximado?", "¿Cómo piensas financiarlo?",
            "Genial, ¿te acomoda agendar una visita esta semana?", "Te envío opciones por acá 🙂"]
AGENT_EN = ["Hi {name}! Thanks for reaching out. Are you looking to buy or rent?",
            "Great. Which neighbourhood?", "How many bedrooms?", "What's your budget?",
            "Would you like to schedule a visit?"]
LEAD_ES = {
    "buy": ["Quiero comprar un {home} en {place}", "Busco {home} de {b} dormitorios para comprar",
            "Mi presupuesto es {budget}", "{finance}", "Me interesa {place} o alrededores",
            "Sería para mudarnos en unos {t} meses", "{b}d{ba}b idealmente con estacionamiento",
            "Me llamo {name}, mi correo es {email}", "Sí, el sábado me acomoda"],
    "rent": ["Busco arriendo en {place}", "Necesito {home} de {b} dorm para arrendar", "Puedo pagar {rent}",
             "Tengo mascota, ¿se aceptan?", "Me cambio en {t} meses", "Mi sueldo líquido es {income}"],
    "invest": ["Busco algo para invertir en {place}", "Quiero {home} para arrendar, {budget}", "{finance}",
               "¿Qué rentabilidad tienen en {place}?"],
}
LEAD_EN = {
    "buy": ["I want to buy a {b} bedroom apartment in {place}", "My budget is around {budget}", "{finance_en}",
            "We plan to move in {t} months", "My email is {email}"],
    "rent": ["Looking to rent in {place}", "Up to {rent} per month", "We need {b} bedrooms"],
    "invest": ["Looking for an investment property in {place}", "Budget {budget}, cash buyer"],
}
FINANCE_EN = ["mortgage pre-approved", "I'll pay cash", "I need a mortgage"]


@dataclass(frozen=True)
class Webhook:
    """One provider delivery: which channel's route, and the JSON payload the provider would post."""

    broker_id: int
    channel: str
    payload: dict[str, Any]
    provider_id: str
    messages: int  # how many canonical messages it should land as
    malformed: bool = False


@dataclass
class Persona:
    name: str
    email: str
    phone: str
    lang: str
    operation: str
    place: str
    fields: dict[str, Any]


def _persona(rng: random.Random, country: str) -> Persona:
    market = MARKETS.get(country, MARKETS["CL"])
    lang = "en" if rng.random() < 0.15 else "es"
    first = rng.choice(FIRST_NAMES[lang])
    last = rng.choice(LAST_NAMES)
    slug = f"{first}.{last}".lower()
    for accented, plain in zip("áéíóúñ", "aeioun", strict=True):
        slug = slug.replace(accented, plain)
    place = rng.choice(market["places"])
    n = rng.randint(2, 9)
    fields = {
        "home": rng.choice(market["home"]), "place": place, "b": rng.randint(1, 4), "ba": rng.randint(1, 3),
        "t": rng.choice([1, 2, 3, 6, 12]), "name": first, "email": f"{slug}{rng.randint(1, 99)}@gmail.com",
        "budget": rng.choice(market["buy"]).format(n=n, n2=n + 1, m=rng.randint(0, 999), mm=rng.randint(90, 600),
                                                   mx=rng.randint(2, 12), k=rng.randint(150, 900)),
        "rent": rng.choice(market["rent"]).format(l=rng.randint(350, 1200), r=rng.randint(12, 60)),
        "finance": rng.choice(market["finance"]).format(p=rng.randint(300, 1500)),
        "finance_en": rng.choice(FINANCE_EN), "income": f"{rng.randint(8, 40) * 100} mil",
    }
    return Persona(name=f"{first} {last}", email=fields["email"], phone=market["phone"](rng), lang=lang,
                   operation=rng.choices(["buy", "rent", "invest"], [5, 4, 1])[0], place=place, fields=fields)


def _conversation(rng: random.Random, p: Persona) -> list[tuple[str, str]]:
    """(role, text) turns: the lead opens, the agent and the lead alternate."""
    openers, agent, lead = (OPENERS_ES, AGENT_ES, LEAD_ES) if p.lang == "es" else (OPENERS_EN, AGENT_EN, LEAD_EN)
    turns = [("lead", rng.choice(openers).format(**p.fields))]
    lead_lines = list(lead[p.operation])
    rng.shuffle(lead_lines)
    for i, line in enumerate(lead_lines[: rng.randint(2, len(lead_lines))]):
        turns.append(("agent", agent[min(i, len(agent) - 1)].format(**p.fields)))
        turns.append(("lead", line.format(**p.fields)))
    return turns


def generate(brokers: list[tuple[int, str]], contacts_per_broker: int, *, seed: int = 7,
             start: datetime | None = None, duplicate_rate: float = 0.02,
             malformed_rate: float = 0.01) -> list[Webhook]:
    """Webhooks for ``contacts_per_broker`` people per (broker_id, country) in ``brokers``."""
    rng = random.Random(seed)
    # Its own stream, so the sources do not change the rest of the generated data.
    source_rng = random.Random(seed * 7919)
    start = start or datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
    channels = list(CHANNEL_WEIGHTS)
    weights = list(CHANNEL_WEIGHTS.values())
    hooks: list[Webhook] = []
    update_id = 100_000
    for broker_index, (broker_id, country) in enumerate(brokers):
        for contact_index in range(contacts_per_broker):
            p = _persona(rng, country)
            when = start + timedelta(minutes=rng.randint(0, 60 * 24 * 21))
            turns = _conversation(rng, p)
            channel = rng.choices(channels, weights)[0]
            uid = f"{broker_index}-{contact_index}"
            if channel == "telegram":
                user_id = 700_000_000 + broker_index * 100_000 + contact_index
                if source_rng.random() < LINK_RATE:
                    turns = [("lead", "/start portal_inmobiliario"), *turns]
                for role, text in turns:
                    when += timedelta(minutes=rng.randint(1, 90))
                    if role != "lead":
                        continue  # Telegram webhooks carry only what the lead writes to the bot
                    update_id += 1
                    payload = _telegram(update_id, user_id, p, text, when)
                    hooks.append(Webhook(broker_id, "telegram", payload, str(update_id), 1))
            elif channel == "whatsapp":
                wa_id = p.phone.lstrip("+")
                from_ad = source_rng.random() < AD_RATE
                for i, (role, text) in enumerate(turns):
                    when += timedelta(minutes=rng.randint(1, 120))
                    mid = f"wamid.{uuid.UUID(int=rng.getrandbits(128)).hex}"
                    if role == "lead":
                        payload = _whatsapp_message(wa_id, p.name, mid, text, when, from_ad=from_ad and i == 0)
                        hooks.append(Webhook(broker_id, "whatsapp", payload, mid, 1))
                    elif i < 4:
                        status = rng.choice(["delivered", "read"])
                        hooks.append(Webhook(broker_id, "whatsapp", _whatsapp_status(wa_id, mid, status, when), mid, 1))
            elif channel in ("vapi", "bland"):
                call_id = str(uuid.UUID(int=rng.getrandbits(128)))
                builder = _vapi if channel == "vapi" else _bland
                hooks.append(Webhook(broker_id, channel, builder(call_id, p, turns, when), call_id, len(turns)))
            else:
                sid = f"form-{uid}"
                hooks.append(Webhook(broker_id, "form", _form(sid, p, turns[0][1], when), sid, 1))
            if channel in ("whatsapp", "form") and rng.random() < FOLLOW_UP_CALL_RATE:
                # The agency calls back the number the lead wrote from: the same person on a second channel,
                # which identity resolution must merge into one lead.
                call_id = str(uuid.UUID(int=rng.getrandbits(128)))
                follow_up = _follow_up(rng, p)
                when += timedelta(hours=rng.randint(2, 48))
                builder = _vapi if rng.random() < 0.5 else _bland
                call_channel = "vapi" if builder is _vapi else "bland"
                hooks.append(Webhook(broker_id, call_channel, builder(call_id, p, follow_up, when), call_id,
                                     len(follow_up)))
    extras: list[Webhook] = []
    for hook in hooks:
        if rng.random() < duplicate_rate:
            extras.append(hook)  # the provider delivers it again
        if rng.random() < malformed_rate:
            extras.append(Webhook(hook.broker_id, hook.channel, _break(hook.payload, hook.channel), hook.provider_id, 0,
                                  malformed=True))
    hooks.extend(extras)  # redeliveries and broken payloads arrive after the originals
    return hooks


def _follow_up(rng: random.Random, p: Persona) -> list[tuple[str, str]]:
    """A short call from the agency after a chat or a form: it confirms a fact or two."""
    if p.lang == "en":
        return [("agent", f"Hi {p.fields['name']}, this is the agency calling about your enquiry."),
                ("lead", rng.choice(["Yes, thanks for calling.", "Hi, yes."])),
                ("agent", "When would you like to move?"),
                ("lead", f"In about {p.fields['t']} months, {p.fields['finance_en']}.")]
    return [("agent", f"Hola {p.fields['name']}, le llamo de la corredora por su consulta."),
            ("lead", rng.choice(["Sí, hola, gracias por llamar.", "Hola, sí, dígame."])),
            ("agent", "¿Para cuándo necesita la propiedad?"),
            ("lead", f"En unos {p.fields['t']} meses, y {p.fields['finance']}.")]


def _break(payload: dict[str, Any], channel: str) -> dict[str, Any]:
    """An authentic but malformed delivery, as providers occasionally send after a schema change."""
    broken = {k: v for k, v in payload.items() if k not in ("update_id", "entry", "message", "call_id", "phone",
                                                            "email")}
    broken["unexpected"] = f"{channel} payload missing its required fields"
    # Each sample is its own delivery (dead letters are kept once per distinct body): say which it broke.
    broken["broken_delivery"] = hashlib.sha256(repr(sorted(payload.items())).encode()).hexdigest()[:16]
    return broken


def _telegram(update_id: int, user_id: int, p: Persona, text: str, when: datetime) -> dict[str, Any]:
    first, _, last = p.name.partition(" ")
    return {"update_id": update_id, "message": {
        "message_id": update_id % 100_000, "date": int(when.timestamp()), "text": text,
        "from": {"id": user_id, "is_bot": False, "first_name": first, "last_name": last,
                 "language_code": p.lang},
        "chat": {"id": user_id, "type": "private", "first_name": first}}}


def _whatsapp_envelope(value: dict[str, Any]) -> dict[str, Any]:
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550001111", "phone_number_id": "106540352242922"}, **value}
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}]}


def _whatsapp_message(wa_id: str, name: str, mid: str, text: str, when: datetime,
                      from_ad: bool = False) -> dict[str, Any]:
    message: dict[str, Any] = {"from": wa_id, "id": mid, "timestamp": str(int(when.timestamp())), "type": "text",
                               "text": {"body": text}}
    if from_ad:
        message["referral"] = {"source_url": "https://fb.me/leadflow-demo", "source_type": "ad",
                               "source_id": "120208000000000", "headline": "Departamentos en venta y arriendo"}
    return _whatsapp_envelope({"contacts": [{"profile": {"name": name}, "wa_id": wa_id}], "messages": [message]})


def _whatsapp_status(wa_id: str, mid: str, status: str, when: datetime) -> dict[str, Any]:
    return _whatsapp_envelope({"statuses": [{"id": mid, "status": status, "timestamp": str(int(when.timestamp())),
                                             "recipient_id": wa_id}]})


def _vapi(call_id: str, p: Persona, turns: list[tuple[str, str]], when: datetime) -> dict[str, Any]:
    ms = int(when.timestamp() * 1000)
    messages = [{"role": "system", "message": "You are a real-estate assistant.", "time": ms}]
    messages += [{"role": "user" if role == "lead" else "bot", "message": text, "time": ms + 9000 * (i + 1),
                  "secondsFromStart": 9 * (i + 1)} for i, (role, text) in enumerate(turns)]
    return {"message": {
        "type": "end-of-call-report", "endedReason": "customer-ended-call",
        "startedAt": when.isoformat().replace("+00:00", "Z"),
        "endedAt": (when + timedelta(seconds=9 * (len(turns) + 1))).isoformat().replace("+00:00", "Z"),
        "call": {"id": call_id, "type": "inboundPhoneCall", "customer": {"number": p.phone}},
        "artifact": {"messages": messages,
                     "transcript": "\n".join(f"{'User' if r == 'lead' else 'AI'}: {t}" for r, t in turns)},
        "summary": f"Lead interested in {p.operation} in {p.place}."}}


def _bland(call_id: str, p: Persona, turns: list[tuple[str, str]], when: datetime) -> dict[str, Any]:
    return {
        "call_id": call_id, "c_id": call_id, "inbound": False, "to": p.phone, "from": "+15550002222",
        "created_at": when.isoformat(), "completed": True, "call_length": round(len(turns) * 0.15, 2),
        "variables": {"name": p.name},
        "transcripts": [{"id": i, "user": "user" if role == "lead" else "assistant", "text": text,
                         "created_at": (when + timedelta(seconds=8 * i)).isoformat()}
                        for i, (role, text) in enumerate(turns)],
        "concatenated_transcript": "\n".join(f"{'user' if r == 'lead' else 'assistant'}: {t}" for r, t in turns),
    }


def _form(sid: str, p: Persona, text: str, when: datetime) -> dict[str, Any]:
    return {"submission_id": sid, "name": p.name, "phone": p.phone, "email": p.email, "message": text,
            "source": "portalinmobiliario", "submitted_at": when.isoformat()}
