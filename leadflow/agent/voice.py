"""How the bot sounds: the lead's language and register, each market's words, and the phrasebook.

The broker sets the language and tone; the lead's own way of writing wins where it is clear (an
English lead gets English; "usted"/"podría" gets usted; "vos"/"querés" gets voseo; a couple in
Spain writing "queremos" gets vosotros when the tone is friendly). Spanish templates are written
in the tú form with ``{token}`` slots that the register fills in. A phrase with variants picks one
from a stable hash, so replies vary a little and tests stay repeatable.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

import polars as pl

from leadflow.agent import words
from leadflow.agent.decision import Conversation
from leadflow.qualification.schema import Qualification
from leadflow.qualification.summary import PHRASES, money

Register = Literal["tu", "usted", "vos", "vosotros"]
_REGISTERS: tuple[Register, ...] = ("tu", "usted", "vos", "vosotros")

# tú form → (tú, usted, vos, vosotros)
CONJUGATION: dict[str, tuple[str, str, str, str]] = {
    "te": ("te", "le", "te", "os"),
    "tu": ("tu", "su", "tu", "vuestro"),
    "tus": ("tus", "sus", "tus", "vuestros"),
    "contigo": ("contigo", "con usted", "con vos", "con vosotros"),
    "buscas": ("buscas", "busca", "buscás", "buscáis"),
    "quieres": ("quieres", "quiere", "querés", "queréis"),
    "necesitas": ("necesitas", "necesita", "necesitás", "necesitáis"),
    "tienes": ("tienes", "tiene", "tenés", "tenéis"),
    "podrias": ("podrías", "podría", "podrías", "podríais"),
    "pagarias": ("pagarías", "pagaría", "pagarías", "pagaríais"),
    "esperas": ("esperas", "espera", "esperás", "esperáis"),
    "apareces": ("apareces", "aparece", "aparecés", "aparecéis"),
    "escribes": ("escribes", "escribe", "escribís", "escribís"),
    "prefieres": ("prefieres", "prefiere", "preferís", "preferís"),
    "dices": ("dices", "dice", "decís", "decís"),
    "dejas": ("dejas", "deja", "dejás", "dejáis"),
    "llamas": ("te llamas", "se llama", "te llamás", "os llamáis"),
    "disculpa": ("disculpa", "disculpe", "disculpá", "disculpad"),
}

# Each market's words for the same things (Spanish); an English reply uses ENGLISH_WORDS.
VOCABULARY: dict[str, dict[str, str]] = {
    "CL": {"flat": "depto", "a_flat": "un depto", "rent": "arrendar", "rent_noun": "arriendo", "place": "comuna",
           "how_many_bedrooms": "cuántos dormitorios", "bedrooms": "dormitorios", "bureau": "DICOM",
           "money_hint": " (en UF o en pesos)", "mortgage": "crédito hipotecario", "subsidy": " o con subsidio"},
    "MX": {"flat": "departamento", "a_flat": "un departamento", "rent": "rentar", "rent_noun": "renta",
           "place": "colonia o alcaldía", "how_many_bedrooms": "cuántas recámaras", "bedrooms": "recámaras",
           "bureau": "Buró de Crédito", "money_hint": " (en pesos)", "mortgage": "crédito hipotecario",
           "subsidy": " o con Infonavit"},
    "AR": {"flat": "depto", "a_flat": "un depto", "rent": "alquilar", "rent_noun": "alquiler", "place": "barrio",
           "how_many_bedrooms": "cuántos dormitorios", "bedrooms": "dormitorios", "bureau": "Veraz",
           "money_hint": " (en dólares o en pesos)", "mortgage": "crédito hipotecario", "subsidy": ""},
    "ES": {"flat": "piso", "a_flat": "un piso", "rent": "alquilar", "rent_noun": "alquiler", "place": "barrio o zona",
           "how_many_bedrooms": "cuántas habitaciones", "bedrooms": "habitaciones",
           "bureau": "algún fichero de morosos", "money_hint": "", "mortgage": "hipoteca", "subsidy": ""},
}
ENGLISH_WORDS: dict[str, str] = {"flat": "apartment", "rent": "rent", "bedrooms": "bedrooms"}
# A Spanish-writing lead of a US broker: Mexican Spanish is the most common in the US.
_SPANISH_MARKET = {"CL": "CL", "MX": "MX", "AR": "AR", "ES": "ES", "US": "MX"}

SPANISH: dict[str, tuple[str, ...]] = {
    "greeting": ("¡Hola! Soy {persona}, asistente virtual del equipo.",
                 "¡Hola! {te} escribe {persona}, asistente virtual del equipo."),
    "greeting.anonymous": ("¡Hola! Soy el asistente virtual del equipo.",
                           "¡Hola! {te} escribe el asistente virtual del equipo."),
    "got_it": ("Perfecto.", "Muy bien.", "Genial, gracias."),
    "correction": ("¿Mejor {value}? Anotado.", "Entendido, mejor {value}. Anotado."),
    "noted": ("Anotado: {value}.", "Perfecto, anotado: {value}."),
    "ask.operation": ("¿{buscas} comprar, {rent} o vender?",
                      "Para orientar{te} bien: ¿{quieres} comprar, {rent} o vender?"),
    "ask.location": ("¿En qué {place} {buscas}?", "¿Qué {place} {te} interesa?"),
    "ask.location.sell": ("¿En qué {place} está la propiedad?", "¿Dónde está la propiedad?"),
    "ask.property_type": ("¿{buscas} {flat}, casa u otro tipo de propiedad?",
                          "¿Qué tipo de propiedad {buscas}: {flat}, casa u otra?"),
    "ask.property_type.sell": ("¿Es {a_flat}, una casa u otro tipo de propiedad?",),
    "ask.bedrooms": ("¿{how_many_bedrooms} {necesitas}?", "¿Con {how_many_bedrooms}, más o menos?"),
    "ask.bedrooms.sell": ("¿{how_many_bedrooms} tiene?",),
    "ask.budget": ("¿Con qué presupuesto, más o menos{money_hint}?",
                   "¿Cuánto {tienes} pensado invertir, más o menos{money_hint}?"),
    "ask.budget.rent": ("¿Hasta cuánto {podrias} pagar de {rent_noun} al mes?",
                        "¿Qué presupuesto mensual {tienes} para el {rent_noun}?"),
    "ask.budget.sell": ("¿En cuánto {esperas} venderla, más o menos?", "¿Qué precio {tienes} en mente para la venta?"),
    "ask.timeline": ("¿Para cuándo lo {necesitas}?", "¿En qué plazo {te} gustaría concretarlo?"),
    "ask.timeline.sell": ("¿Para cuándo {te} gustaría vender?",),
    "ask.financing": ("¿Cómo lo {pagarias}: al contado, con {mortgage}{subsidy}?",
                      "¿Lo {pagarias} al contado o con {mortgage}{subsidy}?"),
    "ask.dicom": ("Una consulta, solo para orientar{te} mejor (si {prefieres} no responder, no hay problema): "
                  "¿{tienes} alguna deuda atrasada o {apareces} en {bureau}?",),
    "ask.name": ("¿Cómo {llamas}?", "¿Me {dices} {tu} nombre?"),
    "ask.contact": ("¿A qué teléfono o correo {te} puede escribir un ejecutivo?",
                    "¿Me {dejas} un teléfono o correo para que un ejecutivo {te} contacte?"),
    "ask.visit_time": ("¿Qué día y horario {te} queda mejor?",),
    "ask.switch_to_rent": ("¿{te} interesa que veamos opciones de {rent_noun} mientras tanto?",),
    "propose_visit": ("Con esto ya puedo buscar{te} opciones. ¿{te} gustaría agendar una visita{slots}?",
                      "¿Agendamos una visita para conocer opciones{slots}?"),
    "propose_visit.sell": ("Con esto podemos empezar. ¿{te} gustaría agendar una visita para tasar la propiedad"
                           "{slots}?",),
    "slots": (" (por ejemplo: {slots})",),
    "times": ("Horarios disponibles: {slots}.",),
    "or": (" o ",),
    "close": ("¡Listo{name}! Un ejecutivo {te} escribirá para confirmar el día y la hora de la visita.",),
    "needs_person": ("Con esto le paso {tu} caso a un ejecutivo, que {te} escribirá pronto.",),
    "fact_unknown": ("Buena pregunta: lo confirmo con un ejecutivo y {te} aviso.",),
    "fact": ("{fact}.",),
    "fact.commission": ("Sobre la comisión: {fact}.",),
    "fact.office_hours": ("Nuestro horario: {fact}.",),
    "fact.areas": ("Zonas donde trabajamos: {fact}.",),
    "hours": (" (nuestro horario: {office_hours})",),
    "handoff": ("Claro, {te} paso con una persona del equipo; {te} escribirá a la brevedad{hours}.",),
    "handoff.anger": ("Lamento mucho la molestia. {te} paso con una persona del equipo para que lo vea {contigo} "
                      "directamente.",),
    "handoff.legal": ("Eso lo tiene que ver una persona del equipo: no puedo orientar{te} en temas legales ni de "
                      "contratos. Ya {te} paso con alguien.",),
    "handoff.credit": ("Nosotros no decidimos créditos: eso lo evalúa el banco. {te} paso con un ejecutivo que {te} "
                       "puede orientar.",),
    "handoff.media": ("Como todavía no puedo escuchar audios ni ver imágenes, {te} paso con una persona del equipo.",),
    "holding": ("Sigo aquí: una persona del equipo {te} responderá pronto. ¡Gracias por la paciencia!",),
    "rate_limited": ("Recibí todos {tus} mensajes; una persona del equipo los revisará y {te} responderá.",),
    "opt_out": ("Listo, no {te} escribiremos más. {disculpa} la molestia.",
                "Entendido, no {te} volveremos a escribir. ¡Gracias!"),
    "text_only": ("Por ahora solo leo texto. ¿Me lo {escribes}, por favor?",
                  "Por ahora solo leo mensajes de texto: ¿me lo {escribes}?"),
    "refuse.injection": ("Eso no puedo hacerlo: solo {te} ayudo con la búsqueda de propiedades.",),
    "refuse.data": ("No puedo compartir datos de otros clientes ni detalles internos.",),
    "dicom": ("Gracias por contármelo, de verdad. Para ser transparente: nosotros no decidimos créditos (eso lo "
              "evalúa el banco), así que no puedo prometer{te} uno. Lo que sí podemos hacer es ayudar{te} con "
              "opciones de {rent_noun}, o retomar la compra cuando la situación esté regularizada.",),
    "approval_fix": ("El crédito lo decide el banco; nosotros {te} ayudamos con la búsqueda y los trámites.",),
}

ENGLISH: dict[str, tuple[str, ...]] = {
    "greeting": ("Hi! I'm {persona}, the team's virtual assistant.", "Hello! {persona} here, the team's virtual "
                 "assistant."),
    "greeting.anonymous": ("Hi! I'm the team's virtual assistant.",),
    "got_it": ("Great.", "Perfect, thanks.", "Got it."),
    "correction": ("{value} instead? Noted.", "Got it, {value} then."),
    "noted": ("Noted: {value}.",),
    "ask.operation": ("Are you looking to buy, rent or sell?",
                      "To point you the right way: do you want to buy, rent or sell?"),
    "ask.location": ("Which neighborhood or area are you looking in?", "Which area interests you?"),
    "ask.location.sell": ("Where is the property?",),
    "ask.property_type": ("Are you after an apartment, a house or something else?",
                          "What kind of property: apartment, house or other?"),
    "ask.property_type.sell": ("Is it an apartment, a house or another kind of property?",),
    "ask.bedrooms": ("How many bedrooms do you need?", "How many bedrooms, roughly?"),
    "ask.bedrooms.sell": ("How many bedrooms does it have?",),
    "ask.budget": ("What budget do you have in mind, roughly?", "Roughly how much are you looking to spend?"),
    "ask.budget.rent": ("How much could you pay in rent per month?",),
    "ask.budget.sell": ("What price do you have in mind for the sale?",),
    "ask.timeline": ("When do you need it by?", "What timeline are you working with?"),
    "ask.timeline.sell": ("When would you like to sell?",),
    "ask.financing": ("How would you pay: cash or with a mortgage?",),
    "ask.dicom": ("One quick question, only so we can guide you better (feel free to skip it): is there anything "
                  "on your credit report, like unpaid debts?",),
    "ask.name": ("What's your name?", "May I have your name?"),
    "ask.contact": ("What phone number or email can an agent reach you at?",),
    "ask.visit_time": ("What day and time suit you best?",),
    "ask.switch_to_rent": ("Would you like to look at rentals in the meantime?",),
    "propose_visit": ("With this I can look for options for you. Would you like to book a visit{slots}?",
                      "Shall we book a visit to see some options{slots}?"),
    "propose_visit.sell": ("That's enough to get started. Would you like to book a visit to value the property"
                           "{slots}?",),
    "slots": (" (for example: {slots})",),
    "times": ("Available times: {slots}.",),
    "or": (" or ",),
    "close": ("All set{name}! An agent will write to confirm the day and time of the visit.",),
    "needs_person": ("With this I'll pass your case to an agent, who will write to you soon.",),
    "fact_unknown": ("Good question: I'll check with an agent and get back to you.",),
    "fact": ("{fact}.",),
    "fact.commission": ("About our fee: {fact}.",),
    "fact.office_hours": ("Our hours: {fact}.",),
    "fact.areas": ("Areas we cover: {fact}.",),
    "hours": (" (our hours: {office_hours})",),
    "handoff": ("Sure, I'm passing you to a person on the team; they'll write to you shortly{hours}.",),
    "handoff.anger": ("I'm really sorry about this. I'm passing you to a person on the team so they can look at it "
                      "with you directly.",),
    "handoff.legal": ("That needs a person on the team: I can't advise on legal or contract matters. I'm passing you "
                      "to someone now.",),
    "handoff.credit": ("We don't make credit decisions: the bank does. I'm passing you to an agent who can guide "
                       "you.",),
    "handoff.media": ("Since I can't listen to audio or see images yet, I'm passing you to a person on the team.",),
    "holding": ("I'm still here: a person on the team will answer you soon. Thanks for your patience!",),
    "rate_limited": ("I got all your messages; a person on the team will read them and answer you.",),
    "opt_out": ("Done, we won't write to you again. Sorry for the bother.",
                "Understood, we won't message you again. Thanks!"),
    "text_only": ("For now I only read text. Could you type it, please?",),
    "refuse.injection": ("I can't do that: I only help with property searches.",),
    "refuse.data": ("I can't share other clients' data or internal details.",),
    "dicom": ("Thank you for telling me, really. To be transparent: we don't make credit decisions (the bank does), "
              "so I can't promise you a loan. What we can do is help you with rental options, or pick the purchase "
              "up again once things are sorted.",),
    "approval_fix": ("Credit is the bank's decision; we help you with the search and the paperwork.",),
}

_SENTENCE_START = re.compile(r"(^|[.!?]\s+)([¿¡]?)(\w)")


@dataclass(frozen=True)
class Voice:
    language: Literal["es", "en"]
    market: str  # CL, MX, AR, ES, US: which words a Spanish reply uses
    register: Register = "tu"

    @property
    def spanish(self) -> bool:
        return self.language == "es"

    def words(self) -> dict[str, str]:
        if not self.spanish:
            return dict(ENGLISH_WORDS)
        index = _REGISTERS.index(self.register)
        return {**VOCABULARY[self.market], **{token: forms[index] for token, forms in CONJUGATION.items()}}

    def say(self, key: str, seed: str, kind: str | None = None, **values: str) -> str:
        """The phrase ``key`` (``key.kind`` when the phrasebook has one), filled in and sentence-cased."""
        book = SPANISH if self.spanish else ENGLISH
        options = book.get(f"{key}.{kind}") or book[key]
        template = options[_index(f"{seed}|{key}", len(options))]
        text = template.format_map({**self.words(), **values})
        return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2) + m.group(3).upper(), text)


def _index(seed: str, options: int) -> int:
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big") % options


def _latest_cue(texts: list[str], patterns: list[tuple[Register, re.Pattern[str], bool]]) -> Register | None:
    """The register of the most recent message with a cue (a lead may switch; the latest counts)."""
    for text in reversed(texts):
        for register, pattern, on_folded in patterns:
            if pattern.search(words.folded(text) if on_folded else text.lower()):
                return register
    return None


def voice_of(conversation: Conversation) -> Voice:
    """The broker's language and tone, with the lead's own language and register where clear."""
    config = conversation.config
    broker_language, broker_market = config.language.split("-")
    texts = [m.text for m in conversation.lead_messages if m.type == "text" and m.text.strip()]
    folded = " ".join(words.folded(t) for t in texts)
    spanish, english = len(words.SPANISH_WORDS.findall(folded)), len(words.ENGLISH_WORDS.findall(folded))
    if english > spanish:
        return Voice("en", broker_market)
    if not spanish and broker_language == "en":
        return Voice("en", broker_market)
    market = _SPANISH_MARKET.get(broker_market, "CL")
    # Formal first: "¿usted podría…?" is formal even if it also says "tu".
    register = _latest_cue(texts, [("usted", words.FORMAL, True), ("vos", words.VOSEO, False),
                                   ("tu", words.TUTEO, True)])
    if register is None:
        register = "usted" if config.tone == "formal" else "vos" if market == "AR" else "tu"
    if register == "tu" and market == "ES" and any(words.PLURAL.search(words.folded(t)) for t in texts):
        register = "vosotros"
    return Voice("es", market, register)


def conversation_seed(conversation: Conversation) -> str:
    """Stable per conversation and per bot turn: the same moment of the same chat reads the same."""
    first = next((m.text for m in conversation.lead_messages if m.text), "")
    return f"{first}|{len(conversation.bot_messages)}"


# --- facts as a reply names them ----------------------------------------------------------------

_FINANCING = {"es": {"cash": "al contado", "mortgage_preapproved": "con financiamiento del banco ya encaminado",
                     "mortgage_needed": "con crédito hipotecario", "subsidy": "con subsidio"},
              "en": {"cash": "cash", "mortgage_preapproved": "with bank financing lined up",
                     "mortgage_needed": "with a mortgage", "subsidy": "with a housing subsidy"}}


def money_text(value: float, currency: str | None, spanish: bool) -> str:
    """The summaries' money format: "5.200 UF" in Spanish, "5,200 USD" in English."""
    return str(pl.select(money(pl.lit(value, pl.Float64), pl.lit(currency, pl.String), spanish)).item())


def describe(field: str, q: Qualification, voice: Voice) -> str | None:
    """How a reply names one known fact ("en Providencia", "3 dormitorios", "hasta 5.200 UF")."""
    es = voice.spanish
    lang = "es" if es else "en"
    if field == "location" and q.locations:
        return ("en " if es else "in ") + q.locations[-1].title()
    if field == "operation" and q.operation:
        if q.operation == "rent":
            return voice.words()["rent"]
        return str(PHRASES[lang]["operation"][q.operation])
    if field == "property_type" and q.property_type:
        return voice.words()["flat"] if q.property_type == "apartment" else str(PHRASES[lang]["type"][q.property_type])
    if field == "bedrooms" and q.bedrooms_min is not None:
        return f"{q.bedrooms_min} {voice.words()['bedrooms']}"
    if field == "budget" and (q.budget_max is not None or q.budget_min is not None):
        amount = money_text(q.budget_max if q.budget_max is not None else q.budget_min or 0.0, q.budget_currency, es)
        monthly = (" al mes" if es else " a month") if q.budget_period == "month" else ""
        return ("hasta " if es else "up to ") + amount + monthly
    if field == "timeline" and q.timeline_months is not None:
        if q.timeline_months == 0:
            return "lo antes posible" if es else "as soon as possible"
        return f"en {q.timeline_months} meses" if es else f"in {q.timeline_months} months"
    if field == "financing" and q.financing:
        return _FINANCING[lang][q.financing]
    if field == "name" and q.name:
        return q.name
    return None
