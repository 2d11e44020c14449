"""The offline rules qualifier: Spanish (Chile, Mexico, Argentina, Spain) and English, as people write.

Vectorised: a frame of messages in, one row of facts per conversation out. Every pattern runs in
polars (Rust regex, over whole columns, on all cores); only the rare, fiddly readings (names,
emails, phone numbers, spelled-out numbers) go through Python, and only for messages whose text
shows the cue, so a million conversations qualify in seconds. The lead's turns are read in order
and a later statement replaces an earlier one ("the latest statement wins"); a fact not stated
stays null. Pure: no I/O, no clock, deterministic.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import polars as pl

from leadflow.phones import to_e164
from leadflow.qualification.numbers import WORD_VALUES, fold, words_to_numbers
from leadflow.qualification.places import find_places, place_names
from leadflow.qualification.schema import QUALIFICATION_SCHEMA, Qualification
from leadflow.qualification.stance import URGENCY_GATE, proposals, stance, urgency, when
from leadflow.qualification.summary import with_summary
from leadflow.qualification.turns import Turn

COUNTRY_CURRENCY = {"CL": "CLP", "MX": "MXN", "AR": "ARS", "ES": "EUR", "US": "USD"}
MAX_TEXT = 20_000  # a pasted novel is not a lead; its first pages are enough

# --- cues (on folded text: lowercase, no accents, ñ kept; Rust regex syntax, no look-around) ------

_OPERATION = [
    ("invest", r"invertir|inversion|inversionista|rentabilidad|\binvest(?:ing|ment|or)?\b|buy[- ]to[- ]let"),
    ("sell", r"\bvender\b|\bvendo\b|vendiendo|\bsell(?:ing)?\b|tasar|tasacion"),
    ("rent", r"arrendar|\barriendo\b|arrendamiento|alquilar|alquiler|\balquilo\b|\brentar\b|en renta|para renta"
             r"|\bde renta\b|\brent(?:ing|al)?\b|\blease\b"),
    ("buy", r"comprar|\bcompra\b|\bcompro\b|adquirir|\bbuy(?:ing)?\b|\bpurchas(?:e|ing)\b"),
]
_PROPERTY = [
    ("commercial", r"local comercial|\blocal\b|\bbodega\b|galpon|\bcommercial\b|\bretail\b|warehouse"),
    ("office", r"\boficinas?\b|\boffices?\b"),
    ("land", r"\bterrenos?\b|\bparcelas?\b|\blotes?\b|\bsitio\b|\bland\b|\bplot\b"),
    ("house", r"\bcasas?\b|\bchalet\b|\bhouses?\b|townhouse"),
    ("apartment", r"\bdeptos?\b|\bdptos?\b|departamentos?|\bdepas?\b|apartamentos?|monoambiente"
                  r"|\b(?:un|el|mi|este|ese|del|al|tu|su|nuestro|vuestro) piso\b(?:\s*$|\s*[^\s\d])"
                  r"|\bapartments?\b|\bflat\b|\bcondo\b|\bstudio\b"),
]
_FINANCING = [
    ("cash", r"al contado|de contado|\bcontado\b|\bcash\b|\befectivo\b|sin credito|recursos propios|pago total"),
    ("mortgage_preapproved", r"pre-?aprobad[oa]|(?:credito|hipotecario|financiamiento)\s+(?:\w+\s+){0,2}aprobad[oa]"
                             r"|pre-?approved|mortgage approved|tengo (?:el |mi |un )?credito (?:infonavit|fovissste"
                             r"|bancario)"),
    ("subsidy", r"subsidio|\bds ?(?:1|19|49)\b|\bsubsidy\b"),
    ("mortgage_needed", r"necesito (?:un )?credito|con credito|credito hipotecario|\bhipotecario\b|financiamiento"
                        r"|\bmortgage\b|infonavit|fovissste|credito bancario|need (?:a )?loan"),
]
_DICOM = [
    ("unknown", r"no se si (?:estoy|aparezco|tengo|salgo)"),
    ("clean", r"(?:sin|no tengo|no estoy en|no aparezco en|no salgo en|nunca he estado en)\s+(?:el\s+)?(?:dicom|buro"
              r"|veraz)|(?:dicom|historial|buro)\s+limpio|no tengo deudas|sin deudas|buen (?:historial|buro)"
              r"|clean credit|no debts"),
    ("dirty", r"(?:estoy|aparezco|sali|salgo|tengo|quede)\s+(?:en\s+)?(?:el\s+)?dicom|dicom\s+sucio|en dicom"
              r"|mal buro|estoy en (?:el )?buro|\bveraz\b|\bmoros[oa]\b|bad credit"),
    ("has_debt", r"tengo (?:una |algunas |unas |varias )?deudas?|\bdebo\b|creditos? de consumo|\bdeudas?\b"
                 r"|\bdebts?\b|\bowe\b"),
]
_OPT_OUT = (r"^\s*(?:baja|stop|unsubscribe|cancelar)\s*[.!]*\s*$|dar(?:me)? de baja|no me (?:vuelvan a )?(?:llamen"
            r"|llames|llamar|escriban|escribas|contacten|contactes|molesten)|no llamar|no quiero que me (?:llamen"
            r"|escriban|contacten)|dejen de (?:llamar|escribir)|bloquead[oa]|stop (?:calling|texting|messaging)"
            r"|don'?t (?:call|text|contact)|do not (?:call|contact)|remove me|\bstop\b|no me escriban mas")
# A cue right after a negation ("no quiero arrendar") states nothing; the negation is matched with
# the cue (Rust regex has no look-behind) and such matches are dropped.
_NEGATION = r"(?:\b(?:no|ni|not)|n't)\s+(?:\w+\s+)?"
# Selling one's own home first, to buy ("primero tengo que vender el mío"), is a step, not what they want.
_PRECONDITION = (r"primero (?:tengo|tenemos|necesito|necesitamos|debo|debemos|hay) (?:que )?vender"
                 r"|vender (?:el mio|la mia|el nuestro|la nuestra|mi \w+|nuestr[oa] \w+) primero"
                 r"|(?:need|have) to sell (?:mine|ours|my \w+|our \w+) first")
_INVEST_NEGATION = r"\b(?:no|ni|nunca|not|don't|dont) "

# --- cues on the "numeric" text: folded, tokens split by one space, spelled-out numbers as digits --

_BEDROOM_WORDS = (r"(?:dormitorios?|dorms?\b|habitaciones|habitacion|recamaras?|piezas|cuartos|bedrooms?|beds?\b"
                  r"|\bbr\b|\bbd\b)")
_BEDROOM_RANGE = rf"(\d+)\s*(?:o|a|-|or|to)\s*(\d+)\s*{_BEDROOM_WORDS}"
_BEDROOM_SHORT = r"\b(\d+)\s*d\s*(?:\+\s*)?(\d+)\s*b\b"  # 2d2b, 3d+2b
_BEDROOM_COUNT = rf"(\d+)\s*{_BEDROOM_WORDS}"
_AMBIENTES = r"(\d+)\s*ambientes?"
_STUDIO = r"monoambiente|\bstudio\b"
_NOW = (r"lo antes posible|cuanto antes|urgente|de inmediato|inmediat|ya mismo|\basap\b|right away|immediately"
        r"|this month|este mes")
_NEXT_MONTH = r"proximo mes|next month|el mes que viene"
_NEXT_YEAR = r"proximo año|next year|el año que viene"
_IN_PERIOD = (r"(?:en|dentro de|within|in|para)\s+(?:unos?|unas|about|around|aprox\.?|mas o menos|como)?\s*"
              r"(?P<n>\d+(?:[.,]\d+)?)\s*(?P<unit>meses|mes|months?|semanas?|weeks?|años|año|years?)")

_MULTIPLIERS = {"millones": 1e6, "millon": 1e6, "mm": 1e6, "mill": 1e6, "palos": 1e6, "palo": 1e6, "million": 1e6,
                "millions": 1e6, "lucas": 1e3, "luca": 1e3, "mil": 1e3, "k": 1e3, "thousand": 1e3,
                "thousands": 1e3, "grand": 1e3}
_CURRENCY_WORDS = {"uf": "UF", "usd": "USD", "dolares": "USD", "dollars": "USD", "dolar": "USD", "mxn": "MXN",
                   "ars": "ARS", "eur": "EUR", "euros": "EUR", "€": "EUR", "clp": "CLP"}
# Tokens are space-separated here, so "5.200UF" reads "5.200 uf" and "u.f." never survives whole.
_AMOUNT = (r"(?P<pre>\b(?:uf|usd|mxn|ars|eur|clp)\b|€|\$)?\s*"
           r"(?P<num>\d+(?:[.,]\d+)*)\s*"
           r"(?P<mult>\b(?:millones|millon|mm|mill|palos?|lucas?|mil|k|thousands?|grand|millions?)\b)?\s*"
           r"(?P<post>\b(?:uf|usd|dolares|dollars|dolar|mxn|ars|eur|euros|clp|pesos)\b|€)?")
_NOT_MONEY_AFTER = (r"^\s*(?:%|por ciento|percent|d\d|dorm|habitac|recamar|pieza|cuarto|bed|br\b|bd\b|ambiente|ban"
                    r"|bath|mes|month|sem|week|an(?:o|os)\b|año|year|dia|day|m2|mt|metro|sq|piso|floor|estac|parking"
                    r"|min|hora|hour|hijo|niño|kid|person|persona|auto|cuadra|block|km)")
_KIND_BEFORE = [
    # what a seller asks for their property: never a budget
    ("asking", r"(?:\bpedir\b|\bpido\b|pedimos|precio de venta|valor de venta|vender(?:lo|la)? (?:en|por)|sacarle"
               r"|\basking\b|\blist (?:it )?(?:for|at)|sell (?:it )?for)[^.]{0,25}$"),
    ("down_payment", r"(?:\bpie\b|enganche|down ?payment|anticipo|entrada)[^.]{0,25}$"),
    ("income", r"(?:sueldo|\bgano\b|ganamos|ingresos?|renta liquida|mi renta|renta mensual|nuestra renta|income"
               r"|\bearn|salary|\bmake\b|liquido)[^.]{0,25}$"),
    ("arrears", r"(?:\bdebo\b|deuda|adeudo|morosidad|arrears|\bowe\b)[^.]{0,25}$"),
]
_KIND_AFTER = [
    ("down_payment", r"^\s*(?:de|para el|para|como|of|for the|as)?\s*(?:pie|enganche|down ?payment|anticipo)"),
    ("income", r"^\s*(?:liquidos?|de sueldo|al mes de sueldo|de renta liquida|de ingresos?|income)"),
    ("arrears", r"^\s*(?:de deuda|en deudas?|atrasad|morosos?|in debt)"),
]
_BUDGET_CUE = (r"(?:presupuesto|hasta|entre|maximo|tope|pagar|precio|valor|cuesta|alrededor de|unos|budget|up to"
               r"|around|about|between|spend|afford|price)[^.]{0,20}$")
_MIN_CUE = r"(?:desde|minimo|al menos|at least|from|sobre|mas de|more than|over)\s*$"
_MONTHLY = r"al mes|mensual|por mes|/mes|per month|a month|monthly|mensuales"
_RANGE = r"^\s*(?:y|a|-|–|hasta|and|to)\s*$"

# --- places: a place right after a ruling-out word is removed; right after "me llamo", a person ----

_RULED_OUT = r"(?:\bno|ya no|descart\w*|excepto|menos|not in|not|except)\s+(?:en\s+|in\s+)?"
_NAME_CUE = r"(?:llamo|nombre es|soy|name is)\s+"

# --- Python readings, run only where a vectorised gate sees their cue ------------------------------

_NAME_PATTERN = (r"(?:me llamo|mi nombre es|my name is|soy|i am|i'm|this is|le habla|te habla|habla)\s+"
                 r"([A-Za-zÁÉÍÓÚÑÜáéíóúñü]+(?:\s+[A-Za-zÁÉÍÓÚÑÜáéíóúñü]+){0,3})")
_NAME = re.compile(_NAME_PATTERN, re.IGNORECASE)
_NAME_STOP = {"y", "and", "de", "del", "la", "el", "los", "en", "tengo", "busco", "quiero", "estoy", "vivo", "from",
              "con", "para", "interesado", "interesada", "buscando", "looking", "calling", "interested", "i", "a",
              "an", "the", "un", "una", "muy", "bien", "mi", "my", "su", "tu", "que", "porque", "pero", "but",
              "with", "desde", "aqui", "here", "necesito", "trabajo", "soltero", "soltera", "casado",
              "casada", "medico", "ingeniero", "profesora", "profesor", "of", "por", "al"}
# "gabriel gonzalez, y mi numero es 954100504": a name given first, before a comma, then contact details
# (or as the answer to "¿con quién hablo?").
_COMMA_NAME_GATE = r"^\s*[A-Za-zÁÉÍÓÚÑÜáéíóúñü]+(?:\s+[A-Za-zÁÉÍÓÚÑÜáéíóúñü]+){0,3}\s*,"
_COMMA_NAME = re.compile(r"\s*([^\W\d_]+(?:\s+[^\W\d_]+){0,3})\s*,(.*)", re.S)
_CONTACT_AFTER = re.compile(r"\b(?:mi|my)\s+(?:numero|cel|celular|telefono|fono|whatsapp|wsp|correo|mail|email|e-mail"
                            r"|number|phone|cell)\b|\d{7,}|@")
_ASKS_NAME = re.compile(r"nombre|con quien hablo|como te llamas|como se llama|your name|who am i speaking|who'?s this")
_NOT_NAMES = _NAME_STOP | {
    "hola", "buenas", "buenos", "dias", "tardes", "noches", "hello", "hi", "hey", "ok", "okay", "si", "no", "ya",
    "dale", "bueno", "claro", "perfecto", "gracias", "listo", "vale", "genial", "excelente", "disculpa", "disculpe",
    "perdon", "oye", "mira", "super", "thanks", "thank", "you", "great", "sure", "yes", "sorry", "please", "bien",
    "señor", "señora", "sr", "sra", "don", "doña", "estimado", "estimada", "saludos", "good", "morning", "afternoon",
    "oka", "evening", "ah", "eh", "uf", "pues", "entonces", "tambien", "aqui"}  # compared folded: no accents
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_SPOKEN_EMAIL = re.compile(r"([a-z0-9ñ]+(?:\s+(?:punto|guion bajo|guion|dot|underscore)\s+[a-z0-9ñ]+)*)\s+(?:arroba|at)"
                           r"\s+([a-z0-9-]+(?:\s+(?:punto|dot)\s+[a-z0-9-]+)+)")
_PHONE = re.compile(r"(?:\+|00)?\d[\d\s().-]{6,}\d")
_PHONE_GATE = r"\d[\d\s().-]{6,}\d"
_PHONE_RUN = r"\d[\d\s()-]{6,}\d"  # a phone-like run without dots: masking may change the text
_ONES = ("un", "uno", "una", "one")
# Spelled-out numbers beyond "un/una" (and "y medio") need the Python reader; "un" alone is just 1.
_NUMBER_WORD_GATE = (r"\b(?:" + "|".join(sorted((w for w in WORD_VALUES if w not in _ONES), key=len, reverse=True))
                     + r"|medio|half)\b")
_TOKEN = r"[a-zñ]+|\d+(?:[.,]\d+)*|\S"


def _accept_name(cue: str, found: str) -> str | None:
    """A name from one match of ``_NAME`` (its cue and up to four words), or None if it is not one."""
    cue = fold(cue.split()[0])
    words = []
    for word in found.split():
        if fold(word) in _NAME_STOP:
            break
        words.append(word)
    if not words:
        return None
    # "soy"/"I'm"/"this is" introduce names only when capitalised ("soy Camila", not "soy casado").
    if cue in ("soy", "i", "i'm", "this", "habla", "le", "te") and not words[0][0].isupper():
        return None
    if cue == "soy" and len(words) == 1 and find_places(fold(words[0]), None):
        return None
    return " ".join(w[:1].upper() + w[1:].lower() if w.islower() or w.isupper() else w for w in words)


def _name(text: str, cue: str | None = None, found: str | None = None) -> str | None:
    """The first acceptable name; ``cue``/``found`` are the first match when already extracted."""
    if cue is not None and found is not None:
        name = _accept_name(cue, found)
        if name is not None:
            return name
    for m in _NAME.finditer(text):
        name = _accept_name(m.group(0), m.group(1))
        if name is not None:
            return name
    return None


def _comma_name(text: str, agent: str | None, country: str | None) -> str | None:
    """A name given first and closed by a comma, when contact details follow it or the agent asked for it."""
    m = _COMMA_NAME.match(text)
    if not m:
        return None
    words = m.group(1).split()
    if any(fold(w) in _NOT_NAMES or len(w) < 2 for w in words) or find_places(fold(m.group(1)), country):
        return None
    asked = agent is not None and _ASKS_NAME.search(fold(agent)) is not None
    if not (asked or _CONTACT_AFTER.search(fold(m.group(2)))):
        return None
    if len(words) == 1 and not (asked or words[0][0].isupper()):
        return None  # one lowercase word and nobody asked: more likely a word than a name
    return " ".join(w[:1].upper() + w[1:].lower() if w.islower() or w.isupper() else w for w in words)


def _email(text: str, folded: str) -> str | None:
    m = _EMAIL.search(text)
    if m:
        return m.group(0).lower().rstrip(".")
    m = _SPOKEN_EMAIL.search(folded)
    if not m:
        return None

    def join(part: str) -> str:
        part = re.sub(r"\s+(?:punto|dot)\s+", ".", part)
        part = re.sub(r"\s+(?:guion bajo|underscore)\s+", "_", part)
        return re.sub(r"\s+guion\s+", "-", part).replace(" ", "")

    return f"{join(m.group(1))}@{join(m.group(2))}"


# Nine-digit national mobiles: Chile's 9 + eight digits, Spain's 6/7 + eight. The numbering plan in
# phonenumbers lags behind the ranges operators hand out ("912345678" is a mobile to any Chilean).
_PLAIN_MOBILE = {"CL": ("56", re.compile(r"(?:56)?(9\d{8})")), "ES": ("34", re.compile(r"(?:34)?([67]\d{8})"))}


def _e164(raw: str, country: str | None) -> str | None:
    phone = to_e164(raw, country)
    if phone or country is None or country.upper() not in _PLAIN_MOBILE:
        return phone
    code, mobile = _PLAIN_MOBILE[country.upper()]
    digits = re.sub(r"\D", "", raw.removeprefix("00"))
    m = mobile.fullmatch(digits)
    return f"+{code}{m.group(1)}" if m and (not raw.lstrip().startswith(("+", "00")) or digits.startswith(code)) \
        else None


def _phone(text: str, country: str | None) -> str | None:
    for m in _PHONE.finditer(text):
        phone = _e164(m.group(0), country)
        if phone:
            return phone
    return None


def _mask_phones(folded: str, country: str | None) -> str:
    """Blank out valid phone numbers: their digits are not money, rooms or months.

    Only spans that are valid numbers are masked, so "1.200.000" stays an amount.
    """
    return _PHONE.sub(lambda m: " " if "." not in m.group(0) and _e164(m.group(0), country) else m.group(0), folded)


def _python(frame: pl.DataFrame, gate: str, function: Callable[..., Any], inputs: Sequence[str],
            otherwise: pl.Expr) -> pl.Series:
    """``function`` over the rows where the boolean column ``gate`` holds; ``otherwise`` elsewhere."""
    base = frame.with_columns(otherwise.alias("_otherwise"))["_otherwise"]
    where = frame[gate].arg_true()
    if where.len() == 0:
        return base
    values = [function(*row) for row in frame[where].select(inputs).iter_rows()]
    return base.scatter(where, pl.Series(values, dtype=base.dtype))


# --- vectorised readings --------------------------------------------------------------------------

# Cheap literal scans: every text a family's patterns can match contains one of these words, so
# the costly patterns run only on the messages that do (checked against the patterns by the tests).
_OPERATION_GATE = ("invert|inversion|rentab|invest|buy|vend|sell|tasa|arrend|arriendo|alquil|rent|lease|compr|adquirir"
                   "|purchas")
_PROPERTY_GATE = ("local|bodega|galpon|commercial|retail|warehouse|oficina|office|terreno|parcela|lote|sitio|land|plot"
                  "|casa|chalet|house|depto|dpto|departamento|depa|apartamento|monoambiente|piso|apartment|flat"
                  "|condo|studio")
_FINANCING_GATE = ("contado|cash|efectivo|credit|recursos propios|pago total|aprobad|approved|hipotecario"
                   "|financiamiento|subsid|ds|mortgage|infonavit|fovissste|loan")
_DICOM_GATE = "dicom|buro|veraz|deud|debo|debt|owe|moros|credit|no se si|historial"
# on the numeric text, where "2d2b" reads "2 d 2 b"
_BEDROOM_GATE = "dorm|habitac|recamar|pieza|cuarto|bed|br|bd|ambiente|studio| d "
_TIMELINE_GATE = "mes|month|semana|week|año|year|antes|urgente|inmediat|mismo|asap|right away|immediately"


def _gated(frame: pl.DataFrame, column: str, gate: str, **exprs: pl.Expr) -> list[pl.Series]:
    """``exprs`` evaluated only on the rows whose ``column`` matches ``gate``, null elsewhere: one cheap
    scan spares the costly patterns the many messages that cannot match them."""
    where = frame[column].str.contains(gate).fill_null(False).arg_true()
    inputs = sorted({name for expr in exprs.values() for name in expr.meta.root_names()})
    values = frame.select(inputs)[where].lazy().select(**exprs).collect()
    return [pl.repeat(None, frame.height, dtype=values[name].dtype, eager=True).alias(name).scatter(where, values[name])
            for name in exprs]


_ACCENTS = {"á": "a", "é": "e", "í": "i", "ó": "o", "ú": "u", "ü": "u", "à": "a", "è": "e", "ì": "i", "ò": "o",
            "ù": "u", "â": "a", "ê": "e", "î": "i", "ô": "o", "û": "u", "ä": "a", "ë": "e", "ï": "i", "ö": "o",
            "ç": "c"}


def _fold(frame: pl.DataFrame, column: str) -> pl.Series:
    """Polars twin of ``numbers.fold``: lowercase, accents off, ñ kept; Unicode decomposition only
    for the rare texts that need it (combining marks), as ``fold`` does."""
    folded = frame.select(pl.col(column).str.to_lowercase().str.replace_many(_ACCENTS).alias("_f"))["_f"]
    rare = folded.str.contains("[^\x00-\u02ff]").fill_null(False).arg_true()
    if rare.len() == 0:
        return folded
    decomposed = (folded.gather(rare).str.normalize("NFD").str.replace_all("n\u0303", "ñ", literal=True)
                  .str.replace_all(r"\p{Mn}", ""))
    return folded.scatter(rare, decomposed)


def _first_rule(text: pl.Expr, rules: list[tuple[str, str]]) -> pl.Expr:
    """The first rule (in priority order) whose pattern occurs anywhere in the text."""
    expr: pl.Expr = pl.lit(None, pl.String)
    for value, pattern in reversed(rules):
        expr = pl.when(text.str.contains(pattern)).then(pl.lit(value)).otherwise(expr)
    return expr


def _last_cue(folded: pl.Expr, rules: list[tuple[str, str]]) -> pl.Expr:
    """The value whose cue appears last (ties: earlier rule), ignoring negated cues."""
    alternation = "|".join(f"(?:{pattern})" for _, pattern in rules)
    affirmed = folded.str.replace_all(f"{_NEGATION}(?:{alternation})", " ")
    last = affirmed.str.extract_all(alternation).list.last()
    return _first_rule(last, [(value, f"^(?:{pattern})") for value, pattern in rules])


def _operation(folded: pl.Expr) -> pl.Expr:
    # "invertir en un depto para arrendar" is buy-to-let: investing wins over the renting it mentions.
    invest = _OPERATION[0][1]
    affirmed = folded.str.replace_all(f"{_INVEST_NEGATION}(?:{invest})", " ").str.contains(invest)
    return pl.when(affirmed).then(pl.lit("invest")).otherwise(
        _last_cue(folded.str.replace_all(_PRECONDITION, " "), _OPERATION))


def _int(text: pl.Expr) -> pl.Expr:
    return text.cast(pl.Int64, strict=False)


def _bedrooms(numeric: pl.Expr) -> pl.Expr:
    """Precedence as people correct themselves: "3 ambientes" > "2d2b" > "2 o 3 dorm" > "3 dorm" > studio."""
    in_range = numeric.str.extract_all(_BEDROOM_RANGE).list.last()
    value = pl.coalesce(
        (_int(numeric.str.extract_all(_AMBIENTES).list.last().str.extract(_AMBIENTES, 1)) - 1).clip(0),
        _int(numeric.str.extract_all(_BEDROOM_SHORT).list.last().str.extract(_BEDROOM_SHORT, 1)),
        pl.min_horizontal(_int(in_range.str.extract(_BEDROOM_RANGE, 1)), _int(in_range.str.extract(_BEDROOM_RANGE, 2))),
        _int(numeric.str.extract(_BEDROOM_COUNT, 1)),
        pl.when(numeric.str.contains(_STUDIO)).then(pl.lit(0, pl.Int64)),
    )
    return pl.when(value <= 20).then(value)


def to_number_expr(token: pl.Expr) -> pl.Expr:
    """Polars twin of ``numbers.to_number`` for digit tokens: "5.200" → 5200, "4,5" → 4.5, "1.234,5" → 1234.5."""
    thousands = token.str.contains(r"^\d+(?:[.,]\d{3})+$")
    decimal = token.str.replace(r"[.,](\d+)$", "D${1}").str.replace_all(r"[.,]", "").str.replace("D", ".", literal=True)
    return (pl.when(thousands).then(token.str.replace_all(r"[.,]", "")).otherwise(decimal)
            .cast(pl.Float64, strict=False))


def _timeline(numeric: pl.Expr) -> pl.Expr:
    period = numeric.str.extract_groups(_IN_PERIOD)
    number, unit = to_number_expr(period.struct.field("n")), period.struct.field("unit")
    months = (pl.when(unit.str.contains("^(?:sem|week)")).then((number / 4.345).round(0).clip(1))
              .when(unit.str.contains("^(?:año|year)")).then((number * 12).round(0))
              .otherwise(number.round(0)))
    value = (pl.when(numeric.str.contains(_NOW)).then(pl.lit(0.0))
             .when(numeric.str.contains(_NEXT_MONTH)).then(pl.lit(1.0))
             .when(numeric.str.contains(_NEXT_YEAR)).then(pl.lit(12.0))
             .otherwise(months))
    return pl.when(value <= 120).then(value.cast(pl.Int64))  # beyond ten years is not a timeline


def _numeric(frame: pl.DataFrame) -> pl.Series:
    """Folded text with contacts masked, tokens split by one space and numbers in digits."""
    # Emails and phone numbers are blanked out: their digits are not money, rooms or months.
    frame = frame.with_columns(_unmailed=pl.col("folded").str.replace_all(_EMAIL.pattern, " "))
    masked = _python(frame.with_columns(_g=pl.col("_unmailed").str.contains(_PHONE_RUN)), "_g", _mask_phones,
                     ("_unmailed", "country"), pl.col("_unmailed"))
    frame = frame.with_columns(masked.alias("_masked"))
    frame = frame.with_columns(_g=pl.col("_masked").str.contains(_NUMBER_WORD_GATE))
    tokens = (pl.col("_masked").str.extract_all(_TOKEN).list.join(" ")
              .str.replace_all(r"\b(?:un|uno|una|one)\b", "1"))
    return _python(frame, "_g", words_to_numbers, ("_masked",), tokens)


# --- amounts --------------------------------------------------------------------------------------

def _slice_before(text: pl.Expr, start: pl.Expr, width: int) -> pl.Expr:
    offset = (start - width).clip(0)
    return text.str.slice(offset, start - offset)


def _amounts(messages: pl.DataFrame) -> pl.DataFrame:
    """Per message (``_m``): budget_min/max, currency, period and whether a budget was stated;
    down payment, income and arrears. Each amount is read with its context, as a row.

    The text is cut at every amount (marked, then split), which gives each amount's exact offsets;
    its context (what kind of money it is, ranges, corrections) is then read from the text around it.
    """
    with_digits = messages.filter(pl.col("numeric").str.contains(r"\d")).select("_m", "numeric")
    pieces = with_digits.lazy().select(
        "_m", _p=pl.col("numeric").str.replace_all(_AMOUNT, "\x00${0}\x00").str.split("\x00"),
    ).with_columns(_i=pl.int_ranges(0, pl.col("_p").list.len())).explode("_p", "_i").with_columns(
        _end=pl.col("_p").str.len_chars().cast(pl.Int64).cum_sum(),
    ).with_columns(  # offsets within the message: the running length minus where the message began
        _end=pl.col("_end") - pl.when(pl.col("_i") == 0).then(pl.col("_end") - pl.col("_p").str.len_chars())
        .forward_fill(),
    ).filter(pl.col("_i") % 2 == 1).collect()
    if pieces.is_empty():
        return _no_amounts()
    # Message text and country by row position (``_m`` is the row index of ``messages``).
    pieces = pieces.with_columns(messages["numeric"].gather(pieces["_m"]), messages["country"].gather(pieces["_m"]),
                                 pl.col("_p").str.extract_groups("^" + _AMOUNT).alias("_g")).unnest("_g")
    pre, num, mult, post = pl.col("pre"), pl.col("num"), pl.col("mult"), pl.col("post")
    marker = pl.coalesce(pre, post)
    lucas = mult.is_in(["lucas", "luca", "palos", "palo"])
    local = pl.col("country").replace_strict(COUNTRY_CURRENCY, default=None, return_dtype=pl.String)
    text = pl.col("numeric")
    start = pl.col("_end") - pl.col("_p").str.len_chars()
    amounts = pieces.lazy().with_columns(
        mult_factor=mult.replace_strict(_MULTIPLIERS, default=1.0, return_dtype=pl.Float64),
        currency=(pl.when(marker.is_in(["$", "pesos"]) | lucas)
                  .then(pl.when(lucas).then(pl.lit("CLP")).otherwise(local))
                  .when(marker.is_null() & mult.is_in(["millones", "millon", "mm", "mill", "mil"])).then(local)
                  # "450 millones" names no currency, but in a broker's market it means its pesos.
                  .otherwise(marker.replace_strict(_CURRENCY_WORDS, default=None, return_dtype=pl.String))),
        has_unit=marker.is_not_null() | mult.is_not_null(),
        not_money=mult.is_null() & post.is_null() & text.str.slice(pl.col("_end"), 30).str.contains(_NOT_MONEY_AFTER),
        start=start,
        after=text.str.slice(pl.col("_end"), 25),
        before=_slice_before(text, start, 40),
    ).with_columns(value=to_number_expr(num) * pl.col("mult_factor")
    ).filter(~pl.col("not_money") & pl.col("value").is_not_null()).collect()
    kind: pl.Expr = pl.lit("budget")
    for name, pattern in reversed(_KIND_BEFORE):
        kind = pl.when(pl.col("before").str.contains(pattern)).then(pl.lit(name)).otherwise(kind)
    for name, pattern in reversed(_KIND_AFTER):
        kind = pl.when(pl.col("after").str.contains(pattern)).then(pl.lit(name)).otherwise(kind)
    amounts = amounts.lazy().with_columns(kind=kind).collect()

    stated: dict[str, pl.Expr] = {}
    for name, field in (("down_payment", "down_payment"), ("income", "monthly_income"), ("arrears", "arrears_amount"),
                        ("asking", "asking_price")):
        keep = (pl.col("kind") == name) & (pl.col("has_unit") | (pl.col("value") >= 100))
        stated[field] = pl.col("value").filter(keep).last()
    asking = (pl.col("kind") == "asking") & (pl.col("has_unit") | (pl.col("value") >= 100))
    stated["asking_currency"] = pl.col("currency").filter(asking).last()
    others = amounts.group_by("_m").agg(**stated)

    budget = _budget(amounts.filter(pl.col("kind") == "budget"))
    return others.join(budget, on="_m", how="full", coalesce=True)


def _between(text: pl.Expr, start: pl.Expr) -> pl.Expr:
    """Text from the previous amount's end to this one's start (null for a message's first amount)."""
    previous_end = pl.col("_end").shift(1)
    return pl.when(pl.col("_m") == pl.col("_m").shift(1)).then(
        text.str.slice(previous_end.fill_null(0), (start - previous_end).fill_null(0).clip(0)))


def _budget(candidates: pl.DataFrame) -> pl.DataFrame:
    same = pl.col("_m") == pl.col("_m").shift(1)
    text = pl.col("numeric")
    # "hasta 600 lucas, máximo 650": a bare correction right after an amount takes its unit.
    ratio = pl.col("value") * pl.col("mult_factor").shift(1) / pl.col("value").shift(1)
    corrected = (same & ~pl.col("has_unit") & pl.col("has_unit").shift(1)
                 & _between(text, pl.col("start")).str.contains(_BUDGET_CUE) & ratio.is_between(0.5, 2))
    candidates = candidates.lazy().with_columns(
        value=pl.when(corrected).then(pl.col("value") * pl.col("mult_factor").shift(1)).otherwise(pl.col("value")),
        currency=pl.when(corrected).then(pl.col("currency").shift(1)).otherwise(pl.col("currency")),
        has_unit=pl.col("has_unit") | corrected,
    ).collect()
    # A bare small number counts as money only as the low end of a range whose high end has a unit.
    next_same = pl.col("_m") == pl.col("_m").shift(-1)
    range_next = _between(text, pl.col("start")).str.contains(_RANGE).shift(-1)
    in_range = next_same & range_next & pl.col("has_unit").shift(-1)
    kept = candidates.lazy().filter(
        pl.col("has_unit") | in_range.fill_null(False)
        | ((pl.col("value") >= 1000) & _slice_before(text, pl.col("start"), 30).str.contains(_BUDGET_CUE)))
    pair = (same & _between(text, pl.col("start")).str.contains(_RANGE)).fill_null(False)
    low_value = (pl.when(pl.col("has_unit").shift(1)).then(pl.col("value").shift(1))
                 .otherwise(pl.col("value").shift(1) * pl.col("mult_factor")))  # "entre 4 y 5 millones"
    low_currency = pl.coalesce(pl.col("currency").shift(1), pl.col("currency"))
    high_currency = pl.coalesce(pl.col("currency"), pl.col("currency").shift(1))
    budget = kept.with_columns(
        pair=pair, low=low_value, low_currency=low_currency, high_currency=high_currency,
        minimum=_slice_before(text, pl.col("start"), 14).str.contains(_MIN_CUE),
    ).collect()
    per_message = budget.group_by("_m").agg(
        pl.col("pair").any().alias("has_pair"),
        pl.col("low").filter(pl.col("pair")).last(),
        pl.col("value").filter(pl.col("pair")).last().alias("high"),
        pl.col("high_currency").filter(pl.col("pair")).last(),
        pl.col("value").last().alias("last"),
        pl.col("currency").last().alias("last_currency"),
        pl.col("minimum").last(),
        pl.col("numeric").first().str.contains(_MONTHLY).alias("monthly"),
    )
    return per_message.select(
        "_m",
        pl.lit(True).alias("has_budget"),
        pl.when(pl.col("has_pair")).then(pl.min_horizontal("low", "high"))
        .when(pl.col("minimum")).then(pl.col("last")).alias("budget_min"),
        pl.when(pl.col("has_pair")).then(pl.max_horizontal("low", "high"))
        .when(~pl.col("minimum")).then(pl.col("last")).alias("budget_max"),
        pl.when(pl.col("has_pair")).then(pl.col("high_currency")).otherwise(pl.col("last_currency"))
        .alias("budget_currency"),
        pl.when(pl.col("monthly")).then(pl.lit("month")).alias("budget_period"),
    )


def _no_amounts() -> pl.DataFrame:
    return pl.DataFrame(schema={
        "_m": pl.UInt32, "down_payment": pl.Float64, "monthly_income": pl.Float64, "arrears_amount": pl.Float64,
        "asking_price": pl.Float64, "asking_currency": pl.String,
        "has_budget": pl.Boolean, "budget_min": pl.Float64, "budget_max": pl.Float64, "budget_currency": pl.String,
        "budget_period": pl.String})


# --- places ---------------------------------------------------------------------------------------

def _mentions(messages: pl.DataFrame) -> pl.DataFrame:
    """Every place named, in order: (_c, _m, _k, place, ruled_out)."""
    found = []
    for (country,), part in messages.group_by("country"):
        names = place_names(country)
        alternation = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
        mentions = part.select(
            "_c", "_m",
            pl.col("folded").str.extract_all(rf"(?:{_RULED_OUT}|{_NAME_CUE})?\b(?:{alternation})\b").alias("_x"),
        ).with_columns(_k=pl.int_ranges(0, pl.col("_x").list.len())).explode("_x", "_k").drop_nulls("_x")
        found.append(mentions.with_columns(
            place=pl.col("_x").str.replace(f"^(?:{_RULED_OUT}|{_NAME_CUE})", "")
            .replace_strict(names, default=None, return_dtype=pl.String),
            ruled_out=pl.col("_x").str.contains(f"^{_RULED_OUT}"),
            named=pl.col("_x").str.contains(f"^{_NAME_CUE}"),  # "me llamo Santiago": a person, not a place
        ).filter(~pl.col("named") & pl.col("place").is_not_null()).drop("_x", "named"))
    return pl.concat(found) if found else pl.DataFrame(schema={"_c": pl.Int64})


def _locations(mentions: pl.DataFrame) -> pl.DataFrame:
    """Named places accumulate in the order first named; "no en X", "ya no X", "descarto X" remove one
    (a place named again after being ruled out comes back, at the end)."""
    if mentions.is_empty():
        return pl.DataFrame(schema={"_c": pl.Int64, "locations": pl.List(pl.String)})
    ordered = mentions.sort("_m", "_k").with_row_index("_rank")
    removed = ordered.filter("ruled_out").group_by("_c", "place").agg(pl.col("_rank").max().alias("_cut"))
    kept = (ordered.filter(~pl.col("ruled_out")).join(removed, on=["_c", "place"], how="left")
            .filter(pl.col("_cut").is_null() | (pl.col("_rank") > pl.col("_cut")))
            .group_by("_c", "place").agg(pl.col("_rank").min()))
    return kept.sort("_rank").group_by("_c", maintain_order=True).agg(pl.col("place").alias("locations"))


# --- the qualifier --------------------------------------------------------------------------------

FACT_COLUMNS = ("name", "phone", "email", "operation", "property_type", "bedrooms_min", "budget_min", "budget_max",
                "budget_currency", "budget_period", "locations", "timeline_months", "financing", "down_payment",
                "monthly_income", "dicom_status", "arrears_amount", "opted_out", "commitment", "commitment_at",
                "commitment_when", "hesitation", "urgency_reason", "asking_price", "asking_currency", "summary")


def _stances(per_message: pl.DataFrame) -> pl.DataFrame:
    """Each lead message's stance (accepted, postponed, declined) and, when it accepts, what and when."""
    value, kind = stance(pl.col("folded"), pl.col("_proposed"))
    out = per_message.with_columns(_stance=value, _kind=kind)
    accepted = out["_stance"].eq("accepted").fill_null(False).arg_true()
    words = pl.repeat(None, out.height, dtype=pl.String, eager=True)
    dated = pl.repeat(None, out.height, dtype=pl.Datetime("us"), eager=True)
    if accepted.len():
        read = [when(lead, agent, at) for lead, agent, at in
                out[accepted].select("folded", "_agent_folded", "_at").iter_rows()]
        words = words.scatter(accepted, pl.Series([w for w, _ in read], dtype=pl.String))
        dated = dated.scatter(accepted, pl.Series([d for _, d in read], dtype=pl.Datetime("us")))
    return out.with_columns(words.alias("_when"), dated.alias("_when_at"))


def _grouped(messages: pl.DataFrame) -> pl.DataFrame:
    """The messages with each conversation's together and in ``seq`` order (sorted only if they are not)."""
    conversation, seq = pl.col("conversation"), pl.col("seq")
    starts = (conversation != conversation.shift(1)).fill_null(True)
    check = messages.select(runs=starts.sum(), distinct=conversation.n_unique(),
                            ordered=(starts | (seq >= seq.shift(1))).all())
    runs, distinct, ordered = check.row(0)
    if runs == distinct and ordered:
        return messages
    return messages.sort("conversation", "seq", maintain_order=True)


# family → (gate, the text it scans, the patterns it stands for); the tests hold every gate to its patterns
GATES = {
    "operation": (_OPERATION_GATE, "folded", [p for _, p in _OPERATION]),
    "property_type": (_PROPERTY_GATE, "folded", [p for _, p in _PROPERTY]),
    "financing": (_FINANCING_GATE, "folded", [p for _, p in _FINANCING]),
    "dicom_status": (_DICOM_GATE, "folded", [p for _, p in _DICOM]),
    "bedrooms_min": (_BEDROOM_GATE, "numeric", [_BEDROOM_RANGE, _BEDROOM_SHORT, _BEDROOM_COUNT, _AMBIENTES, _STUDIO]),
    "timeline_months": (_TIMELINE_GATE, "numeric", [_NOW, _NEXT_MONTH, _NEXT_YEAR, _IN_PERIOD]),
}
CHUNK_ROWS = 1_000_000


def qualify_frame(messages: pl.DataFrame, chunk_rows: int = CHUNK_ROWS) -> pl.DataFrame:
    """Columns in: conversation (any key), seq (order), role ("lead"/"agent"), text, country (ISO code or null).

    Out, one row per conversation: ``_c`` (its position), conversation, the Qualification fields
    (``FACT_COLUMNS``) and lead_messages (non-blank lead turns). Conversations come out in input
    order when each one's messages are together and in order (as ``assemble`` gives them), else
    sorted by key. Large inputs are cut at conversation boundaries into chunks of about
    ``chunk_rows`` messages, read on one thread per core (polars releases the GIL, so the Python
    parts of one chunk overlap the Rust parts of another).
    """
    if messages.height <= chunk_rows:
        return _qualify_chunk(messages)
    messages = _grouped(messages)
    starts = messages.select((pl.col("conversation") != pl.col("conversation").shift(1)).fill_null(True)
                             .arg_true())["conversation"]
    wanted = pl.Series(range(chunk_rows, messages.height, chunk_rows))
    nearest = starts.gather(starts.search_sorted(wanted).clip(0, starts.len() - 1))  # a conversation's first row
    cuts = sorted({0, *nearest.to_list(), messages.height})
    chunks = [messages.slice(a, b - a) for a, b in itertools.pairwise(cuts) if b > a]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        parts = list(pool.map(_qualify_chunk, chunks))
    offsets = itertools.accumulate((part.height for part in parts[:-1]), initial=0)
    return pl.concat([part.with_columns(pl.col("_c") + offset) for part, offset in zip(parts, offsets, strict=True)])


def _qualify_chunk(messages: pl.DataFrame) -> pl.DataFrame:
    if messages.is_empty():
        return pl.DataFrame(schema={"_c": pl.Int64, "conversation": messages.schema.get("conversation", pl.Null),
                                    **QUALIFICATION_SCHEMA, "lead_messages": pl.Int32})
    messages = _grouped(messages)
    starts = (pl.col("conversation") != pl.col("conversation").shift(1)).fill_null(True)
    messages = messages.with_columns(_c=starts.cum_sum().cast(pl.Int64) - 1)
    conversations = messages.filter(starts).select("_c", "conversation")
    at = pl.col("at").cast(pl.Datetime("us")) if "at" in messages.columns else pl.lit(None, pl.Datetime("us"))
    messages = messages.with_columns(
        # the agent's last message before each of the lead's: what a bare "sí" or "no" answers
        _agent=pl.when(pl.col("role") != "lead").then(pl.col("text").str.slice(0, MAX_TEXT)).forward_fill().over("_c"),
        _at=at.forward_fill().over("_c"),  # a message without a time is as late as the last one with one
    )
    messages = messages.with_columns(_fold(messages, "text").alias("_folded")).with_columns(
        _proposed=proposals(pl.col("_folded"), pl.col("role"), pl.col("_c"))).drop("_folded")
    lead = (messages.filter((pl.col("role") == "lead") & (pl.col("text").str.strip_chars().str.len_chars() > 0))
            .select("_c", pl.col("text").str.slice(0, MAX_TEXT), pl.col("country").cast(pl.String).str.to_uppercase(),
                    "_agent", "_at", "_proposed")
            .with_row_index("_m"))
    lead = lead.with_columns(_fold(lead, "text").alias("folded"), _fold(lead, "_agent").alias("_agent_folded"))
    gates = lead.with_columns(
        _name=pl.col("text").str.contains("(?i)" + _NAME_PATTERN),
        _email=pl.col("folded").str.contains(r"@|arroba|\bat\b"), _phone=pl.col("text").str.contains(_PHONE_GATE),
        _comma=pl.col("text").str.contains(_COMMA_NAME_GATE),
    ).with_columns(  # the first name cue, found here; Python only judges it (and looks further if it is no name)
        _cue=pl.when("_name").then(pl.col("text").str.extract("(?i)(" + _NAME_PATTERN + ")", 1)),
        _found=pl.when("_name").then(pl.col("text").str.extract("(?i)" + _NAME_PATTERN, 1)),
    )
    none = pl.lit(None, pl.String)
    lead = lead.with_columns(
        name=pl.coalesce(_python(gates, "_name", _name, ("text", "_cue", "_found"), none),
                         _python(gates, "_comma", _comma_name, ("text", "_agent", "country"), none)),
        email=_python(gates, "_email", _email, ("text", "folded"), none),
        phone=_python(gates, "_phone", _phone, ("text", "country"), none),
        numeric=_numeric(lead),
    )
    folded, numeric = pl.col("folded"), pl.col("numeric")
    per_message = lead.with_columns(
        *_gated(lead, "folded", _OPERATION_GATE, operation=_operation(folded)),
        *_gated(lead, "folded", _PROPERTY_GATE, property_type=_last_cue(folded, _PROPERTY)),
        *_gated(lead, "folded", _FINANCING_GATE, financing=_first_rule(folded, _FINANCING)),
        *_gated(lead, "folded", _DICOM_GATE, dicom_status=_first_rule(folded, _DICOM)),
        *_gated(lead, "numeric", _BEDROOM_GATE, bedrooms_min=_bedrooms(numeric)),
        *_gated(lead, "numeric", _TIMELINE_GATE, timeline_months=_timeline(numeric)),
        *_gated(lead, "folded", URGENCY_GATE, urgency_reason=urgency(folded)),
    ).lazy().with_columns(
        opted_out=folded.str.contains(_OPT_OUT),
        _es=folded.str.count_matches(_SPANISH),
        _en=folded.str.count_matches(_ENGLISH),
    ).collect().join(_amounts(lead), on="_m", how="left", maintain_order="left")
    per_message = _stances(per_message)

    last = {c: pl.col(c).drop_nulls().last() for c in ("name", "email", "phone", "operation", "property_type",
                                                       "bedrooms_min", "timeline_months", "financing", "down_payment",
                                                       "monthly_income", "arrears_amount", "urgency_reason")}
    # The latest stance wins: a later "te aviso" undoes a "dale", a later "sí" a "todavía no".
    latest = pl.col("_stance").is_not_null()
    stated_stance = {
        "commitment": pl.col("_kind").filter(latest).last(),
        "commitment_at": pl.col("_when_at").filter(latest).last(),
        "commitment_when": pl.col("_when").filter(latest).last(),
        "hesitation": pl.col("_stance").filter(latest).last(),
        "asking_price": pl.col("asking_price").filter(pl.col("asking_price").is_not_null()).last(),
        "asking_currency": pl.col("asking_currency").filter(pl.col("asking_price").is_not_null()).last(),
    }
    budget = pl.col("has_budget").fill_null(False)
    debt = pl.col("dicom_status").drop_nulls()
    facts = per_message.group_by("_c", maintain_order=True).agg(
        **last,
        **stated_stance,
        # Owing money does not take a lead out of DICOM; only a statement that they are clean does.
        dicom_status=pl.when((debt.last() == "has_debt") & (debt.filter(debt != "has_debt").last() == "dirty"))
        .then(pl.lit("dirty")).otherwise(debt.last()),
        opted_out=pl.col("opted_out").any(),
        budget_min=pl.col("budget_min").filter(budget).last(),
        budget_max=pl.col("budget_max").filter(budget).last(),
        budget_currency=pl.col("budget_currency").filter(budget).drop_nulls().last(),
        budget_period=pl.col("budget_period").filter(budget).last(),
        lead_messages=pl.len(),
        _spanish=pl.col("_es").sum() >= pl.col("_en").sum(),
    )
    facts = facts.join(_locations(_mentions(lead)), on="_c", how="left", maintain_order="left").with_columns(
        hesitation=pl.when(pl.col("hesitation") != "accepted").then(pl.col("hesitation")))
    has_budget = pl.col("budget_min").is_not_null() | pl.col("budget_max").is_not_null()
    facts = facts.with_columns(
        # nobody takes a mortgage or a housing subsidy to rent
        operation=pl.when(pl.col("operation").is_null()
                          & pl.col("financing").is_in(["mortgage_preapproved", "mortgage_needed", "subsidy"]))
        .then(pl.lit("buy")).otherwise(pl.col("operation")),
        locations=pl.col("locations").fill_null(pl.lit([], pl.List(pl.String))),
    )
    # A seller's amounts are what they ask for the property, not what they can spend.
    seller = (pl.col("operation") == "sell").fill_null(False)
    facts = facts.with_columns(
        asking_price=pl.when(seller).then(pl.coalesce("asking_price", "budget_max", "budget_min"))
        .otherwise(pl.col("asking_price")),
        asking_currency=pl.when(seller).then(pl.coalesce(pl.when(pl.col("asking_price").is_not_null())
                                                         .then(pl.col("asking_currency")), "budget_currency"))
        .otherwise(pl.col("asking_currency")),
        **{c: pl.when(seller).then(None).otherwise(pl.col(c)) for c in ("budget_min", "budget_max", "budget_currency",
                                                                        "budget_period")},
    ).with_columns(
        budget_period=pl.when(pl.col("budget_period").is_not_null()).then(pl.col("budget_period"))
        .when((pl.col("operation") == "rent") & pl.col("budget_max").is_not_null()).then(pl.lit("month"))
        .when(has_budget).then(pl.lit("total")),
    )
    facts = with_summary(facts, pl.col("_spanish"))
    out = conversations.join(facts, on="_c", how="left", maintain_order="left")
    return out.with_columns(
        opted_out=pl.col("opted_out").fill_null(False),
        locations=pl.col("locations").fill_null(pl.lit([], pl.List(pl.String))),
        lead_messages=pl.col("lead_messages").fill_null(0).cast(pl.Int32),
    ).select("_c", "conversation", *FACT_COLUMNS, "lead_messages")


_SPANISH = (r"\b(?:hola|busco|quiero|tengo|para|con|dormitorios?|presupuesto|gracias|depto|casa|arriendo|comprar|el|la"
            r"|los|las|de|en|que|mi|me|mas|llamen|escriban|baja|si|soy|estoy|buenas?)\b")
_ENGLISH = (r"\b(?:the|i|i'm|want|to|my|is|and|looking|for|hi|hello|please|bedrooms?|budget|we|need|call"
            r"|stop)\b")


def messages_frame(conversations: Sequence[tuple[Any, Sequence[Turn], str | None]]) -> pl.DataFrame:
    """(key, turns, country) per conversation → the frame ``qualify_frame`` reads, in the same order.

    A conversation without turns gets one empty agent turn, so it still comes out (with no facts).
    """
    rows: list[tuple[Any, int, str, str, str | None, datetime | None]] = []
    for key, turns, country in conversations:
        rows.extend((key, seq, turn.role, turn.text, country, turn.at) for seq, turn in enumerate(turns))
        if not turns:
            rows.append((key, 0, "agent", "", country, None))
    return pl.DataFrame(rows, schema=["conversation", "seq", "role", "text", "country", "at"], orient="row",
                        schema_overrides={"seq": pl.Int64, "role": pl.String, "text": pl.String, "country": pl.String,
                                          "at": pl.Datetime("us")})


def qualifications(rows: pl.DataFrame) -> list[Qualification]:
    return [Qualification(**{k: row[k] for k in FACT_COLUMNS}) for row in rows.iter_rows(named=True)]


def qualify(turns: Sequence[Turn], country: str | None = None) -> Qualification:
    """One conversation (a convenience for the LLM fallback and tests; bulk work uses ``qualify_frame``)."""
    return qualifications(qualify_frame(messages_frame([(0, turns, country)])))[0]
