"""Phone numbers to E.164, the one form every channel's contact identity is merged on."""

from __future__ import annotations

import phonenumbers


def to_e164(raw: str | None, default_country: str | None = None) -> str | None:
    """E.164 (``+56912345678``) for a number as people and providers write it, or None if invalid.

    WhatsApp sends ``56912345678`` (no plus); people write ``+56 9 1234 5678`` or a national
    ``912345678`` that only makes sense with the broker's country.
    """
    if not raw:
        return None
    text = raw.strip()
    digits = "".join(ch for ch in text if ch.isdigit())
    if not digits:
        return None
    if digits.startswith("00"):
        digits = digits[2:]
    if digits.startswith("521") and len(digits) == 13:
        # Mexico dropped the mobile "1" in 2019, but WhatsApp wa_ids and many people still write it.
        digits = "52" + digits[3:]
        text = "+" + digits
    candidates: list[tuple[str, str | None]] = []
    if text.startswith("+") or text.startswith("00"):
        candidates.append(("+" + digits, None))
    else:
        if default_country:
            candidates.append((text, default_country.upper()))
        # A number with its country code but no plus, as WhatsApp's wa_id.
        candidates.append(("+" + digits, None))
    for number, region in candidates:
        try:
            parsed = phonenumbers.parse(number, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return None
