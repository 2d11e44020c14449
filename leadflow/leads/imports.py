"""Leads a broker brings from elsewhere: a CSV file, or one lead typed in by a person (issue 13).

Pure: bytes in, rows and per-row errors out. The file's encoding (UTF-8 with or without a BOM, Windows-1252 /
Latin-1 as Spanish Excel saves, UTF-16 with a BOM) and delimiter (``,``, ``;``, tab, ``|``) are detected; its
headers may be Spanish or English (``HEADERS``). A row is rejected, with the reason, for an invalid phone or
email, for having neither, or for repeating an earlier row's phone or email; a row whose contact matches a
lead the broker already has is *not* an error here: it enters like any message and identity resolution merges
it. Cells are kept as the text given and never evaluated; ``neutralise`` makes a cell safe to open in a
spreadsheet when it is exported again (a leading ``=``, ``+``, ``-``, ``@`` would be read as a formula).

``sentence`` renders the qualification columns as the Spanish a lead would write, so the rules qualifier
(``leadflow.qualification.rules``) reads them like any other message.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from leadflow.phones import to_e164

MAX_ROWS = 200_000
MAX_NAME = 200
MAX_NOTES = 5000  # the workspace's note limit (reports_api.workspace.db.MAX_NOTE)
MAX_TAG = 40
MAX_TAGS = 20
MAX_CELL = 1000  # any other column
MAX_SOURCE = 60

# Accepted header names per field, compared folded (lower case, no accents, spaces/underscores/dashes as one).
HEADERS: dict[str, tuple[str, ...]] = {
    "name": ("nombre", "name", "nombre completo", "full name", "cliente", "contacto"),
    "phone": ("telefono", "phone", "celular", "movil", "fono", "whatsapp", "mobile", "telefono movil", "tel"),
    "email": ("correo", "email", "e-mail", "mail", "correo electronico"),
    "source": ("fuente", "source", "canal", "channel", "origen"),
    "notes": ("notas", "notes", "nota", "note", "comentarios", "comentario", "observaciones", "mensaje", "message"),
    "tags": ("etiquetas", "tags", "etiqueta", "tag"),
    "operation": ("operacion", "operation", "tipo de operacion"),
    "property_type": ("tipo de propiedad", "tipo propiedad", "property type", "propiedad", "tipo", "inmueble"),
    "bedrooms": ("dormitorios", "bedrooms", "habitaciones", "recamaras", "piezas"),
    "budget": ("presupuesto", "budget", "precio", "price"),
    "location": ("comuna", "location", "ubicacion", "sector", "zona", "barrio", "colonia", "ciudad"),
    "timeline": ("plazo", "timeline", "cuando", "fecha de compra"),
    "financing": ("financiamiento", "financing", "credito", "forma de pago"),
}
QUALIFICATION = ("operation", "property_type", "bedrooms", "budget", "location", "timeline", "financing")
FIELDS = tuple(HEADERS)


class FileError(ValueError):
    """The file as a whole cannot be imported (empty, no header, missing columns); the message says why."""


def fold(text: str) -> str:
    """Lower case, accents off (ñ kept as n: headers only), runs of space, ``_`` and ``-`` as one space."""
    plain = unicodedata.normalize("NFKD", text.strip().lower())
    plain = "".join(ch for ch in plain if not unicodedata.combining(ch))
    return " ".join(re.split(r"[\s_\-.]+", plain)).strip()


_BY_HEADER = {fold(name): key for key, names in HEADERS.items() for name in names}


@dataclass
class Row:
    """One data row: ``number`` is its row in a spreadsheet (the header is row 1)."""

    number: int
    name: str | None = None
    phone_e164: str | None = None
    email: str | None = None
    source: str | None = None
    notes: str | None = None
    tags: list[str] = field(default_factory=list)
    qualification: dict[str, str] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def identity(self) -> str:
        """The contact's id on the import channel: the phone, else the email (as the web form does)."""
        return self.phone_e164 or self.email or ""

    def as_json(self) -> dict[str, Any]:
        return {"number": self.number, "name": self.name, "phone_e164": self.phone_e164, "email": self.email,
                "source": self.source, "notes": self.notes, "tags": self.tags, "qualification": self.qualification,
                "raw": self.raw, "errors": self.errors}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Row:
        return cls(number=int(data["number"]), name=data.get("name"), phone_e164=data.get("phone_e164"),
                   email=data.get("email"), source=data.get("source"), notes=data.get("notes"),
                   tags=list(data.get("tags") or []), qualification=dict(data.get("qualification") or {}),
                   raw=dict(data.get("raw") or {}), errors=list(data.get("errors") or []))

    def text(self) -> str | None:
        """What the lead's message says: the notes, then the qualification as a sentence."""
        parts = [p for p in (sentence(self.qualification), self.notes) if p]
        return "\n".join(parts) or None


@dataclass
class Parsed:
    encoding: str
    delimiter: str
    columns: dict[str, str]  # field → the header as written in the file
    ignored: list[str]  # headers no field takes
    rows: list[Row]

    @property
    def valid(self) -> list[Row]:
        return [r for r in self.rows if r.ok]

    @property
    def rejected(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]


# --- the file ------------------------------------------------------------------------------------------

def decode(data: bytes) -> tuple[str, str]:
    """The text of ``data`` and the encoding it was read in: UTF-8 (a BOM dropped), UTF-16 with a BOM, else
    Windows-1252 (Excel's "CSV" on a Spanish Windows), else Latin-1, which reads any bytes."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8):].decode("utf-8", "replace"), "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16"), "utf-16"
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1"


def sniff_delimiter(text: str) -> str:
    """The delimiter of the header line: the candidate it holds most of (``;`` wins a tie: a header with a comma
    in a name is rarer than Spanish Excel's semicolons), ``,`` when it holds none."""
    header = next(iter(text.splitlines()), "")
    counts = {d: header.count(d) for d in (";", ",", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    if counts[best] == 0:
        return ","
    try:
        sniffed = csv.Sniffer().sniff(text[:65536], delimiters=";,\t|").delimiter
    except csv.Error:
        return best
    return sniffed if counts.get(sniffed, 0) == counts[best] else best


def map_headers(headers: list[str]) -> tuple[dict[str, int], dict[str, str], list[str]]:
    """field → column index, field → header as written, and the headers no field takes (first one wins)."""
    index: dict[str, int] = {}
    written: dict[str, str] = {}
    ignored: list[str] = []
    for i, header in enumerate(headers):
        key = _BY_HEADER.get(fold(header))
        if key is None or key in index:
            if header.strip():
                ignored.append(header.strip())
            continue
        index[key] = i
        written[key] = header.strip()
    return index, written, ignored


def accepted(key: str) -> str:
    return ", ".join(HEADERS[key])


def missing_columns(index: Mapping[str, int]) -> list[str]:
    """What a file's header lacks, each with the names accepted for it (empty: nothing)."""
    missing = []
    if "name" not in index:
        missing.append(f"name (accepted: {accepted('name')})")
    if "phone" not in index and "email" not in index:
        missing.append(f"phone or email (accepted: {accepted('phone')}; {accepted('email')})")
    return missing


def parse(data: bytes, country: str | None = None, max_rows: int = MAX_ROWS) -> Parsed:
    """Every row of the CSV ``data``, each with its errors; FileError when the file cannot be read as a whole.

    ``country`` reads national phone numbers (``912345678`` in Chile). A phone or email seen in an earlier row
    makes a later row a duplicate (rejected, naming the row): a file lists a person once.
    """
    if not data.strip():
        raise FileError("the file is empty")
    if b"\x00" in data[:4096] and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileError("this is not a CSV text file (it holds binary data); save it from Excel as "
                        "\"CSV UTF-8\" or \"CSV (delimitado por comas)\"")
    text, encoding = decode(data)
    delimiter = sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        headers = next(reader)
    except StopIteration:
        raise FileError("the file is empty") from None
    except csv.Error as exc:
        raise FileError(f"the header line cannot be read as CSV: {exc}") from None
    headers = [_clean(h) for h in headers]
    index, written, ignored = map_headers(headers)
    missing = missing_columns(index)
    if missing:
        found = ", ".join(h.strip() for h in headers if h.strip()) or "none"
        raise FileError(f"missing column(s): {'; '.join(missing)}. Columns found: {found}")
    rows: list[Row] = []
    seen: dict[str, int] = {}
    number = 1
    try:
        for cells in reader:
            number += 1
            if not any(c.strip() for c in cells):
                continue
            if len(rows) >= max_rows:
                raise FileError(f"the file has more than {max_rows} rows; split it in parts")
            values = {key: (cells[i] if i < len(cells) else "") for key, i in index.items()}
            raw = {(h.strip() or f"col{i + 1}"): _clean(c)
                   for i, (h, c) in enumerate(zip(headers, cells, strict=False))}
            rows.append(check(values, number, country, seen, raw))
    except csv.Error as exc:
        raise FileError(f"row {number} cannot be read as CSV ({exc}); check its quotes") from None
    if not rows:
        raise FileError("the file has a header but no rows")
    return Parsed(encoding, delimiter, written, ignored, rows)


# --- one row -------------------------------------------------------------------------------------------

_EMAIL = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")


def _clean(text: str | None) -> str:
    # PostgreSQL text cannot hold NUL; other control characters but newlines and tabs say nothing.
    if not text:
        return ""
    if text.isprintable():  # nearly every cell: checked in C, not character by character (40% of a parse)
        return text.strip()
    return "".join(ch for ch in text if ch in "\n\t" or ch.isprintable() or ch == "\r").strip()


def clean_tag(tag: str) -> str:
    """As the workspace compares tags: trimmed, lower case, inner spaces collapsed."""
    return " ".join(tag.lower().split())


def split_tags(text: str) -> list[str]:
    """Tags of a cell, separated by commas, semicolons or ``|``: distinct, in order."""
    tags: list[str] = []
    for part in re.split(r"[,;|]", text):
        tag = clean_tag(part)
        if tag and tag not in tags:
            tags.append(tag)
    return tags


def check(values: Mapping[str, str], number: int, country: str | None, seen: dict[str, int] | None = None,
          raw: dict[str, str] | None = None) -> Row:
    """One row from its fields' texts (keys of ``HEADERS``; absent or empty: not given), with its errors.

    ``seen`` (identity → row number), when given, is where earlier rows' phones and emails are remembered.
    """
    cell = {key: _clean(values.get(key)) for key in FIELDS}
    row = Row(number, raw=raw if raw is not None else {k: v for k, v in cell.items() if v})
    errors = row.errors
    if cell["phone"]:
        row.phone_e164 = to_e164(cell["phone"], country)
        if row.phone_e164 is None:
            errors.append(f"invalid phone {cell['phone'][:40]!r}")
    if cell["email"]:
        email = cell["email"].lower()
        if len(email) > 254 or not _EMAIL.match(email):
            errors.append(f"invalid email {cell['email'][:60]!r}")
        else:
            row.email = email
    if not cell["phone"] and not cell["email"]:
        errors.append("no phone and no email: a lead needs one to be reached and matched")
    row.name = cell["name"] or None
    if row.name and len(row.name) > MAX_NAME:
        errors.append(f"name longer than {MAX_NAME} characters")
    row.source = cell["source"][:MAX_SOURCE] or None
    row.notes = cell["notes"] or None
    if row.notes and len(row.notes) > MAX_NOTES:
        errors.append(f"notes longer than {MAX_NOTES} characters")
    row.tags = split_tags(cell["tags"])
    if any(len(t) > MAX_TAG for t in row.tags):
        errors.append(f"a tag is longer than {MAX_TAG} characters")
    if len(row.tags) > MAX_TAGS:
        errors.append(f"more than {MAX_TAGS} tags")
    for key in QUALIFICATION:
        if cell[key]:
            if len(cell[key]) > MAX_CELL:
                errors.append(f"{key} longer than {MAX_CELL} characters")
            row.qualification[key] = cell[key][:MAX_CELL]
    if seen is not None:
        for identity in (row.phone_e164, row.email):
            if identity is None:
                continue
            earlier = seen.get(identity)
            if earlier is not None:
                errors.append(f"duplicate of row {earlier} ({identity})")
                break
        if row.ok:
            for identity in (row.phone_e164, row.email):
                if identity is not None:
                    seen.setdefault(identity, number)
    return row


# --- the qualification as a lead would say it ------------------------------------------------------------

_OPERATIONS = {"comprar": "comprar", "compra": "comprar", "buy": "comprar", "purchase": "comprar",
               "arrendar": "arrendar", "arriendo": "arrendar", "rent": "arrendar", "alquiler": "arrendar",
               "alquilar": "arrendar", "renta": "arrendar", "vender": "vender", "venta": "vender", "sell": "vender",
               "invertir": "invertir", "inversion": "invertir", "invest": "invertir"}
_PROPERTIES = {"apartment": "departamento", "depto": "departamento", "house": "casa", "land": "terreno",
               "office": "oficina", "commercial": "local comercial"}
_FINANCING = {"cash": "pago al contado", "contado": "pago al contado", "mortgage": "con crédito hipotecario",
              "credito": "con crédito hipotecario", "preapproved": "crédito preaprobado",
              "mortgage_preapproved": "crédito preaprobado", "preaprobado": "crédito preaprobado",
              "subsidy": "con subsidio", "subsidio": "con subsidio"}


def sentence(q: Mapping[str, str]) -> str | None:
    """The qualification columns as one Spanish sentence, e.g. "Busca comprar departamento en Ñuñoa,
    3 dormitorios, presupuesto 4.500 UF" (None when the row has none)."""
    op = q.get("operation", "").strip()
    prop = q.get("property_type", "").strip()
    place = q.get("location", "").strip()
    head = " ".join(p for p in ("Busca", _OPERATIONS.get(fold(op), op.lower()),
                                _PROPERTIES.get(fold(prop), prop.lower())) if p)
    if place:
        head += f" en {place}"
    parts = [head] if head != "Busca" else []
    bedrooms = q.get("bedrooms", "").strip()
    if bedrooms:
        parts.append(f"{bedrooms} dormitorios" if re.fullmatch(r"\d{1,2}", bedrooms) else bedrooms)
    budget = q.get("budget", "").strip()
    if budget:
        parts.append(f"presupuesto {budget}")
    timeline = q.get("timeline", "").strip()
    if timeline:
        if re.fullmatch(r"\d{1,2}", timeline):
            parts.append(f"en {timeline} meses")
        elif re.fullmatch(r"\d{1,2}\s*\w+", timeline):
            parts.append(f"en {timeline}")
        else:
            parts.append(f"plazo {timeline}")
    financing = q.get("financing", "").strip()
    if financing:
        parts.append(_FINANCING.get(fold(financing).replace(" ", "_"), financing))
    return ", ".join(parts) or None


# --- export ----------------------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: object) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading ``'`` (OWASP's advice)."""
    text = "" if cell is None else str(cell)
    return "'" + text if text.startswith(_FORMULA_START) else text


def to_csv(header: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    """A CSV (``,``, quoted as needed) whose every cell is neutralised."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([neutralise(h) for h in header])
    for row in rows:
        writer.writerow([neutralise(c) for c in row])
    return out.getvalue()
