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


class _KeptCharacters(dict[int, int | None]):
    """A `str.translate` table keeping the characters of some Unicode categories and deleting
    the others, filled as characters are met (each is looked up in Unicode's tables once, up
    to `_KEPT_SIZE` characters: the scripts customers write in, not all of Unicode)."""

    def __init__(self, categories: str) -> None:
        super().__init__()
        self.categories = categories

    def __missing__(self, code: int) -> int | None:
        kept = code if unicodedata.category(chr(code))[0] in self.categories else None
        if len(self) < _KEPT_SIZE:
            self[code] = kept
        return kept


_KEPT_SIZE = 65_536


_KEPT = {categories: _KeptCharacters(categories) for categories in ("LMN", "LM")}


def keep(raw: str, categories: str) -> str:
    """`raw` lowercased with only the characters of the Unicode `categories` (first letters:
    "L" letters, "M" marks, "N" numbers: one of `_KEPT`'s); composed again, since removing
    characters can bring a letter and its combining mark together. ASCII needs no composing."""
    if raw.isascii():
        text = raw.lower()
        if text.isalpha() or (categories == "LMN" and text.isalnum()):
            return text  # nothing to remove: the common case
        return text.translate(_KEPT[categories])
    text = unicodedata.normalize("NFC", raw).lower()
    return unicodedata.normalize("NFC", text.translate(_KEPT[categories]))


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def is_sha256(value: str) -> bool:
    return len(value) == 64 and _SHA256.fullmatch(value) is not None
