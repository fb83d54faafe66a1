"""US states and Canadian provinces and territories: code, name (pycountry's ISO 3166-2) and the
traditional abbreviations people write with or without a full stop: the AP style's (from the `us`
package) and the US Government Publishing Office's, and Canada Post's former ones."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache

import pycountry
import us

from consumer.events.normalize.userdata import keep

__all__ = ["STATE_TABLES", "north_american_states"]

# US GPO Style Manual abbreviations that differ from the AP style's
_US_GPO = {
    "Tex": "TX",
    "Penn": "PA",
    "Penna": "PA",
    "Kans": "KS",
    "Nebr": "NE",
    "Oreg": "OR",
    "Wisc": "WI",
    "NDak": "ND",
    "SDak": "SD",
    "NMex": "NM",
    "WVa": "WV",
    "Cal": "CA",
    "Mass": "MA",
    "Ariz": "AZ",
    "Wash": "WA",
    "Mich": "MI",
    "Minn": "MN",
    "Tenn": "TN",
}
# the provinces' and territories' traditional abbreviations (before the two-letter codes)
_CA_TRADITIONAL = {
    "Alta": "AB",
    "BC": "BC",
    "Man": "MB",
    "NB": "NB",
    "Nfld": "NL",
    "NS": "NS",
    "NWT": "NT",
    "Ont": "ON",
    "PEI": "PE",
    "Que": "QC",
    "Qué": "QC",
    "Sask": "SK",
    "YT": "YT",
    "Yuk": "YT",
    "Québec": "QC",
    "Nunavut": "NU",
    "Newfoundland": "NL",
    "Labrador": "NL",
}


def _key(name: str) -> str:
    """Lowercase letters only, as `normalize_state` compares them."""
    return keep(name, "LM")


def _table(country: str, extra: Iterable[tuple[str, str]]) -> dict[str, str]:
    table: dict[str, str] = {}
    for sub in pycountry.subdivisions.get(country_code=country):  # type: ignore[no-untyped-call]
        code = sub.code.split("-")[1]
        table[_key(code)] = code.lower()
        table[_key(sub.name)] = code.lower()
    for name, code in extra:
        table[_key(name)] = code.lower()
    return table


@cache
def _us() -> dict[str, str]:
    ap = [(s.ap_abbr, s.abbr) for s in us.states.STATES_AND_TERRITORIES if s.ap_abbr]
    return _table("US", [*ap, *_US_GPO.items()])


@cache
def _canada() -> dict[str, str]:
    return _table("CA", _CA_TRADITIONAL.items())


@cache
def north_american_states() -> dict[str, str]:
    """Both countries' names, for a state given without a country (their codes do not clash)."""
    both = {**_us(), **_canada()}
    return {k: v for k, v in both.items() if _us().get(k, v) == _canada().get(k, v)}


STATE_TABLES: dict[str, Callable[[], dict[str, str]]] = {"US": _us, "CA": _canada}
