"""Reading a broker's CSV of leads (no services): encodings, delimiters, Spanish and English headers, each row's
errors, formulas kept as text and neutralised on export, and the qualification columns as a sentence the rules
qualifier reads."""

from __future__ import annotations

import csv
import io

import pytest

from leadflow.leads.imports import FileError, check, neutralise, parse, sentence, to_csv
from leadflow.qualification.rules import qualify
from leadflow.qualification.turns import Turn

SPANISH = ("nombre;teléfono;correo;fuente;notas;etiquetas;comuna;dormitorios;presupuesto;operación\r\n"
           "José Muñoz;+56 9 8123 4567;jose@example.cl;Portal Inmobiliario;Llamar en la tarde;vip, ñuñoa;"
           "Ñuñoa;3;4.500 UF;compra\r\n")


def test_latin1_with_semicolons_and_spanish_headers_is_read_whole() -> None:
    parsed = parse(SPANISH.encode("latin-1"), "CL")
    assert (parsed.encoding, parsed.delimiter) == ("cp1252", ";")
    [row] = parsed.rows
    assert row.ok and row.number == 2
    assert (row.name, row.phone_e164, row.email, row.source) == ("José Muñoz", "+56981234567", "jose@example.cl",
                                                                  "Portal Inmobiliario")
    assert row.tags == ["vip", "ñuñoa"] and row.notes == "Llamar en la tarde"
    assert row.qualification == {"location": "Ñuñoa", "bedrooms": "3", "budget": "4.500 UF", "operation": "compra"}


def test_utf8_with_a_bom_and_commas_reads_the_first_header() -> None:
    data = "\ufeffname,phone,email,channel\nAna,987654321,,referido\n".encode()
    parsed = parse(data, "CL")
    assert parsed.encoding == "utf-8-sig" and parsed.delimiter == ","
    assert parsed.columns["name"] == "name" and parsed.rows[0].phone_e164 == "+56987654321"
    assert parsed.rows[0].source == "referido"


def test_missing_columns_say_which_and_the_names_accepted() -> None:
    with pytest.raises(FileError) as refused:
        parse(b"fullname;notas\nAna;hola\n")
    message = str(refused.value)
    assert "name (accepted: nombre, name" in message and "phone or email (accepted: telefono, phone, celular" in message
    assert "Columns found: fullname, notas" in message


@pytest.mark.parametrize("data, reason", [(b"", "empty"), (b"nombre;telefono\n", "no rows"),
                                          (b"\x00\x01\x02binary", "not a CSV")])
def test_a_file_that_is_not_a_list_of_leads_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(FileError, match=reason):
        parse(data)


def test_each_row_gets_its_own_errors_and_later_duplicates_name_the_first_row() -> None:
    data = ("nombre,celular,email\n"
            "Ana,+56955555555,ana@example.cl\n"     # row 2: fine
            "Sin contacto,,\n"                     # row 3
            "Mal número,12,\n"                     # row 4
            "Mal correo,,ana-at-example\n"         # row 5
            "Ana otra vez,+56 9 5555 5555,\n"      # row 6: same phone as row 2
            "Ana por correo,,ANA@example.cl\n"     # row 7: same email as row 2
            "Pedro,+56922222222,\n").encode()
    rows = {r.number: r for r in parse(data, "CL").rows}
    assert rows[2].ok and rows[8].ok
    assert "no phone and no email" in rows[3].errors[0]
    assert rows[4].errors == ["invalid phone '12'"]
    assert rows[5].errors == ["invalid email 'ana-at-example'"]
    assert rows[6].errors == ["duplicate of row 2 (+56955555555)"]
    assert rows[7].errors == ["duplicate of row 2 (ana@example.cl)"]


def test_formulas_are_kept_as_text_and_neutralised_when_exported() -> None:
    data = b'nombre,telefono,notas\n"=HYPERLINK(""http://evil"",""x"")",+56955555555,@SUM(A1)\n'
    [row] = parse(data, "CL").rows
    assert row.name == '=HYPERLINK("http://evil","x")' and row.notes == "@SUM(A1)"
    assert [neutralise(v) for v in ("=1+1", "+569", "-2", "@x", "\tx", "plain", None)] == [
        "'=1+1", "'+569", "'-2", "'@x", "'\tx", "plain", ""]
    exported = list(csv.reader(io.StringIO(to_csv(["name", "notes"], [[row.name, row.notes]]))))
    assert exported[1] == ["'=HYPERLINK(\"http://evil\",\"x\")", "'@SUM(A1)"]


def test_the_qualification_columns_read_as_a_sentence_the_rules_qualifier_understands() -> None:
    said = sentence({"operation": "Compra", "property_type": "Departamento", "location": "Ñuñoa", "bedrooms": "3",
                     "budget": "4.500 UF", "timeline": "6", "financing": "crédito preaprobado"})
    assert said == ("Busca comprar departamento en Ñuñoa, 3 dormitorios, presupuesto 4.500 UF, en 6 meses, "
                    "crédito preaprobado")
    q = qualify([Turn("lead", said)], "CL")
    assert (q.operation, q.property_type, q.bedrooms_min, q.budget_max, q.budget_currency, q.locations,
            q.timeline_months, q.financing) == ("buy", "apartment", 3, 4500.0, "UF", ["ñuñoa"], 6,
                                                "mortgage_preapproved")
    assert sentence({}) is None


def test_a_row_typed_in_by_hand_is_checked_like_a_file_row() -> None:
    row = check({"name": "Rosa", "phone": "+56 9 3333 3333", "tags": "Portal; VIP ,portal"}, 1, "CL")
    assert row.ok and row.phone_e164 == "+56933333333" and row.tags == ["portal", "vip"]
    assert row.text() is None
    assert check({"name": "Sin nada"}, 1, "CL").errors == [
        "no phone and no email: a lead needs one to be reached and matched"]
    assert check({"name": "x" * 201, "email": "a@b.cl"}, 1, None).errors == ["name longer than 200 characters"]


def test_a_delimiter_inside_quotes_does_not_fool_the_sniffer() -> None:
    data = b'nombre;telefono;notas\n"Rojas, Camila";+56955555555;"uno, dos; tres"\n'
    [row] = parse(data, "CL").rows
    assert row.name == "Rojas, Camila" and row.notes == "uno, dos; tres"
