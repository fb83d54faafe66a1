"""The caches of normalized customer information, and their clearing.

Two dicts, each emptied when it reaches `CACHE_SIZE` entries rather than kept in LRU order:
`info_cache` holds whole customers (`normalize_customer_info`), `digest_cache` the fields
costly to normalize (`COSTLY_FIELDS`). Both are keyed by a hash of the raw values and hold
digests: no customer information in clear stays in them. Country names are the exception:
`places.country_or_none` keeps up to 4,096 as written, with their ISO code (a country alone
tells little of a person). The lookup tables built from reference data (libphonenumber's
patterns compiled per calling code, pycountry's and CLDR's names, Unicode's categories of the
characters met) are cached where they are built, and never cleared: they hold no one's data.
"""

from __future__ import annotations

from typing import TypeVar

from consumer.events.normalize.userdata import Dropped

__all__ = [
    "CACHE_SIZE",
    "COSTLY_FIELDS",
    "clear_caches",
    "digest_cache",
    "info_cache",
    "remember",
]

_K = TypeVar("_K")
_V = TypeVar("_V")

CACHE_SIZE = 65_536
COSTLY_FIELDS = frozenset({"phone", "date_of_birth", "state"})
# (field name, hash of the raw value, region) -> (digest, None), (None, reason) or (None, None)
digest_cache: dict[tuple[str, bytes, str | None], tuple[str | None, str | None]] = {}
# hash of a customer's raw values and regions -> (hashed items, dropped fields)
info_cache: dict[bytes, tuple[tuple[tuple[str, str], ...], tuple[Dropped, ...]]] = {}


def remember(cache: dict[_K, _V], key: _K, value: _V) -> _V:
    """`value`, stored under `key` in `cache`, which is emptied first when full."""
    if len(cache) >= CACHE_SIZE:
        cache.clear()
    cache[key] = value
    return value


def clear_caches() -> None:
    """Forget every cached digest and country (benchmarks start cold with it)."""
    from consumer.events.normalize.places import country_or_none  # places uses this module

    digest_cache.clear()
    info_cache.clear()
    country_or_none.cache_clear()
