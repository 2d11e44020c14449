"""Places leads name: comunas, colonias, barrios and cities, per market, as canonical lowercase names.

Matching is accent-insensitive ("nunoa", "Ñuñoa" and "ñuñoa" are one place); the canonical name
keeps its accents. Extend a market by adding names here; a name can carry aliases ("stgo centro").
"""

from __future__ import annotations

import re
from functools import cache

from leadflow.qualification.numbers import fold

# canonical name → aliases (folded forms are derived automatically)
PLACES: dict[str, dict[str, tuple[str, ...]]] = {
    "CL": {
        "providencia": (), "ñuñoa": ("nunoa",), "las condes": (), "vitacura": (), "lo barnechea": (),
        "la reina": (), "peñalolén": (), "macul": (), "la florida": (), "puente alto": (), "maipú": (),
        "santiago centro": ("stgo centro", "santiago centro"), "estación central": (), "independencia": (),
        "recoleta": (), "san miguel": (), "la cisterna": (), "quilicura": (), "huechuraba": (), "colina": (),
        "chicureo": (), "san bernardo": (), "pudahuel": (), "cerrillos": (), "lo prado": (), "quinta normal": (),
        "san joaquín": (), "la granja": (), "conchalí": (), "renca": (), "peñaflor": (), "talagante": (),
        "viña del mar": ("viña", "vina"), "valparaíso": ("valpo",), "concón": (), "reñaca": (),
        "concepción": (), "temuco": (), "la serena": (), "coquimbo": (), "antofagasta": (), "rancagua": (),
        "puerto montt": (), "iquique": (), "talca": (), "chillán": (), "valdivia": (), "santiago": ("stgo",),
    },
    "MX": {
        "polanco": (), "condesa": ("la condesa",), "roma norte": (), "roma sur": (), "del valle": (),
        "coyoacán": (), "santa fe": (), "narvarte": (), "napoles": ("nápoles",), "juárez": ("colonia juarez",),
        "escandón": (), "tlalpan": (), "benito juárez": (), "miguel hidalgo": (), "cuauhtémoc": (),
        "álvaro obregón": (), "interlomas": (), "lomas de chapultepec": ("lomas",), "pedregal": (),
        "satélite": ("ciudad satelite",), "huixquilucan": (), "naucalpan": (), "ciudad de méxico": ("cdmx", "df"),
        "guadalajara": ("gdl",), "zapopan": (), "monterrey": ("mty",), "san pedro garza garcía": ("san pedro",),
        "querétaro": ("qro",), "puebla": (), "mérida": (), "cancún": (), "playa del carmen": (), "tulum": (),
        "león": (), "toluca": (), "tijuana": (),
    },
    "AR": {
        "palermo": (), "belgrano": (), "recoleta": (), "caballito": (), "núñez": (), "colegiales": (),
        "villa crespo": (), "almagro": (), "villa urquiza": (), "saavedra": (), "puerto madero": (),
        "san telmo": (), "flores": (), "devoto": ("villa devoto",), "barrio norte": (), "olivos": (),
        "vicente lópez": (), "san isidro": (), "martínez": (), "tigre": (), "nordelta": (), "pilar": (),
        "caba": ("capital federal",), "buenos aires": ("bs as", "bsas"), "córdoba": (), "rosario": (),
        "mendoza": (), "la plata": (), "mar del plata": (),
    },
    "ES": {
        "salamanca": ("barrio de salamanca",), "chamberí": (), "malasaña": (), "chamartín": (), "retiro": (),
        "lavapiés": (), "arganzuela": (), "tetuán": (), "moncloa": (), "pozuelo": ("pozuelo de alarcón",),
        "las rozas": (), "alcobendas": (), "eixample": (), "gràcia": ("gracia",), "sarrià": ("sarria",),
        "sant gervasi": (), "poblenou": (), "el born": ("born",), "madrid": (), "barcelona": (), "valencia": (),
        "sevilla": (), "málaga": (), "marbella": (), "bilbao": (), "zaragoza": (), "alicante": (),
    },
    "US": {
        "miami": (), "brickell": (), "coral gables": (), "doral": (), "miami beach": (), "aventura": (),
        "orlando": (), "houston": (), "austin": (), "dallas": (), "new york": ("nyc",), "brooklyn": (),
        "manhattan": (), "los angeles": (), "san diego": (), "chicago": (),
    },
}


@cache
def _matcher(country: str | None) -> tuple[re.Pattern[str], dict[str, str]]:
    """One alternation over every name (longest first, so "las condes" beats "condes") and its canonical form."""
    markets = [country.upper()] if country and country.upper() in PLACES else list(PLACES)
    entries: dict[str, str] = {}
    for market in markets:
        for canonical, aliases in PLACES[market].items():
            for name in (canonical, *aliases):
                if len(name) <= 2 and market != (country or "").upper():
                    continue  # "df" only in its own market
                entries.setdefault(fold(name), canonical)
    names = sorted(entries, key=len, reverse=True)
    pattern = re.compile(r"(?<![a-zñ])(?:" + "|".join(re.escape(n) for n in names) + r")(?![a-zñ])")
    return pattern, entries


def place_names(country: str | None) -> dict[str, str]:
    """Every folded name (and alias) of the country's market (all markets if unknown) → canonical name."""
    return dict(_matcher(country)[1])


def find_places(folded: str, country: str | None) -> list[tuple[int, str]]:
    """(position, canonical name) of every place named in already-folded text, without overlaps."""
    pattern, canonical = _matcher(country)
    return [(m.start(), canonical[m.group(0)]) for m in pattern.finditer(folded)]
