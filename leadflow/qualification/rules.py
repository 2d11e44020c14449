"""The offline rules qualifier: Spanish (Chile, Mexico, Argentina, Spain) and English, as people write.

Reads the lead's turns in order; every fact a later turn states replaces the earlier one ("the
latest statement wins"), so a lead who corrects their budget is read correctly. A fact that is
not stated stays None. Pure: no I/O, no clock, deterministic.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from leadflow.phones import to_e164
from leadflow.qualification.numbers import fold, to_number, words_to_numbers
from leadflow.qualification.places import find_places
from leadflow.qualification.schema import Qualification


@dataclass(frozen=True)
class Turn:
    role: Literal["lead", "agent"]
    text: str


COUNTRY_CURRENCY = {"CL": "CLP", "MX": "MXN", "AR": "ARS", "ES": "EUR", "US": "USD"}

# --- cues (on folded text: lowercase, no accents, ñ kept) ----------------------------------------

_NEG = r"(?<!no )(?<!ni )(?<!nunca )(?<!not )(?<!don't )(?<!dont )"
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
    ("apartment", r"\bdeptos?\b|\bdptos?\b|departamentos?|\bdepas?\b|apartamentos?|monoambiente|\bun piso\b"
                  r"|\bapartments?\b|\bflat\b|\bcondo\b|\bstudio\b"),
]
_BEDROOM_WORDS = (r"(?:dormitorios?|dorms?\b|habitaciones|habitacion|recamaras?|piezas|cuartos|bedrooms?|beds?\b"
                  r"|\bbr\b|\bbd\b)")
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
_NAME = re.compile(
    r"(?:me llamo|mi nombre es|my name is|soy|i am|i'm|this is|le habla|te habla|habla)\s+"
    r"([A-Za-zÁÉÍÓÚÑÜáéíóúñü]+(?:\s+[A-Za-zÁÉÍÓÚÑÜáéíóúñü]+){0,3})", re.IGNORECASE)
_NAME_STOP = {"y", "and", "de", "del", "la", "el", "los", "en", "tengo", "busco", "quiero", "estoy", "vivo", "from",
              "con", "para", "interesado", "interesada", "buscando", "looking", "calling", "interested", "i", "a",
              "an", "the", "un", "una", "muy", "bien", "mi", "my", "su", "tu", "que", "porque", "pero", "but",
              "with", "desde", "aqui", "here", "necesito", "trabajo", "soltero", "soltera", "casado",
              "casada", "medico", "ingeniero", "profesora", "profesor", "of", "por", "al"}
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_SPOKEN_EMAIL = re.compile(r"([a-z0-9ñ]+(?:\s+(?:punto|guion bajo|guion|dot|underscore)\s+[a-z0-9ñ]+)*)\s+(?:arroba|at)"
                           r"\s+([a-z0-9-]+(?:\s+(?:punto|dot)\s+[a-z0-9-]+)+)")
_PHONE = re.compile(r"(?:\+|00)?\d[\d\s().-]{6,}\d")

# --- amounts -------------------------------------------------------------------------------------

_MULTIPLIERS = {"millones": 1e6, "millon": 1e6, "mm": 1e6, "mill": 1e6, "palos": 1e6, "palo": 1e6, "million": 1e6,
                "millions": 1e6, "lucas": 1e3, "luca": 1e3, "mil": 1e3, "k": 1e3, "thousand": 1e3, "grand": 1e3}
_CURRENCY_WORDS = {"uf": "UF", "u.f.": "UF", "usd": "USD", "us$": "USD", "u$s": "USD", "dolares": "USD",
                   "dollars": "USD", "dolar": "USD", "mxn": "MXN", "ars": "ARS", "eur": "EUR", "euros": "EUR",
                   "€": "EUR", "clp": "CLP"}
_AMOUNT = re.compile(
    r"(?P<pre>\bu\.?f\.?\b|\busd\b|us\$|u\$s|\bmxn\b|\bars\b|\beur\b|\bclp\b|€|\$)?\s*"
    r"(?P<num>\d+(?:[.,]\d+)*)\s*"
    r"(?P<mult>millones|millon|mm\b|mill\b|palos?\b|lucas?\b|mil\b|k\b|thousand|grand|millions?)?\s*"
    r"(?P<post>\bu\.?f\.?(?![a-z])|\busd\b|dolares|dollars|dolar\b|\bmxn\b|\bars\b|\beur\b|euros|€|\bclp\b"
    r"|\bpesos\b)?")
_NOT_MONEY_AFTER = re.compile(r"\s*(?:%|por ciento|percent|d\d|dorm|habitac|recamar|pieza|cuarto|bed|br\b|bd\b|ambiente"
                              r"|ban|bath|mes|month|sem|week|an(?:o|os)\b|año|year|dia|day|m2|mt|metro|sq|piso|floor"
                              r"|estac|parking|min|hora|hour|hijo|niño|kid|person|persona|auto|cuadra|block|km)")
_KIND_BEFORE = [
    ("down_payment", re.compile(r"(?:\bpie\b|enganche|down ?payment|anticipo|entrada)[^.]{0,25}$")),
    ("income", re.compile(r"(?:sueldo|\bgano\b|ganamos|ingresos?|renta liquida|mi renta|renta mensual|nuestra renta"
                          r"|income|\bearn|salary|\bmake\b|liquido)[^.]{0,25}$")),
    ("arrears", re.compile(r"(?:\bdebo\b|deuda|adeudo|morosidad|arrears|\bowe\b)[^.]{0,25}$")),
]
_KIND_AFTER = [
    ("down_payment", re.compile(r"^\s*(?:de|para el|para|como|of|for the|as)?\s*(?:pie|enganche|down ?payment"
                                r"|anticipo)")),
    ("income", re.compile(r"^\s*(?:liquidos?|de sueldo|al mes de sueldo|de renta liquida|de ingresos?|income)")),
    ("arrears", re.compile(r"^\s*(?:de deuda|en deudas?|atrasad|morosos?|in debt)")),
]
_BUDGET_CUE = re.compile(r"(?:presupuesto|hasta|entre|maximo|tope|pagar|precio|valor|cuesta|alrededor de|unos"
                         r"|budget|up to|around|about|between|spend|afford|price)[^.]{0,20}$")
_MIN_CUE = re.compile(r"(?:desde|minimo|al menos|at least|from|sobre|mas de|more than|over)\s*$")
_MONTHLY = re.compile(r"al mes|mensual|por mes|/mes|per month|a month|monthly|mensuales")
_RANGE = re.compile(r"^\s*(?:y|a|-|–|hasta|and|to)\s*$")


@dataclass
class _Amount:
    start: int
    end: int
    value: float
    currency: str | None
    has_unit: bool  # a currency or a multiplier was written
    kind: str = "budget"


def _amounts(text: str, country: str | None) -> list[_Amount]:
    found: list[_Amount] = []
    for m in _AMOUNT.finditer(text):
        number = to_number(m.group("num"))
        if number is None:
            continue
        if _NOT_MONEY_AFTER.match(text[m.end("num"):]) and not m.group("mult") and not m.group("post"):
            continue
        mult = (m.group("mult") or "").strip()
        value = number * _MULTIPLIERS.get(mult, 1.0)
        marker = (m.group("pre") or m.group("post") or "").strip().replace(" ", "")
        currency = _CURRENCY_WORDS.get(marker.rstrip(".")) if marker not in ("$", "pesos") else None
        if marker in ("u.f.", "uf", "u.f", "uf."):
            currency = "UF"
        if marker in ("$", "pesos") or mult in ("lucas", "luca", "palos", "palo"):
            currency = "CLP" if mult in ("lucas", "luca", "palos", "palo") else COUNTRY_CURRENCY.get(country or "")
        elif not marker and mult in ("millones", "millon", "mm", "mill", "mil"):
            # "450 millones" names no currency, but in a broker's market it means its pesos.
            currency = COUNTRY_CURRENCY.get(country or "")
        found.append(_Amount(m.start(), m.end(), value, currency, bool(marker or mult)))
    return found


def _classify(amounts: list[_Amount], text: str) -> list[_Amount]:
    for a in amounts:
        before, after = text[max(0, a.start - 40):a.start], text[a.end:a.end + 25]
        for kind, pattern in _KIND_AFTER:
            if pattern.search(after):
                a.kind = kind
                break
        else:
            for kind, pattern in _KIND_BEFORE:
                if pattern.search(before):
                    a.kind = kind
                    break
    return amounts


# --- the qualifier -----------------------------------------------------------------------------

_NEGATED = re.compile(r"(?:\bno|\bni|\bnot|n't)\s+(?:\w+\s+){0,1}$")


def _alternation(rules: list[tuple[str, str]]) -> tuple[re.Pattern[str], dict[str, tuple[int, str]]]:
    """One pattern for a whole rule list: each rule a named group; the group name gives value and priority."""
    groups = {f"r{i}": (i, value) for i, (value, _) in enumerate(rules)}
    pattern = re.compile("|".join(f"(?P<r{i}>{rule})" for i, (_, rule) in enumerate(rules)))
    return pattern, groups


_OPERATION_ALT = _alternation(_OPERATION)
_PROPERTY_ALT = _alternation(_PROPERTY)
_INVEST = re.compile(_NEG + _OPERATION[0][1])
_FINANCING_RE = [(value, re.compile(rule)) for value, rule in _FINANCING]
_DICOM_RE = [(value, re.compile(rule)) for value, rule in _DICOM]
_OPT_OUT_RE = re.compile(_OPT_OUT)


def _last_match(compiled: tuple[re.Pattern[str], dict[str, tuple[int, str]]], text: str) -> str | None:
    """The value whose cue appears last in the text (ties: earlier rule wins), ignoring negated cues."""
    pattern, groups = compiled
    best: tuple[int, int, str] | None = None
    for m in pattern.finditer(text):
        if _NEGATED.search(text[max(0, m.start() - 12):m.start()]):
            continue
        priority, value = groups[m.lastgroup or ""]
        if best is None or (m.start(), -priority) > best[:2]:
            best = (m.start(), -priority, value)
    return best[2] if best else None


def _operation(folded: str) -> str | None:
    # "invertir en un depto para arrendar" is buy-to-let: investing wins over the renting it mentions.
    if _INVEST.search(folded):
        return "invest"
    return _last_match(_OPERATION_ALT, folded)


def _first_match(rules: list[tuple[str, re.Pattern[str]]], text: str) -> str | None:
    for value, pattern in rules:
        if pattern.search(text):
            return value
    return None


def _name(text: str) -> str | None:
    for m in _NAME.finditer(text):
        cue = fold(m.group(0).split()[0])
        words = []
        for word in m.group(1).split():
            if fold(word) in _NAME_STOP:
                break
            words.append(word)
        if not words:
            continue
        # "soy"/"I'm"/"this is" introduce names only when capitalised ("soy Camila", not "soy casado").
        if cue in ("soy", "i", "i'm", "this", "habla", "le", "te") and not words[0][0].isupper():
            continue
        if find_places(fold(" ".join(words)), None) and len(words) == 1 and cue in ("soy",):
            continue
        return " ".join(w[:1].upper() + w[1:].lower() if w.islower() or w.isupper() else w for w in words)
    return None


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


def _phone(text: str, country: str | None) -> str | None:
    for m in _PHONE.finditer(text):
        phone = to_e164(m.group(0), country)
        if phone:
            return phone
    return None


def _mask_contacts(folded: str, country: str | None) -> str:
    """Blank out emails and valid phone numbers: their digits are not money, rooms or months.

    Only spans that are valid numbers are masked, so "1.200.000" stays an amount.
    """
    folded = _EMAIL.sub(" ", folded)
    return _PHONE.sub(lambda m: " " if "." not in m.group(0) and to_e164(m.group(0), country) else m.group(0), folded)


_BEDROOM_RANGE = re.compile(rf"(\d+)\s*(?:o|a|-|or|to)\s*(\d+)\s*{_BEDROOM_WORDS}")
_BEDROOM_SHORT = re.compile(r"\b(\d+)\s*d\s*(?:\+\s*)?(\d+)\s*b\b")  # 2d2b, 3d+2b
_BEDROOM_COUNT = re.compile(rf"(\d+)\s*{_BEDROOM_WORDS}")
_AMBIENTES = re.compile(r"(\d+)\s*ambientes?")
_STUDIO = re.compile(r"monoambiente|\bstudio\b")
_NOW = re.compile(r"lo antes posible|cuanto antes|urgente|de inmediato|inmediat|ya mismo|\basap\b|right away"
                  r"|immediately|this month|este mes")
_NEXT_MONTH = re.compile(r"proximo mes|next month|el mes que viene")
_NEXT_YEAR = re.compile(r"proximo año|next year|el año que viene")
_IN_PERIOD = re.compile(r"(?:en|dentro de|within|in|para)\s+(?:unos?|unas|about|around|aprox\.?|mas o menos|como)?\s*"
                        r"(\d+(?:[.,]\d+)?)\s*(meses|mes|months?|semanas?|weeks?|años|año|years?)")
_RULED_OUT = re.compile(r"(?:\bno\b|ya no|descart\w*|excepto|menos|not in|not|except)\s+(?:en\s+|in\s+)?$")
_NAME_CUE = re.compile(r"(?:llamo|nombre es|soy|name is)\s+$")


def _bedrooms(text: str) -> int | None:
    if not any(ch.isdigit() for ch in text):
        return 0 if _STUDIO.search(text) else None
    value: int | None = None
    for m in _BEDROOM_RANGE.finditer(text):
        value = min(int(m.group(1)), int(m.group(2)))
    for m in _BEDROOM_SHORT.finditer(text):
        value = int(m.group(1))
    for m in _BEDROOM_COUNT.finditer(text):
        value = int(m.group(1)) if value is None else value
    for m in _AMBIENTES.finditer(text):
        value = max(int(m.group(1)) - 1, 0)
    if value is None and _STUDIO.search(text):
        value = 0
    return value if value is not None and value <= 20 else None


def _timeline(text: str) -> int | None:
    if _NOW.search(text):
        return 0
    if _NEXT_MONTH.search(text):
        return 1
    if _NEXT_YEAR.search(text):
        return 12
    m = _IN_PERIOD.search(text)
    if not m:
        return None
    number = to_number(m.group(1)) or 0
    unit = m.group(2)
    if unit.startswith(("sem", "week")):
        return max(1, round(number / 4.345))
    if unit.startswith(("año", "year")):
        return round(number * 12)
    return round(number)


def _locations(current: list[str], folded: str, country: str | None, name: str | None) -> list[str]:
    """Named places accumulate; "no en X", "ya no X", "descarto X" remove one."""
    name_folded = fold(name) if name else ""
    places = list(current)
    for position, place in find_places(folded, country):
        if name_folded and fold(place) in name_folded and _NAME_CUE.search(folded[max(0, position - 16):position]):
            continue  # "me llamo Santiago": a person, not a place
        before = folded[max(0, position - 20):position]
        if _RULED_OUT.search(before):
            if place in places:
                places.remove(place)
            continue
        if place not in places:
            places.append(place)
    return places


def qualify(turns: Sequence[Turn], country: str | None = None) -> Qualification:
    """Read the lead's turns in order; later statements replace earlier ones."""
    country = country.upper() if country else None
    facts: dict[str, Any] = {"locations": []}
    for turn in turns:
        if turn.role != "lead" or not turn.text or not turn.text.strip():
            continue
        text = turn.text[:20_000]  # a pasted novel is not a lead; its first pages are enough
        folded = fold(text)
        numeric = words_to_numbers(_mask_contacts(folded, country))
        for key, value in (("name", _name(text)), ("email", _email(text, folded)), ("phone", _phone(text, country)),
                           ("operation", _operation(folded)),
                           ("property_type", _last_match(_PROPERTY_ALT, folded)), ("bedrooms_min", _bedrooms(numeric)),
                           ("timeline_months", _timeline(numeric)), ("financing", _first_match(_FINANCING_RE, folded))):
            if value is not None:
                facts[key] = value
        dicom = _first_match(_DICOM_RE, folded)
        # Owing money does not take a lead out of DICOM; only a statement that they are clean does.
        if dicom is not None and not (facts.get("dicom_status") == "dirty" and dicom == "has_debt"):
            facts["dicom_status"] = dicom
        if _OPT_OUT_RE.search(folded):
            facts["opted_out"] = True
        facts["locations"] = _locations(facts["locations"], folded, country, facts.get("name"))
        _read_amounts(facts, numeric, country)
    if facts.get("operation") is None and facts.get("financing") in ("mortgage_preapproved", "mortgage_needed",
                                                                     "subsidy"):
        facts["operation"] = "buy"  # nobody takes a mortgage or a housing subsidy to rent
    if facts.get("operation") == "rent" and facts.get("budget_max") is not None and not facts.get("budget_period"):
        facts["budget_period"] = "month"
    if (facts.get("budget_min") is not None or facts.get("budget_max") is not None) and not facts.get("budget_period"):
        facts["budget_period"] = "total"
    facts["summary"] = summarize(facts, turns)
    return Qualification(**facts)


def _read_amounts(facts: dict[str, Any], text: str, country: str | None) -> None:
    amounts = _classify(_amounts(text, country), text)
    candidates = [a for a in amounts if a.kind == "budget"]
    for previous, amount in itertools.pairwise(candidates):
        # "hasta 600 lucas, máximo 650": a bare correction right after an amount takes its unit.
        if not amount.has_unit and previous.has_unit and _BUDGET_CUE.search(text[previous.end:amount.start]):
            unit = _unit_of(previous, text)
            if 0.5 <= amount.value * unit / previous.value <= 2:
                amount.value *= unit
                amount.currency, amount.has_unit = previous.currency, True
    # A bare small number counts as money only as the low end of a range whose high end has a unit.
    in_range = {id(a) for a, b in itertools.pairwise(candidates)
                if _RANGE.match(text[a.end:b.start]) and b.has_unit}
    budget = [a for a in candidates if a.has_unit or id(a) in in_range
              or (a.value >= 1000 and _BUDGET_CUE.search(text[max(0, a.start - 30):a.start]))]
    for kind, field in (("down_payment", "down_payment"), ("income", "monthly_income"), ("arrears", "arrears_amount")):
        stated = [a for a in amounts if a.kind == kind and (a.has_unit or a.value >= 100)]
        if stated:
            facts[field] = stated[-1].value
    if not budget:
        return
    low: _Amount | None = None
    high: _Amount | None = None
    for first, second in itertools.pairwise(budget):
        if _RANGE.match(text[first.end:second.start]):
            low, high = first, second
    if high is not None and low is not None:
        if not low.has_unit:
            low.value *= _unit_of(high, text)  # "entre 4 y 5 millones": the unit is written once
        low.currency = low.currency or high.currency
        high.currency = high.currency or low.currency
        facts["budget_min"], facts["budget_max"] = min(low.value, high.value), max(low.value, high.value)
        currency = high.currency
    else:
        last = budget[-1]
        if _MIN_CUE.search(text[max(0, last.start - 14):last.start]):
            facts["budget_min"], facts["budget_max"] = last.value, None
        else:
            facts["budget_min"], facts["budget_max"] = None, last.value
        currency = last.currency
    if currency is not None or not facts.get("budget_currency"):
        facts["budget_currency"] = currency
    facts["budget_period"] = "month" if _MONTHLY.search(text) else None


def _unit_of(amount: _Amount, text: str) -> float:
    """The multiplier written with an amount ("5 millones" → 1e6), to carry it to the low end of a range."""
    m = _AMOUNT.match(text, amount.start)
    mult = (m.group("mult") or "").strip() if m else ""
    return _MULTIPLIERS.get(mult, 1.0)


# --- summary ----------------------------------------------------------------------------------

_SPANISH = re.compile(r"\b(?:hola|busco|quiero|tengo|para|con|dormitorios?|presupuesto|gracias|depto|casa|arriendo"
                      r"|comprar|el|la|los|las|de|en|que|mi|me|mas|llamen|escriban|baja|si|soy|estoy|buenas?)\b")
_ENGLISH = re.compile(r"\b(?:the|i|i'm|want|to|my|is|and|looking|for|hi|hello|please|bedrooms?|budget|we|need"
                      r"|call|stop)\b")
_PHRASES: dict[str, dict[str, Any]] = {
    "es": {
        "operation": {"buy": "comprar", "rent": "arrendar", "sell": "vender", "invest": "invertir en"},
        "type": {"apartment": "departamento", "house": "casa", "land": "terreno", "office": "oficina",
                 "commercial": "local comercial"},
        "financing": {"cash": "pago al contado", "mortgage_preapproved": "crédito preaprobado",
                      "mortgage_needed": "necesita crédito", "subsidy": "con subsidio"},
        "head": lambda op, kind, p: f"Busca {p['operation'][op] + ' ' if op else ''}{p['type'].get(kind, 'propiedad')}",
        "bedrooms": "{}+ dormitorios", "places": "en {}", "max": "hasta {}", "min": "desde {}",
        "timeline": "plazo {} meses", "dicom_dirty": "en DICOM", "opted_out": "pidió no ser contactado",
    },
    "en": {
        "operation": {"buy": "buy", "rent": "rent", "sell": "sell", "invest": "invest in"},
        "type": {"apartment": "apartment", "house": "house", "land": "land", "office": "office",
                 "commercial": "commercial property"},
        "financing": {"cash": "cash", "mortgage_preapproved": "mortgage preapproved",
                      "mortgage_needed": "needs a mortgage", "subsidy": "with a housing subsidy"},
        "head": lambda op, kind, p: (f"Wants to {p['operation'][op] if op else 'find'} "
                                     f"{'an' if p['type'].get(kind, 'property')[0] in 'aeiou' else 'a'} "
                                     f"{p['type'].get(kind, 'property')}"),
        "bedrooms": "{}+ bedrooms", "places": "in {}", "max": "up to {}", "min": "from {}",
        "timeline": "timeline {} months", "dicom_dirty": "in DICOM", "opted_out": "asked not to be contacted",
    },
}


def _money(value: float, currency: str | None, spanish: bool) -> str:
    text = f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
    if spanish:  # 5.200,5 UF
        text = text.replace(",", "_").replace(".", ",").replace("_", ".")
    return f"{text} {currency}" if currency else text


def summarize(facts: dict[str, Any], turns: Sequence[Turn]) -> str | None:
    """One sentence, in the lead's language, from the facts only (never from free text)."""
    lead_text = fold(" ".join(t.text for t in turns if t.role == "lead"))
    spanish = len(_SPANISH.findall(lead_text)) >= len(_ENGLISH.findall(lead_text))
    p = _PHRASES["es" if spanish else "en"]
    op, kind = facts.get("operation"), facts.get("property_type")
    parts: list[str] = []
    if op or kind:
        parts.append(p["head"](op, kind, p))
    if facts.get("bedrooms_min") is not None:
        parts.append(p["bedrooms"].format(facts["bedrooms_min"]))
    if facts.get("locations"):
        parts.append(p["places"].format(", ".join(place.title() for place in facts["locations"])))
    if facts.get("budget_max") is not None:
        parts.append(p["max"].format(_money(facts["budget_max"], facts.get("budget_currency"), spanish)))
    elif facts.get("budget_min") is not None:
        parts.append(p["min"].format(_money(facts["budget_min"], facts.get("budget_currency"), spanish)))
    if facts.get("financing"):
        parts.append(p["financing"][facts["financing"]])
    if facts.get("timeline_months") is not None:
        parts.append(p["timeline"].format(facts["timeline_months"]))
    if facts.get("dicom_status") == "dirty":
        parts.append(p["dicom_dirty"])
    if facts.get("opted_out"):
        parts.append(p["opted_out"])
    if not parts:
        return None
    sentence = ", ".join(parts) + "."
    return sentence[0].upper() + sentence[1:]
