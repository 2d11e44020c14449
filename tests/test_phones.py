from __future__ import annotations

import pytest

from leadflow.phones import to_e164


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+56 9 8765 4321", None, "+56987654321"),
        ("987654321", "CL", "+56987654321"),
        ("56987654321", "CL", "+56987654321"),  # WhatsApp wa_id: country code, no plus
        ("(305) 555-0134", "US", "+13055550134"),
        ("+52 55 1234 5678", "MX", "+525512345678"),
        ("0056987654321", None, "+56987654321"),
        ("5215512345678", "MX", "+525512345678"),  # WhatsApp's Mexican mobile, with the old "1"
        ("+52 1 55 1234 5678", None, "+525512345678"),
    ],
)
def test_numbers_as_people_and_providers_write_them_become_e164(raw: str, country: str | None,
                                                                 expected: str) -> None:
    assert to_e164(raw, country) == expected


@pytest.mark.parametrize("raw", [None, "", "abc", "12", "+56 1"])
def test_what_is_not_a_phone_number_gives_none(raw: str | None) -> None:
    assert to_e164(raw, "CL") is None
