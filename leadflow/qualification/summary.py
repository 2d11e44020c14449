"""A one-sentence summary of a qualification, in the lead's language, built from the facts only.

Never from free text: what the summary says is exactly what the fields say. A polars expression
over the qualification columns, so a million summaries cost one pass.
"""

from __future__ import annotations

from typing import Any

import polars as pl

PHRASES: dict[str, dict[str, Any]] = {
    "es": {
        "operation": {"buy": "comprar", "rent": "arrendar", "sell": "vender", "invest": "invertir en"},
        "type": {"apartment": "departamento", "house": "casa", "land": "terreno", "office": "oficina",
                 "commercial": "local comercial"},
        "financing": {"cash": "pago al contado", "mortgage_preapproved": "crédito preaprobado",
                      "mortgage_needed": "necesita crédito", "subsidy": "con subsidio"},
        "bedrooms": "+ dormitorios", "places": "en ", "max": "hasta ", "min": "desde ", "timeline": "plazo ",
        "months": " meses", "dicom_dirty": "en DICOM", "opted_out": "pidió no ser contactado",
    },
    "en": {
        "operation": {"buy": "buy", "rent": "rent", "sell": "sell", "invest": "invest in"},
        "type": {"apartment": "apartment", "house": "house", "land": "land", "office": "office",
                 "commercial": "commercial property"},
        "financing": {"cash": "cash", "mortgage_preapproved": "mortgage preapproved",
                      "mortgage_needed": "needs a mortgage", "subsidy": "with a housing subsidy"},
        "bedrooms": "+ bedrooms", "places": "in ", "max": "up to ", "min": "from ", "timeline": "timeline ",
        "months": " months", "dicom_dirty": "in DICOM", "opted_out": "asked not to be contacted",
    },
}


def _lookup(column: str, table: dict[str, str]) -> pl.Expr:
    return pl.col(column).replace_strict(table, default=None, return_dtype=pl.String)


def money(value: pl.Expr, currency: pl.Expr, spanish: bool) -> pl.Expr:
    """5200 → "5,200" (English) or "5.200" (Spanish); one decimal when not whole; then the currency."""
    whole = value == value.floor()
    rounded = pl.when(whole).then(value).otherwise(value.round(1))
    digits = rounded.floor().cast(pl.Int64).cast(pl.String)
    grouped = digits.str.reverse().str.replace_all(r"(\d{3})", "${1},").str.reverse().str.strip_chars_start(",")
    decimals = pl.when(whole).then(pl.lit("")).otherwise(
        pl.lit(".") + ((rounded - rounded.floor()) * 10).round(0).cast(pl.Int64).cast(pl.String))
    text = grouped + decimals
    if spanish:  # 5.200,5 UF
        text = text.str.replace_all(",", "_", literal=True).str.replace_all(".", ",", literal=True) \
            .str.replace_all("_", ".", literal=True)
    return pl.when(currency.is_not_null()).then(text + pl.lit(" ") + currency).otherwise(text)


def _sentence(language: str) -> pl.Expr:
    p = PHRASES[language]
    spanish = language == "es"
    operation, kind = _lookup("operation", p["operation"]), _lookup("property_type", p["type"])
    if spanish:
        head = pl.lit("Busca ") + pl.when(operation.is_not_null()).then(operation + pl.lit(" ")).otherwise(pl.lit("")) \
            + kind.fill_null("propiedad")
    else:
        noun = kind.fill_null("property")
        head = pl.lit("Wants to ") + operation.fill_null("find") + pl.lit(" ") \
            + pl.when(noun.str.contains("^[aeiou]")).then(pl.lit("an ")).otherwise(pl.lit("a ")) + noun
    budget = (pl.when(pl.col("budget_max").is_not_null())
              .then(pl.lit(p["max"]) + money(pl.col("budget_max"), pl.col("budget_currency"), spanish))
              .when(pl.col("budget_min").is_not_null())
              .then(pl.lit(p["min"]) + money(pl.col("budget_min"), pl.col("budget_currency"), spanish)))
    joined = pl.concat_str(
        pl.when(pl.col("operation").is_not_null() | pl.col("property_type").is_not_null()).then(head),
        pl.col("bedrooms_min").cast(pl.String) + pl.lit(p["bedrooms"]),
        pl.when(pl.col("locations").list.len() > 0).then(
            pl.lit(p["places"]) + pl.col("locations").list.eval(pl.element().str.to_titlecase()).list.join(", ")),
        budget,
        _lookup("financing", p["financing"]),
        pl.lit(p["timeline"]) + pl.col("timeline_months").cast(pl.String) + pl.lit(p["months"]),
        pl.when(pl.col("dicom_status") == "dirty").then(pl.lit(p["dicom_dirty"])),
        pl.when(pl.col("opted_out")).then(pl.lit(p["opted_out"])),
        separator=", ", ignore_nulls=True,
    )
    return pl.when(joined != "").then(joined.str.slice(0, 1).str.to_uppercase() + joined.str.slice(1) + pl.lit("."))


def with_summary(facts: pl.DataFrame, spanish: pl.Expr) -> pl.DataFrame:
    """The facts with a ``summary`` column, in Spanish where ``spanish`` holds, else in English
    (each sentence built only for its own rows)."""
    is_spanish = facts.select(spanish.fill_null(True)).to_series()
    parts = []
    for language, rows in (("es", is_spanish), ("en", ~is_spanish)):
        where = rows.arg_true()
        parts.append((where, facts[where].lazy().select(_sentence(language).alias("summary")).collect()["summary"]))
    summary = pl.repeat(None, facts.height, dtype=pl.String, eager=True)
    for where, values in parts:
        summary = summary.scatter(where, values)
    return facts.with_columns(summary.alias("summary"))
