"""Where the customer is: city, state, postal code and country.

Rules that Meta leaves open, decided here:
- Cities and non-US states keep letters only. US states become their two-letter code.
- Postal codes: lowercase without spaces or dashes; US: the first five digits. For the UK Meta
  asks for "area, district and sector" yet gives the full code `m11ae` as its example: the
  full code is sent.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Iterable
from functools import cache, lru_cache

import pycountry

from consumer.events.normalize.userdata import Invalid

__all__ = [
    "country_or_none",
    "normalize_city",
    "normalize_country",
    "normalize_state",
    "normalize_zip",
]


def normalize_city(raw: str) -> str:
    return _letters_only(raw)


def _letters_only(raw: str) -> str:
    """Lowercase letters (of any script) only: no punctuation, digits or spaces (cities, states).

    Meta: "no punctuation, no special characters, and no spaces"; its own SDK drops digits too.
    """
    text = unicodedata.normalize("NFC", raw).lower()
    kept = "".join(c for c in text if unicodedata.category(c)[0] in ("L", "M"))
    return unicodedata.normalize("NFC", kept)


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
    value = "".join(c for c in raw.lower() if not c.isspace() and c != "-")
    if region == "US":
        digits = value[:5]
        if not (len(digits) == 5 and digits.isdigit()):
            raise Invalid("invalid_zip")
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
        raise Invalid("invalid_country")
    return value


@lru_cache(maxsize=4096)
def country_or_none(value: str | None) -> str | None:
    """ISO 3166-1 alpha-2 of `value`, or None when it is blank or no known country."""
    if not value or not value.strip():
        return None
    try:
        return normalize_country(value)
    except Invalid:
        return None
