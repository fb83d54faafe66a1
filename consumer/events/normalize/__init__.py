"""Customer information: normalized as Meta specifies, then SHA-256 hashed.

Pure functions. `normalize_customer_info` turns raw, typed-by-a-person values into CAPI
`user_data` keys with lowercase hex SHA-256 digests. A value that is empty after normalization
is dropped; one that cannot be normalized (an email without `@`, a phone that is not a possible
number) is dropped with a reason, never sent raw. A value that already is a SHA-256 digest is
passed through.

This module chooses the region, dispatches each field and caches the results. Each field is
normalized in the module of its kind, whose docstring records the rules Meta leaves open for
it: `phone`, `dates` (birth dates), `places` (city, state, zip, country; with `countries`,
the names of every country, and `states`, the US and Canadian ones) and `names` (names,
gender, email, external_id). `userdata` holds what comes out; `cache` the caches.

Rules that Meta leaves open, decided here:
- The region values are read in (phones, birth dates, states, zips) is the customer's country,
  then the contact's, then `CAPI_DEFAULT_PHONE_REGION`. In the service the contact's country
  arrives through enrichment, which fills the fields the step left blank with the contact's;
  `contact_country` serves a caller without it.
- Meta accepts a string or a list per key; one string is sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from consumer.events.normalize.cache import (
    COSTLY_FIELDS,
    clear_caches,
    digest_cache,
    info_cache,
    remember,
)
from consumer.events.normalize.dates import normalize_date_of_birth
from consumer.events.normalize.names import (
    normalize_email,
    normalize_external_id,
    normalize_gender,
    normalize_name,
)
from consumer.events.normalize.phone import normalize_phone
from consumer.events.normalize.places import (
    country_or_none,
    normalize_city,
    normalize_country,
    normalize_state,
    normalize_zip,
)
from consumer.events.normalize.userdata import (
    FIELD_KEYS,
    HASHED_KEYS,
    Dropped,
    Invalid,
    UserData,
    is_sha256,
    sha256_hex,
)
from consumer.events.records import CUSTOMER_FIELDS, CustomerInfo

__all__ = [
    "HASHED_KEYS",
    "Dropped",
    "UserData",
    "clear_caches",
    "is_sha256",
    "normalize_city",
    "normalize_country",
    "normalize_customer_info",
    "normalize_date_of_birth",
    "normalize_email",
    "normalize_external_id",
    "normalize_gender",
    "normalize_name",
    "normalize_phone",
    "normalize_state",
    "normalize_zip",
    "sha256_hex",
]


def normalize_customer_info(
    info: CustomerInfo, *, contact_country: str | None = None, default_region: str | None = None
) -> UserData:
    """Normalize and hash every present field of `info`.

    Cached as a whole, keyed by a hash of every raw value: the same customer converts again
    (a lead, then a purchase), and one lookup then replaces eleven.
    """
    key = _info_key(info, contact_country, default_region)
    found = info_cache.get(key)
    if found is None:
        out = _normalize_info(info, contact_country, default_region)
        found = remember(info_cache, key, (tuple(out.hashed.items()), tuple(out.dropped)))
    hashed, dropped = found
    return UserData(dict(hashed), list(dropped))


def _info_key(info: CustomerInfo, contact_country: str | None, region: str | None) -> bytes:
    values = (*info.values(), contact_country, region)
    text = "\x00".join(["\x01" if v is None else v for v in values])
    if text.count("\x00") != len(values) - 1 or text.count("\x01") != values.count(None):
        text = repr(values)  # a value holding a separator: the unambiguous, slower form
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _normalize_info(
    info: CustomerInfo, contact_country: str | None, default_region: str | None
) -> UserData:
    out = UserData()
    region = _region(info.country, contact_country, default_region)
    for field, raw in zip(_FIELDS, info.values(), strict=True):
        if raw is None:
            continue
        if field.costly:
            digest, problem = _cached_digest(field, raw, region)
        else:
            digest, problem = _digest(field, raw, region)
        if digest is not None:
            out.hashed[field.key] = digest
        elif problem is not None:
            out.dropped.append(Dropped(field.key, problem))
    return out


def _region(customer: str | None, contact: str | None, default: str | None) -> str | None:
    """Where national numbers, dates and states are read: the customer's country, else the
    contact's, else the default. A country that is stated but not known gives no region: it is
    not replaced by a guess."""
    for stated in (customer, contact):
        if stated is not None and stated.strip():
            return country_or_none(stated)
    return default.upper() if default else None


def _cached_digest(field: _Field, raw: str, region: str | None) -> tuple[str | None, str | None]:
    """`_digest`, cached for the costly fields: a new customer often shares a state or a birth
    date with earlier ones, and parsing a phone number costs up to 40 µs; the others cost less
    than a cache lookup. Caches are keyed by a hash of the raw value and hold digests: no
    customer information in clear stays in them.
    """
    key = (field.name, hashlib.blake2b(raw.encode(), digest_size=16).digest(), region)
    found = digest_cache.get(key)
    if found is None:
        found = remember(digest_cache, key, _digest(field, raw, region))
    return found


def _digest(field: _Field, raw: str, region: str | None) -> tuple[str | None, str | None]:
    """(digest, None), or (None, why it was dropped), or (None, None) for a blank value."""
    text = raw.strip()
    if not text:
        return None, None
    if is_sha256(text):
        return text.lower(), None
    try:
        value = field.normalize(text, region) if field.regional else field.normalize(text)
    except Invalid as exc:
        return None, str(exc)
    if not value:
        return None, "empty_after_normalization"
    return sha256_hex(value), None


@dataclass(frozen=True, slots=True)
class _Field:
    """A customer information field: its CAPI key, its normalizer, whether that reads the value
    in the customer's region (phones, dates, states, zips), and whether digests are cached."""

    name: str
    key: str
    normalize: Callable[..., str]
    regional: bool
    costly: bool


# each field's normalizer, and whether it reads the value in the customer's region
_NORMALIZERS: dict[str, tuple[Callable[..., str], bool]] = {
    "email": (normalize_email, False),
    "phone": (normalize_phone, True),
    "first_name": (normalize_name, False),
    "last_name": (normalize_name, False),
    "gender": (normalize_gender, False),
    "date_of_birth": (normalize_date_of_birth, True),
    "city": (normalize_city, False),
    "state": (normalize_state, True),
    "zip": (normalize_zip, True),
    "country": (normalize_country, False),
    "external_id": (normalize_external_id, False),
}
# in `CustomerInfo.values()` order
_FIELDS = tuple(
    _Field(name, FIELD_KEYS[name], *_NORMALIZERS[name], name in COSTLY_FIELDS)
    for name in CUSTOMER_FIELDS
)
