"""Countries by name: every ISO 3166-1 country from its codes, its ISO names (pycountry) and its
CLDR names (Babel) in the languages the platform's customers write in, folded so that case,
accents, punctuation, spaces and a leading "the" do not matter.

A name that two countries share in some language is ambiguous and dropped: a country we are
unsure of is no country (and gives no region to read a phone number in).
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from functools import cache

import pycountry
from babel import Locale

__all__ = ["LANGUAGES", "country_names", "fold"]

# English, Spanish, Portuguese, French, German, Italian, Indonesian, Turkish, Arabic, Russian
LANGUAGES = ("en", "es", "pt", "fr", "de", "it", "id", "tr", "ar", "ru")

# Common names the sources lack (CLDR's English names are in use: Türkiye, Eswatini...). Each
# is what people write for exactly one country.
_ADDITIONS = {
    "Turkey": "TR",  # ISO and CLDR moved to "Türkiye" (2022); customers still write Turkey
    "Great Britain": "GB",
    "Britain": "GB",
    "England": "GB",  # the constituent countries of the United Kingdom
    "Scotland": "GB",
    "Wales": "GB",
    "Northern Ireland": "GB",
    "UK": "GB",  # not the ISO code (that is GB), yet the common abbreviation
    "USA": "US",
    "America": "US",
    "United States of America": "US",
    "Holland": "NL",
    "Korea": "KR",  # as people write it, South Korea; North Korea is written out
    "Ivory Coast": "CI",
    "Cape Verde": "CV",  # renamed Cabo Verde (2013)
    "Swaziland": "SZ",  # renamed Eswatini (2018)
    "Macedonia": "MK",  # renamed North Macedonia (2019)
    "East Timor": "TL",
    "DR Congo": "CD",
    "DRC": "CD",
    "Congo-Kinshasa": "CD",
    "Congo-Brazzaville": "CG",
    "Vatican": "VA",
    "Palestine": "PS",
    "Micronesia": "FM",
    "Burma": "MM",  # renamed Myanmar (1989), still in use
    "Czech Republic": "CZ",  # renamed Czechia (2016)
    "Democratic Republic of Congo": "CD",  # ISO's name, inverted below, has "the" before Congo
    "RDC": "CD",  # République démocratique du Congo, República Democrática do Congo
    "Macedonia, the former Yugoslav Republic of": "MK",  # ISO's name until 2019
    "UAE": "AE",
    "Macau": "MO",  # the Portuguese spelling, in use in English; ISO and CLDR write Macao
    "Inglaterra": "GB",  # England in Spanish and Portuguese, as England above
}


_DOTLESS_I = "\u0131"


def fold(name: str) -> str:
    """`name` as the table keys it: lowercase letters of any script without their accents,
    no punctuation, digits or spaces, no leading "the"."""
    # Turkish dotless i (U+0131) upper-cases to I: fold it like i, so that case never matters
    decomposed = unicodedata.normalize("NFKD", name.casefold().strip().replace(_DOTLESS_I, "i"))
    if decomposed.startswith("the "):
        decomposed = decomposed[4:]
    return "".join(c for c in decomposed if unicodedata.category(c)[0] == "L")


def _spellings(name: str) -> list[str]:
    """`name`, and a list-style name ("Congo, The Democratic Republic of the") in the order
    people write it ("The Democratic Republic of the Congo")."""
    if not name:
        return []
    head, comma, tail = name.partition(", ")
    return [name, f"{tail} {head}"] if comma else [name]


@cache
def country_names() -> dict[str, str]:
    """Folded name or code -> ISO 3166-1 alpha-2 (uppercase)."""
    candidates: dict[str, set[str]] = defaultdict(set)
    for country in pycountry.countries:
        code = country.alpha_2
        names = [code, country.alpha_3, country.name]
        names += [getattr(country, attr, "") for attr in ("official_name", "common_name")]
        for name in names:
            for spelling in _spellings(name):
                candidates[fold(spelling)].add(code)
    iso = {c.alpha_2 for c in pycountry.countries}
    for language in LANGUAGES:
        for code, name in Locale.parse(language).territories.items():
            if code in iso:
                candidates[fold(name)].add(code)
    for name, code in _ADDITIONS.items():
        for spelling in _spellings(name):
            candidates[fold(spelling)].add(code)
    return {key: codes.pop() for key, codes in candidates.items() if key and len(codes) == 1}
