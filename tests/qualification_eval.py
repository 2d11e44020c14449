"""Field and temperature accuracy of a qualifier on the labelled set (tests/data/qualification_labelled.jsonl).

Every contract field is compared on every conversation: a field the label does not name is
expected null (or [] / false), so a qualifier that invents facts loses accuracy too. Free text
(summary, commitment_when) is not compared. Each conversation is also labelled with the temperature
an experienced agent gives it, compared with the scorer's under the default ``ScoringConfig``.
`python -m tests.qualification_eval` prints the table.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from leadflow.qualification.contract import qualify_conversation

LABELLED = Path(__file__).parent / "data" / "qualification_labelled.jsonl"
FIELDS = ("name", "phone", "email", "operation", "property_type", "bedrooms_min", "budget_min", "budget_max",
          "budget_currency", "budget_period", "locations", "timeline_months", "financing", "down_payment",
          "monthly_income", "dicom_status", "arrears_amount", "opted_out", "commitment", "commitment_at",
          "hesitation", "urgency_reason", "asking_price", "asking_currency")
_EMPTY: dict[str, Any] = {"locations": [], "opted_out": False}


def load() -> list[dict[str, Any]]:
    return [json.loads(line) for line in LABELLED.read_text().splitlines() if line.strip()]


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, int | float) and isinstance(actual, int | float) and not isinstance(expected, bool):
        return abs(float(expected) - float(actual)) < 1e-6
    if isinstance(expected, list):
        return sorted(expected) == sorted(actual or [])
    if isinstance(actual, datetime):
        return expected == actual.isoformat()
    return bool(expected == actual)


def evaluate() -> tuple[dict[str, float], list[str]]:
    """(accuracy per field, mismatches as 'id field: expected … got …')."""
    accuracy, _, misses = evaluate_all()
    return accuracy, misses


def evaluate_all() -> tuple[dict[str, float], float, list[str]]:
    """(accuracy per field, temperature accuracy, mismatches of both)."""
    hits = dict.fromkeys(FIELDS, 0)
    warm_hits = 0
    misses: list[str] = []
    cases = load()
    for case in cases:
        row = qualify_conversation(case, case.get("country"))
        for field in FIELDS:
            expected = case["expected"].get(field, _EMPTY.get(field))
            if _same(expected, row[field]):
                hits[field] += 1
            else:
                misses.append(f"{case['id']} {field}: expected {expected!r}, got {row[field]!r}")
        if row["temperature"] == case["expected"]["temperature"]:
            warm_hits += 1
        else:
            misses.append(f"{case['id']} temperature: expected {case['expected']['temperature']}, "
                          f"got {row['temperature']} (score {row['score']})")
    return {field: hits[field] / len(cases) for field in FIELDS}, warm_hits / len(cases), misses


if __name__ == "__main__":
    accuracy, temperature, misses = evaluate_all()
    for field, value in accuracy.items():
        print(f"{field:16s} {value:6.1%}")
    print(f"{'fields overall':16s} {sum(accuracy.values()) / len(accuracy):6.1%}  ({len(load())} conversations)")
    print(f"{'temperature':16s} {temperature:6.1%}")
    print("\n".join(misses))
