"""Who the customer is: names, gender, email and external id.

Rules that Meta leaves open, decided here:
- Names keep letters and combining marks of every script and single spaces between words
  (Meta: lowercase, no punctuation, UTF-8; it says nothing of spaces in names).
- external_id: trimmed, then hashed as is (Meta asks only for consistency across channels).
"""

from __future__ import annotations

import unicodedata

from consumer.events.normalize.userdata import Invalid

__all__ = ["normalize_email", "normalize_external_id", "normalize_gender", "normalize_name"]


_PUNCT_OR_SYMBOL = ("P", "S")


def normalize_name(raw: str) -> str:
    """Lowercase; letters and marks of every script kept; punctuation, digits dropped."""
    text = unicodedata.normalize("NFC", raw).lower()
    kept = "".join(
        c if unicodedata.category(c)[0] in ("L", "M") else " "
        for c in text
        if unicodedata.category(c)[0] not in _PUNCT_OR_SYMBOL
    )
    # removing characters can bring a letter and a combining mark together: compose again
    return unicodedata.normalize("NFC", " ".join(kept.split()))


_GENDERS = {
    "f": "f", "female": "f", "woman": "f", "w": "f", "femme": "f", "féminin": "f",
    "feminin": "f", "mujer": "f", "femenino": "f", "feminino": "f", "weiblich": "f",
    "m": "m", "male": "m", "man": "m", "homme": "m", "masculin": "m", "hombre": "m",
    "masculino": "m", "männlich": "m", "mannlich": "m",
}  # fmt: skip


def normalize_gender(raw: str) -> str:
    value = _GENDERS.get(raw.strip().lower().rstrip("."))
    if value is None:
        raise Invalid("invalid_gender")
    return value


def normalize_email(raw: str) -> str:
    value = raw.strip().lower()
    local, at, domain = value.partition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in value):
        raise Invalid("invalid_email")
    return value


def normalize_external_id(raw: str) -> str:
    return raw.strip()  # hashed as given, trimmed
