"""Customer information: normalized as Meta specifies, then SHA-256 hashed.

Pure functions. `normalize_customer_info` turns raw, typed-by-a-person values into CAPI
`user_data` keys with lowercase hex SHA-256 digests. A value that is empty after normalization
is dropped; one that cannot be normalized (an email without `@`, a phone that is not a possible
number) is dropped with a reason, never sent raw. A value that already is a SHA-256 digest is
passed through.

Rules that Meta leaves open, decided here:
- Phones: a number written with `+` or `00` is international. Otherwise the region is the
  customer's country, then the contact's, then `CAPI_DEFAULT_PHONE_REGION`; with no region a
  number whose digits form a valid international number (`16505551212`) is taken as such.
- Birth dates: ISO `YYYY-MM-DD` and `YYYYMMDD` first. For `a/b/yyyy` (also `-` or `.`), a part
  over 12 is the day; when both could be the day, month first for US customers, day first for
  everyone else. Month names in English are read (`5 March 1990`, `March 5, 1990`).
- Names keep letters and combining marks of every script and single spaces between words.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache

import phonenumbers
import pycountry

from .records import CustomerInfo

__all__ = [
    "HASHED_KEYS",
    "Dropped",
    "UserData",
    "is_sha256",
    "normalize_country",
    "normalize_customer_info",
    "normalize_date_of_birth",
    "normalize_email",
    "normalize_gender",
    "normalize_name",
    "normalize_phone",
    "normalize_state",
    "normalize_zip",
    "sha256_hex",
]

# CAPI user_data key for each CustomerInfo field.
_KEYS: dict[str, str] = {
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
HASHED_KEYS: frozenset[str] = frozenset(_KEYS.values())

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


class _Invalid(ValueError):
    """A value that cannot be normalized; its message is a short reason code."""


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def is_sha256(value: str) -> bool:
    return _SHA256.fullmatch(value) is not None


def normalize_customer_info(
    info: CustomerInfo, *, contact_country: str | None = None, default_region: str | None = None
) -> UserData:
    """Normalize and hash every present field of `info`."""
    out = UserData()
    country = _country_or_none(info.country) or _country_or_none(contact_country)
    region = (country or default_region or "").upper()
    for name, key in _KEYS.items():
        raw = getattr(info, name)
        if raw is None:
            continue
        raw = raw.strip()
        if not raw:
            continue
        if is_sha256(raw):
            out.hashed[key] = raw.lower()
            continue
        try:
            value = _normalize_field(name, raw, region or None)
        except _Invalid as exc:
            out.dropped.append(Dropped(key, str(exc)))
            continue
        if value:
            out.hashed[key] = sha256_hex(value)
        else:
            out.dropped.append(Dropped(key, "empty_after_normalization"))
    return out


def _normalize_field(name: str, raw: str, region: str | None) -> str:
    if name == "email":
        return normalize_email(raw)
    if name == "phone":
        return normalize_phone(raw, region)
    if name in ("first_name", "last_name"):
        return normalize_name(raw)
    if name == "gender":
        return normalize_gender(raw)
    if name == "date_of_birth":
        return normalize_date_of_birth(raw, region)
    if name == "city":
        return _letters_only(raw)
    if name == "state":
        return normalize_state(raw, region)
    if name == "zip":
        return normalize_zip(raw, region)
    if name == "country":
        return normalize_country(raw)
    return raw.strip()  # external_id: hashed as given, trimmed


def _country_or_none(value: str | None) -> str | None:
    if not value or not value.strip():
        return None
    try:
        return normalize_country(value)
    except _Invalid:
        return None


def normalize_email(raw: str) -> str:
    value = raw.strip().lower()
    local, at, domain = value.partition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in value):
        raise _Invalid("invalid_email")
    return value


def normalize_phone(raw: str, region: str | None) -> str:
    """Digits of the international number: country calling code first, no `+`, no `00`."""
    text = raw.strip()
    digits = "".join(c for c in text if c.isdigit())
    if not digits:
        raise _Invalid("invalid_phone")
    candidates: list[tuple[str, str | None]]
    if text.startswith("+"):
        candidates = [("+" + digits, None)]
    elif digits.startswith("00"):
        candidates = [("+" + digits[2:], None)]
    elif region:
        candidates = [(text, region)]
    else:
        candidates = [("+" + digits, None)]
    for number_text, number_region in candidates:
        try:
            number = phonenumbers.parse(number_text, number_region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
    raise _Invalid("invalid_phone")


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


def _letters_only(raw: str) -> str:
    """Lowercase, no punctuation, no spaces (cities, non-US states)."""
    text = unicodedata.normalize("NFC", raw).lower()
    kept = "".join(c for c in text if unicodedata.category(c)[0] in ("L", "M", "N"))
    return unicodedata.normalize("NFC", kept)


_GENDERS = {
    "f": "f", "female": "f", "woman": "f", "w": "f", "femme": "f", "féminin": "f",
    "feminin": "f", "mujer": "f", "femenino": "f", "feminino": "f", "weiblich": "f",
    "m": "m", "male": "m", "man": "m", "homme": "m", "masculin": "m", "hombre": "m",
    "masculino": "m", "männlich": "m", "mannlich": "m",
}  # fmt: skip


def normalize_gender(raw: str) -> str:
    value = _GENDERS.get(raw.strip().lower().rstrip("."))
    if value is None:
        raise _Invalid("invalid_gender")
    return value


_MONTHS = {
    name.lower(): i
    for i in range(1, 13)
    for name in (
        dt.date(2000, i, 1).strftime("%B"),
        dt.date(2000, i, 1).strftime("%b"),
    )
}
_NUMERIC_DATE = re.compile(r"(\d{1,4})[/.\-\s](\d{1,2})[/.\-\s](\d{2,4})")


def normalize_date_of_birth(
    raw: str, region: str | None = None, today: dt.date | None = None
) -> str:
    """YYYYMMDD, or `_Invalid` when the text is not a plausible birth date."""
    text = raw.strip().lower().replace(",", " ")
    today = today or dt.date.today()
    date = _parse_date(text, region)
    if date is None or not (dt.date(1900, 1, 1) <= date <= today):
        raise _Invalid("invalid_date_of_birth")
    return f"{date.year:04d}{date.month:02d}{date.day:02d}"


def _parse_date(text: str, region: str | None) -> dt.date | None:
    try:
        if re.fullmatch(r"\d{8}", text):
            return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
        match = _NUMERIC_DATE.fullmatch(text)
        if match:
            a, b, c = match.groups()
            if len(a) == 4:  # YYYY-MM-DD
                return dt.date(int(a), int(b), int(c))
            if len(c) != 4:
                return None
            first, second, year = int(a), int(b), int(c)
            if first > 12:
                return dt.date(year, second, first)
            if second > 12 or region == "US":
                return dt.date(year, first, second)
            return dt.date(year, second, first)
        words = text.replace(".", " ").split()
        if len(words) == 3:
            month_first = words[0] in _MONTHS
            day_first = words[1] in _MONTHS
            if month_first and words[1].isdigit() and words[2].isdigit():
                return dt.date(int(words[2]), _MONTHS[words[0]], int(words[1]))
            if day_first and words[0].isdigit() and words[2].isdigit():
                return dt.date(int(words[2]), _MONTHS[words[1]], int(words[0]))
    except ValueError:
        return None
    return None


@cache
def _us_states() -> dict[str, str]:
    states: dict[str, str] = {}
    for sub in pycountry.subdivisions.get(country_code="US"):  # type: ignore[no-untyped-call]
        code = sub.code.split("-")[1].lower()
        states[code] = code
        states[_letters_only(sub.name)] = code
    return states


def normalize_state(raw: str, region: str | None) -> str:
    compact = _letters_only(raw)
    if region in (None, "US"):
        code = _us_states().get(compact)
        if code is not None:
            return code
    return compact


def normalize_zip(raw: str, region: str | None) -> str:
    value = "".join(c for c in raw.strip().lower() if c not in " -")
    if region == "US":
        digits = value[:5]
        if not (len(digits) == 5 and digits.isdigit()):
            raise _Invalid("invalid_zip")
        return digits
    return value


@cache
def _countries() -> dict[str, str]:
    table: dict[str, str] = {}
    for country in pycountry.countries:
        alpha2 = country.alpha_2.lower()
        names: Iterable[str] = (
            country.alpha_2,
            country.alpha_3,
            country.name,
            getattr(country, "official_name", ""),
            getattr(country, "common_name", ""),
        )
        for name in names:
            if name:
                table[_country_key(name)] = alpha2
    for alias, alpha2 in {"uk": "gb", "usa": "us", "america": "us", "england": "gb"}.items():
        table[alias] = alpha2
    return table


def _country_key(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name.lower())
    return "".join(c for c in folded if c in string.ascii_lowercase)


def normalize_country(raw: str) -> str:
    """ISO 3166-1 alpha-2, lowercase, from a code (alpha-2/alpha-3) or an English name."""
    value = _countries().get(_country_key(raw))
    if value is None:
        raise _Invalid("invalid_country")
    return value
