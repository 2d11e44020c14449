"""Every word list the agent reads a lead's message with, in one place, each with why it is there.

Patterns run on folded text (``numbers.fold``: lowercase, no accents, ñ kept) unless said
otherwise, so "Ñuñoa", "ñuñoa" and "nunoa" or "crédito" and "credito" read the same. Opt-out
words are not here: consent has one authority, ``leadflow.campaigns.eligibility.OPT_OUT``.
"""

from __future__ import annotations

import re

from leadflow.campaigns.eligibility import OPT_OUT as _OPT_OUT_PATTERN
from leadflow.qualification.answers import (  # noqa: F401  (the agent reads bare answers the same way)
    APPROVING_EMOJI,
    NO,
    NOT_AN_ANSWER,
    NOW,
    NUMBER,
    WORDS_ONLY,
    YES,
    folded,
    is_no,
    is_yes,
)

# The campaigns' consent words: a lead who says BAJA to the bot is out of campaigns too, and vice versa.
OPT_OUT = re.compile(_OPT_OUT_PATTERN)

# --- the lead wants a person: the bot steps back rather than argue --------------------------------
HANDOFF_REQUEST = re.compile(
    r"(?:hablar|conversar|comunicar(?:me|nos)?|contactar(?:me|nos)?) con (?:una |un |alguna |algun )?"
    r"(?:persona|humano|ejecutiv[oa]|agente|asesor[a]?|corredor[a]?|vendedor[a]?|alguien)|(?:pasame|paseme|comunicame|comuniqueme|quiero|necesito"
    r"|prefiero) (?:con )?(?:una |un )?(?:persona|humano|ejecutiv[oa]|asesor[a]?)\b|persona real|ser humano"
    r"|\b(?:talk|speak|chat) (?:to|with) (?:a |an |some)?(?:one|body|person|human|agent|representative|realtor)"
    r"|\b(?:human|real person|representative)\b|\bagent,? please|\bneed an? (?:agent|person|human)")

# --- anger: insults and accusations alone, complaint words only when shouted ----------------------
# An insult or "estafa" is anger however it is written; "pésimo" or "nadie responde" is a complaint a
# bot may answer, unless it comes in capitals or with "!!!", when a person should take it.
ANGER = re.compile(
    r"estafa|estafador|fraude|ladron|sinverguenza|idiota|estupid|imbecil|mierda|hijo de puta|\bhdp\b|\bctm\b"
    r"|conchetumadre|conchatumadre|la concha de|pelotud|\bscam|\bfraud|idiot|stupid|bullshit|fuck|\bshit\b")
COMPLAINT = re.compile(
    r"molest|enojad|enfadad|hart[oa]\b|chat[oa]\b|pesim|verguenza|incompetent|nadie (?:me )?(?:responde|contesta)"
    r"|respondan|contesten|inaceptable|terrible|worst|angry|annoyed|ridicul|unacceptable|nobody (?:answers|replies)")
SHOUT = re.compile(r"!!!")


def shouting(text: str) -> bool:
    """Mostly capitals over enough letters to be a sentence, or a run of exclamation marks."""
    letters = [ch for ch in text if ch.isalpha()]
    capitals = sum(ch.isupper() for ch in letters)
    return bool(SHOUT.search(text)) or (len(letters) >= 10 and capitals >= 0.7 * len(letters))


# --- what only a person may answer -----------------------------------------------------------------
LEGAL = re.compile(
    r"abogad[oa]|\bdemand(?:a|ar|are|aremos)\b|juicio|tribunal|querella|desalojo|carta documento|ilegal"
    r"|\blegal(?:mente)?\b|\blawyer|attorney|lawsuit|\bsue\b|eviction|legal advice|\blegally\b")
CONTRACT_DISPUTE = re.compile(
    r"incumpl|(?:contrato|arrendador|arrendatario|propietario|dueño|inmobiliaria)\b.{0,40}(?:no (?:me )?(?:devuelve"
    r"|devolvio|cumple|cumplio)|reclamo|disputa|rescind)|devol\w* (?:de )?(?:la |mi )?garantia|breach of contract"
    r"|(?:security )?deposit back|landlord (?:won'?t|will not|refuses)")
# A credit decision is the bank's; the bot neither makes nor predicts one.
CREDIT_DECISION = re.compile(
    r"(?:me|nos) (?:van a |vas a |va a |podrian |pueden |podras |podra )?(?:aprobar|aprueban|aprobaran|daran|dan"
    r"|otorgan|otorgaran|otorgar) (?:el |un |la )?(?:credito|prestamo|hipoteca)|califico (?:para|al|a) (?:un |el )?"
    r"(?:credito|prestamo)|(?:puedo|podria) (?:obtener|sacar|conseguir|pedir) (?:un |el )?(?:credito|prestamo)"
    r"|will (?:i|we) (?:get|be) approved|can you approve|(?:do|would|will) (?:i|we) qualify for")

# --- attacks on the bot's instructions, and requests for other people's data ----------------------
INJECTION = re.compile(
    r"ignor[ae]\w* (?:\w+ ){0,2}(?:instrucciones|reglas|indicaciones)|olvida\w* (?:\w+ ){0,2}(?:instrucciones|reglas)"
    r"|ignore (?:\w+ ){0,3}(?:instructions|rules|prompts?)|disregard (?:\w+ ){0,3}(?:instructions|rules)"
    r"|forget (?:\w+ ){0,2}instructions|\bactua como\b|\bact as\b|\bpretend (?:to be|you are)\b|haz de cuenta que"
    r"|ahora eres|you are now|system prompt|prompt del sistema|(?:tu|your|el) prompt|jailbreak|modo desarrollador"
    r"|developer mode"
    r"|(?:muestrame|muestra|dime|revela|repite|ensename|cuales son) (?:\w+ ){0,2}(?:instrucciones|reglas|configuracion)"
    r"|(?:show|tell|reveal|repeat|print) (?:me )?(?:\w+ ){0,2}(?:instructions|rules|configuration)"
    r"|what are your (?:instructions|rules)")
OTHER_LEADS = re.compile(
    r"(?:telefono|numero|celular|correo|email|mail|datos|direccion|nombre)s? (?:\w+ ){0,3}(?:del|de la|de los|de las"
    r"|de otro|de otra|de otros|de otras) (?:\w+ )?(?:cliente|interesad|comprador|arrendatari|usuari|persona anterior"
    r"|lead)|otros clientes|cliente anterior|clientes anteriores|(?:phone|number|email|address|details|data|name)s? "
    r"(?:\w+ ){0,3}(?:of|for) (?:the |your |an |a )?(?:previous|last|other|another) (?:client|customer|lead|user"
    r"|person|buyer)|other (?:clients|customers|leads)|previous (?:client|customer|lead)")

# --- what a reply must never say (read on the bot's reply, folded) --------------------------------
# Approval and guarantee words: only a bank approves credit, and no reply may sound like a promise,
# not even an echo of the lead's "preaprobado" (a reply "crédito preaprobado" reads as our claim).
APPROVAL_CLAIM = re.compile(
    r"aprobad[oa]s?|\baprob(?:amos|aremos|ar|ara|aria)\b|te aprueban|garantiz|asegur\w* (?:\w+ ){0,3}credito"
    r"|credito (?:seguro|asegurado)|approved|\bapprove\b|guarantee|we (?:can )?ensure (?:\w+ ){0,3}(?:loan|mortgage)")
# Fragments of instructions (this agent's or the LLM qualifier's): a reply with one leaks the prompt.
PROMPT_LEAK = re.compile(r"system prompt|prompt del sistema|you qualify real-estate leads|mis instrucciones son"
                         r"|my instructions are")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"\+?\d[\d\s().-]{7,}\d")

# --- questions about the broker the configured facts answer ---------------------------------------
FACT_QUESTIONS: dict[str, re.Pattern[str]] = {
    "commission": re.compile(r"comision|cuanto cobran|cuanto cobras|cuanto cobra\b|que cobran|honorarios|\bfees?\b"
                             r"|commission|what do you charge|how much do you charge"),
    "office_hours": re.compile(r"horario|a que hora|que horas|atienden|abren|cierran|office hours|opening hours"
                               r"|what time|are you open|\bhours\b"),
    "areas": re.compile(r"que (?:comunas|zonas|barrios|colonias|sectores|ciudades)|en que (?:zonas|comunas|barrios"
                        r"|colonias|sectores)|donde trabajan|donde operan|which (?:areas|neighborhoods|cities)"
                        r"|areas (?:do )?you (?:cover|serve|work)|where do you (?:work|operate)"),
    "how_it_works": re.compile(r"como funciona|como trabajan|como es el proceso|como seria el proceso|que hacen"
                               r"|how does (?:it|this) work|how do you work|what(?:'s| is) the process"),
}

# --- how the lead talks: register and language ----------------------------------------------------
# Voseo forms differ from tú forms only by the accent ("tenés"/"tienes" differ, "sabés"/"sabes" do
# not), so this list is read on lowercased text with accents kept, and keeps only the unambiguous.
VOSEO = re.compile(r"\bvos\b|\bquerés\b|\btenés\b|\bpodés\b|\bsabés\b|\bnecesitás\b|\bbuscás\b|\bdecime\b|\bcontame\b"
                   r"|\bfijate\b|\bavisame\b|\bpasame\b|\bmandame\b|\bche\b|\bqueres\b|\btenes\b|\bpodes\b")
# "ustedes" is the plural for everyone in Latin America ("¿ustedes cobran?"): not a formal cue.
FORMAL = re.compile(r"\busted\b|\bpodria\b|\ble agradec|\bquisiera consultarle|\bdisculpe\b|\bestimad[oa]s?\b"
                    r"|\batentamente\b|\bcordialmente\b|\bindiqueme\b|\bdigame\b|\bseñor(?:a)?\b"
                    r"|\bsu (?:ayuda|atencion)")
TUTEO = re.compile(r"\btu\b|\bti\b|\bcontigo\b|\btienes\b|\bpuedes\b|\bquieres\b|\bpodrias\b|\bnecesitas\b"
                   r"|\bme (?:mandas|envias|dices|ayudas|cuentas)\b")
# A lead writing for a couple or family: in Spain, a friendly reply then says "vosotros".
PLURAL = re.compile(r"\b(?:queremos|buscamos|tenemos|vendemos|necesitamos|nosotros|somos)\b"
                    r"|\bmi (?:mujer|marido|pareja|novi[oa]|espos[oa]) y yo\b")
SPANISH_WORDS = re.compile(r"\b(?:hola|busco|quiero|tengo|para|con|dormitorios?|presupuesto|gracias|depto|casa|piso"
                           r"|arriendo|comprar|vender|el|la|los|las|de|en|que|mi|me|mas|si|soy|estoy|buenas?|un|una"
                           r"|por|favor|cuanto|donde|como)\b")
ENGLISH_WORDS = re.compile(r"\b(?:the|i|i'm|im|want|to|my|is|and|looking|for|hi|hello|please|bedrooms?|budget|we"
                           r"|need|call|house|buy|rent|sell|yes|thanks|what|how|much|you|an)\b")

# A lead changing an answer ("mejor en Providencia", "en realidad son 3"): acknowledged as a correction.
CORRECTION = re.compile(r"\bmejor\b|en realidad|perdon|corrijo|me equivoque|cambie de idea|\bcambio\b|mas bien"
                        r"|\bactually\b|\binstead\b|\brather\b|\bsorry\b|changed my mind")
# "¿Me podés ayudar?" asks for help, not for a fact the bot should promise to check.
HELP_REQUEST = re.compile(r"ayud|help|\bpuedes\b|\bpodes\b|\bpodria|\bpodrias\b|can you|could you")
# Turning a proposed visit down.
DECLINE = re.compile(r"no puedo|no me acomoda|no me sirve|no gracias|otro dia|mas adelante|todavia no|aun no"
                     r"|\bcan'?t\b|cannot|not available|another day|not yet|no thanks|not now")

