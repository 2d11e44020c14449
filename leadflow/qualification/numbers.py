"""Numbers as leads write and say them: "5.200", "4,5", "180k", "1,2 MM", "quinientas cincuenta".

Pure functions, no I/O. ``to_number`` reads one written number; ``words_to_numbers`` rewrites
spelled-out numbers (voice transcripts) as digits so the rest of the rules see one form.
"""

from __future__ import annotations

import re
import unicodedata

_UNITS_ES = {
    "cero": 0, "un": 1, "uno": 1, "una": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6, "siete": 7,
    "ocho": 8, "nueve": 9, "diez": 10, "once": 11, "doce": 12, "trece": 13, "catorce": 14, "quince": 15,
    "dieciseis": 16, "diecisiete": 17, "dieciocho": 18, "diecinueve": 19, "veinte": 20, "veintiun": 21,
    "veintiuno": 21, "veintiuna": 21, "veintidos": 22, "veintitres": 23, "veinticuatro": 24, "veinticinco": 25,
    "veintiseis": 26, "veintisiete": 27, "veintiocho": 28, "veintinueve": 29, "treinta": 30, "cuarenta": 40,
    "cincuenta": 50, "sesenta": 60, "setenta": 70, "ochenta": 80, "noventa": 90, "cien": 100, "ciento": 100,
    "doscientos": 200, "doscientas": 200, "trescientos": 300, "trescientas": 300, "cuatrocientos": 400,
    "cuatrocientas": 400, "quinientos": 500, "quinientas": 500, "seiscientos": 600, "seiscientas": 600,
    "setecientos": 700, "setecientas": 700, "ochocientos": 800, "ochocientas": 800, "novecientos": 900,
    "novecientas": 900,
}
_UNITS_EN = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100,
}
WORD_VALUES = {**_UNITS_ES, **_UNITS_EN}
# "mil" and "millones" stay words: they are units the amount rules read ("600 mil", "2 millones").
_JOINERS = {"y", "and", "-"}


_FOLD = str.maketrans("áéíóúüàèìòùâêîôûäëïöçÁÉÍÓÚÜÀÈÌÒÙÂÊÎÔÛÄËÏÖÇ", "aeiouuaeiouaeiouaeiocaeiouuaeiouaeiouaeioc")


def fold(text: str) -> str:
    """Lowercase without accents (ñ kept), for matching: "Ñuñoa DEPTO" → "ñuñoa depto"."""
    folded = text.lower().translate(_FOLD)
    if folded.isascii() or all(ord(ch) < 0x300 or ch == "ñ" for ch in folded if not ch.isascii()):
        return folded if "\u0303" not in folded else folded.replace("n\u0303", "ñ")
    # Rare: combining marks (decomposed input); strip them the slow way, keeping ñ.
    out: list[str] = []
    for ch in unicodedata.normalize("NFD", folded):
        if ch == "\u0303" and out and out[-1] == "n":
            out[-1] = "ñ"
        elif unicodedata.category(ch) != "Mn":
            out.append(ch)
    return "".join(out)


def to_number(token: str, decimal_comma: bool = True) -> float | None:
    """One written number: "5.200" → 5200, "4,5" → 4.5, "1.200.000" → 1200000, "4.5" → 4.5, "180k" → 180000.

    A separator followed by exactly three digits groups thousands; otherwise it is the decimal
    mark. ``decimal_comma`` decides "1,500" when both readings are possible (Spanish: 1.5 only if
    written "1,5"; "1,500" is 1500 either way).
    """
    text = token.strip().lower().replace(" ", "")
    multiplier = 1.0
    if text.endswith("k"):
        multiplier, text = 1000.0, text[:-1]
    if not text or not re.fullmatch(r"\d[\d.,]*", text):
        return None
    groups = re.split(r"[.,]", text)
    if len(groups) == 1:
        return float(text) * multiplier
    if all(len(g) == 3 for g in groups[1:]):
        return float("".join(groups)) * multiplier
    if len(groups) == 2:
        return float(f"{groups[0]}.{groups[1]}") * multiplier
    # "1.234,5" / "1,234.5": the last separator is the decimal mark.
    head, tail = "".join(groups[:-1]), groups[-1]
    return float(f"{head}.{tail}") * multiplier


def words_to_numbers(text: str) -> str:
    """Spelled-out numbers (folded text) become digits: "quinientas cincuenta lucas" → "550 lucas".

    "tres millones y medio" → "3.5 millones"; "mil quinientos" → "1500"; "dos mil" → "2000".
    """
    tokens = re.findall(r"[a-zñ]+|\d+(?:[.,]\d+)*|\S", text)
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i] not in WORD_VALUES and not (tokens[i] == "mil" and i + 1 < len(tokens)
                                                  and tokens[i + 1] in WORD_VALUES):
            out.append(tokens[i])
            i += 1
            continue
        total, current, j, used = 0, 0, i, False
        while j < len(tokens):
            word = tokens[j]
            if word in WORD_VALUES:
                value = WORD_VALUES[word]
                current = current * value if value == 100 and current and word == "hundred" else current + value
                used = True
            elif word == "mil" and (used or (j + 1 < len(tokens) and tokens[j + 1] in WORD_VALUES)):
                total += (current or 1) * 1000
                current = 0
                used = True
            elif word in _JOINERS and used and j + 1 < len(tokens) and tokens[j + 1] in WORD_VALUES:
                pass
            else:
                break
            j += 1
        number = total + current
        if j + 2 <= len(tokens) and tokens[j:j + 1] and tokens[j] in ("millones", "millon", "million", "millions") \
                and j + 2 < len(tokens) and tokens[j + 1] in ("y", "and") and tokens[j + 2] in ("medio", "half"):
            out.extend([f"{number}.5", tokens[j]])
            i = j + 3
            continue
        out.append(str(number))
        i = j
    return " ".join(out)
