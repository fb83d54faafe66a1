"""Where the customer is: city, state, postal code and country.

Rules that Meta leaves open, decided here:
- Cities keep letters of every script and digits, and start with a letter (as names do,
  `names.py`); states outside the US and Canada keep letters only. US states and Canadian
  provinces become their two-letter code (`states.py`).
- Countries: ISO 3166-1 alpha-2 from codes and names in ten languages (`countries.py`).
- Postal codes: lowercase without spaces or dashes; US: the first five digits. For the UK Meta
  asks for "area, district and sector" yet gives the full code `m11ae` as its example: the
  full code is sent.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from consumer.events.normalize.countries import country_names, fold
from consumer.events.normalize.states import STATE_TABLES, north_american_states
from consumer.events.normalize.userdata import Invalid, keep

_ZIP_PLUS_4 = re.compile(r"[0-9]{5}-[0-9]{4}")

__all__ = [
    "country_or_none",
    "normalize_city",
    "normalize_country",
    "normalize_state",
    "normalize_zip",
]


def normalize_city(raw: str) -> str:
    """Lowercase letters of every script (Meta's documentation: UTF-8) and digits (as Meta's
    newest normalizer keeps them); no punctuation or spaces; it must start with a letter."""
    kept = keep(raw, "LMN")  # as a name
    if not kept or unicodedata.category(kept[0])[0] != "L":
        raise Invalid("invalid_city")
    return kept


def normalize_state(raw: str, region: str | None) -> str:
    """US and Canadian states and provinces as their two-letter code, from the code, the name or
    a traditional abbreviation (`Calif.`, `Penn.`, `Que.`); other states as Meta asks for them:
    lowercase letters only. With no region, a name or abbreviation of one of the two countries
    counts; a two-letter value stays what it is."""
    compact = keep(raw, "LM")  # Meta: no punctuation, no special characters, no spaces
    if region is None:
        table = north_american_states()
    else:
        tables = STATE_TABLES.get(region)
        table = tables() if tables is not None else {}
    return table.get(compact, compact)


def normalize_zip(raw: str, region: str | None) -> str:
    """Lowercase, no spaces or dashes (Meta); US: the first five digits; with no country known,
    a ZIP+4 (`94025-1234`) is read as a US code, as Meta's newest normalizer reads it."""
    if region is None and _ZIP_PLUS_4.fullmatch(raw.strip()):
        return raw.strip()[:5]
    value = "".join(raw.lower().split()).replace("-", "")
    if region == "US":
        digits = value[:5]
        if not (len(digits) == 5 and digits.isdigit()):
            raise Invalid("invalid_zip")
        return digits
    return value


def normalize_country(raw: str) -> str:
    """ISO 3166-1 alpha-2, lowercase, from a code (alpha-2, alpha-3) or a name in one of the
    platform's languages (`countries.py`)."""
    value = country_or_none(raw)
    if value is None:
        raise Invalid("invalid_country")
    return value.lower()


@lru_cache(maxsize=4096)
def country_or_none(value: str | None) -> str | None:
    """ISO 3166-1 alpha-2 (upper case) of `value`, or None when it is blank or no known country.
    Cached as written (the region of a customer's phone and the `country` field both ask; a
    new customer often names a country seen before); emptied by `clear_caches`."""
    if not value or not value.strip():
        return None
    return country_names().get(fold(value))
