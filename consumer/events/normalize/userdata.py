"""What normalizing yields: CAPI `user_data` digests by key, and the fields dropped.

Shared by the modules of this package: `Invalid` is what a normalizer raises for a value it
cannot normalize; its message becomes the reason of a `Dropped`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field

__all__ = [
    "FIELD_KEYS",
    "HASHED_KEYS",
    "Dropped",
    "Invalid",
    "UserData",
    "is_sha256",
    "keep",
    "sha256_hex",
]

# CAPI user_data key for each CustomerInfo field.
FIELD_KEYS: dict[str, str] = {
    "email": "em",
    "phone": "ph",
    "first_name": "fn",
    "last_name": "ln",
    "gender": "ge",
    "date_of_birth": "db",
    "city": "ct",
    "state": "st",
    "zip": "zp",
    "country": "country",
    "external_id": "external_id",
}
HASHED_KEYS: frozenset[str] = frozenset(FIELD_KEYS.values())

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class Dropped:
    """A customer-information field left out, and why (never the value itself)."""

    key: str
    reason: str


@dataclass(slots=True)
class UserData:
    """Hashed customer information by CAPI key, and what was dropped."""

    hashed: dict[str, str] = field(default_factory=dict)
    dropped: list[Dropped] = field(default_factory=list)


class Invalid(ValueError):
    """A value that cannot be normalized; its message is a short reason code."""


def keep(raw: str, categories: str) -> str:
    """`raw` lowercased with only the characters of the Unicode `categories` (first letters:
    "L" letters, "M" marks, "N" numbers); composed again, since removing characters can bring a
    letter and its combining mark together."""
    text = unicodedata.normalize("NFC", raw).lower()
    return unicodedata.normalize(
        "NFC", "".join(c for c in text if unicodedata.category(c)[0] in categories)
    )


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def is_sha256(value: str) -> bool:
    return _SHA256.fullmatch(value) is not None
