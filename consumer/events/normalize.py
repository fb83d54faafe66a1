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
  everyone else. Month names in six languages are read (`5 March 1990`, `March 5th, 1990`).
  A two-digit year is the latest such year not in the future. Dates before 1900 or in the
  future are refused.
- Names keep letters and combining marks of every script and single spaces between words
  (Meta: lowercase, no punctuation, UTF-8; it says nothing of spaces in names).
- Cities and non-US states keep letters only. US states become their two-letter code.
- Postal codes: lowercase without spaces or dashes; US: the first five digits. For the UK Meta
  asks for "area, district and sector" yet gives the full code `m11ae` as its example: the
  full code is sent.
- external_id: trimmed, then hashed as is (Meta asks only for consistency across channels).
- Meta accepts a string or a list per key; one string is sent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache

import phonenumbers
import pycountry

from consumer.events.records import CustomerInfo

__all__ = [
    "HASHED_KEYS",
    "Dropped",
    "UserData",
    "is_sha256",
    "normalize_city",
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
    """Normalize and hash every present field of `info`.

    Cached as a whole, keyed by a hash of every raw value: the same customer converts again
    (a lead, then a purchase), and one lookup then replaces eleven.
    """
    key = _info_key(info, contact_country, default_region)
    found = _infos.get(key)
    if found is None:
        if len(_infos) >= _CACHE_SIZE:
            _infos.clear()
        out = _normalize_info(info, contact_country, default_region)
        found = _infos[key] = (tuple(out.hashed.items()), tuple(out.dropped))
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
    country = _country_or_none(info.country) or _country_or_none(contact_country)
    region = (country or default_region or "").upper() or None
    for name, key in _KEYS.items():
        raw = getattr(info, name)
        if raw is None:
            continue
        digest, problem = _digest(name, raw, region)
        if digest is not None:
            out.hashed[key] = digest
        elif problem is not None:
            out.dropped.append(Dropped(key, problem))
    return out


_CACHE_SIZE = 65_536
_COSTLY = frozenset({"phone", "date_of_birth", "state"})
_cache: dict[tuple[str, bytes, str | None], tuple[str | None, str | None]] = {}
_infos: dict[bytes, tuple[tuple[tuple[str, str], ...], tuple[Dropped, ...]]] = {}


def clear_caches() -> None:
    """Forget every cached digest (benchmarks start cold with it)."""
    _cache.clear()
    _infos.clear()


def _digest(name: str, raw: str, region: str | None) -> tuple[str | None, str | None]:
    """(digest, None), or (None, why it was dropped), or (None, None) for a blank value.

    The costly fields are cached on their own too (a new customer often shares a state or a
    birth date with earlier ones; parsing a phone number costs 10-40 µs); the others cost less
    than a cache lookup. Caches are keyed by a hash of the raw value and hold digests: no
    customer information in clear stays in them.
    """
    if name not in _COSTLY:
        return _digest_uncached(name, raw, region)
    key = (name, hashlib.blake2b(raw.encode(), digest_size=16).digest(), region)
    found = _cache.get(key)
    if found is None:
        if len(_cache) >= _CACHE_SIZE:
            _cache.clear()
        found = _cache[key] = _digest_uncached(name, raw, region)
    return found


def _digest_uncached(name: str, raw: str, region: str | None) -> tuple[str | None, str | None]:
    text = raw.strip()
    if not text:
        return None, None
    if is_sha256(text):
        return text.lower(), None
    try:
        value = _normalize_field(name, text, region)
    except _Invalid as exc:
        return None, str(exc)
    if not value:
        return None, "empty_after_normalization"
    return sha256_hex(value), None


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
        return normalize_city(raw)
    if name == "state":
        return normalize_state(raw, region)
    if name == "zip":
        return normalize_zip(raw, region)
    if name == "country":
        return normalize_country(raw)
    return raw.strip()  # external_id: hashed as given, trimmed


@lru_cache(maxsize=4096)
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
    """Digits of the international number: country calling code first, no `+`, no `00`.

    `+...` and `00...` are international. Otherwise the number is read in `region`; when that
    gives no valid number, or there is no region, the digits are tried as an international
    number written without `+` (`16505551212`). Only numbers valid by libphonenumber's metadata
    for their region are kept: a number that cannot exist matches nobody.
    """
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    if not any(c.isdigit() for c in text):
        raise _Invalid("invalid_phone")
    quick = _quick_phone(text, region)
    return quick if quick is not None else _parsed_phone(text, region)


def _parsed_phone(text: str, region: str | None) -> str:
    """`normalize_phone` through libphonenumber's parser: every written form it reads."""
    if text.startswith("+"):
        number = _parse_phone(text, None)
        if number is not None and phonenumbers.is_valid_number(number):
            return _e164_digits(number)
        raise _Invalid("invalid_phone")
    if region:
        number = _parse_phone(text, region)
        if number is not None and phonenumbers.is_valid_number(number):
            return _e164_digits(number)
    digits = "".join(c for c in text if c.isdigit())
    number = _parse_phone("+" + digits.lstrip("0"), None)
    if number is not None and phonenumbers.is_valid_number(number):
        return _e164_digits(number)
    raise _Invalid("invalid_phone")


_PHONE_SEPARATORS = str.maketrans("", "", " -().")


def _quick_phone(text: str, region: str | None) -> str | None:
    """The common case without libphonenumber's parser (which costs ~14 µs): None if unsure.

    Plain digits and separators, written `+<country code><number>` or, with a region, as a
    national number that has no national prefix, no leading zero and does not start with the
    region's country code. Anything else (letters, extensions, trunk prefixes, carrier codes,
    Italian leading zeros) goes through `phonenumbers.parse`. The number built here is exactly
    the one `parse` builds for such input (a property test holds them equal), and it must
    still be valid by libphonenumber's metadata.
    """
    international = text[0] == "+"
    digits = (text[1:] if international else text).translate(_PHONE_SEPARATORS)
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 17:
        return None
    if international:
        if digits[:1] == "0":  # no country code starts with 0
            return None
        for size in (1, 2, 3):
            code = int(digits[:size])
            if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                national = digits[size:]
                break
        else:
            return None
    elif region:
        code = phonenumbers.country_code_for_region(region)
        if code == 0 or digits.startswith(str(code)):
            return None
        national = digits
    else:
        return None
    prefix = _national_prefix(code)
    if not national or national[0] == "0" or prefix is None or prefix.match(national):
        return None
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
    if not phonenumbers.is_valid_number(number):
        return None
    return f"{code}{national}"


_NEVER = re.compile(r"(?!)")


@cache
def _national_prefix(code: int) -> re.Pattern[str] | None:
    """What `parse` may strip from a national number of this country code (None: unknown)."""
    region = phonenumbers.region_code_for_country_code(code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region, None)
    if metadata is None:
        return None
    pattern = metadata.national_prefix_for_parsing
    return re.compile(pattern) if pattern else _NEVER


def _parse_phone(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


def _e164_digits(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]


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


def normalize_city(raw: str) -> str:
    return _letters_only(raw)


def _letters_only(raw: str) -> str:
    """Lowercase letters (of any script) only: no punctuation, digits or spaces (cities, states).

    Meta: "no punctuation, no special characters, and no spaces"; its own SDK drops digits too.
    """
    text = unicodedata.normalize("NFC", raw).lower()
    kept = "".join(c for c in text if unicodedata.category(c)[0] in ("L", "M"))
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


# Month names people type, in the languages of the markets served (English, French, Spanish,
# Portuguese, German, Italian), with their usual abbreviations.
_MONTH_NAMES = (
    "january jan janvier janv enero ene janeiro januar jän gennaio gen",
    "february feb février fevrier févr fevr febrero fevereiro fev februar febbraio",
    "march mar mars marzo março marco märz maerz",
    "april apr avril avr abril abr aprile",
    "may mai mayo maio maggio mag",
    "june jun juin junio junho juni giugno giu",
    "july jul juillet juil julio julho juli luglio lug",
    "august aug août aout agosto ago",
    "september sep sept septembre septiembre setiembre setembro set settembre",
    "october oct octobre octubre outubro out oktober okt ottobre ott",
    "november nov novembre noviembre novembro",
    "december dec décembre decembre déc diciembre dic dezembro dez dezember dicembre",
)
_MONTHS = {name: i for i, names in enumerate(_MONTH_NAMES, start=1) for name in names.split()}
_ORDINAL = re.compile(r"(\d+)(st|nd|rd|th|er|e|º|°)\b")
_FILLER = frozenset({"of", "de", "del", "the"})


def normalize_date_of_birth(
    raw: str, region: str | None = None, today: dt.date | None = None
) -> str:
    """YYYYMMDD, or `_Invalid` when the text is not a plausible birth date.

    Read: `1990-03-04`, `1990/03/04`, `19900304`, ISO date-times, `04/03/1990` and `04.03.90`
    (a part over 12 is the day; otherwise month first for US customers, day first for the
    rest), month names in six languages (`March 4th, 1990`, `4 mars 1990`, `4-Mar-1990`).
    A two-digit year is the latest year ending so that is not in the future.
    """
    today = today or dt.date.today()
    date = _parse_date(raw.strip().lower(), region, today)
    if date is None or not (dt.date(1900, 1, 1) <= date <= today):
        raise _Invalid("invalid_date_of_birth")
    return f"{date.year:04d}{date.month:02d}{date.day:02d}"


def _parse_date(text: str, region: str | None, today: dt.date) -> dt.date | None:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}t.*", text):  # an ISO date-time: its date
        text = text[:10]
    text = _ORDINAL.sub(r"\1", text)
    tokens = [t for t in re.split(r"[\s,/.\-]+", text) if t and t not in _FILLER]
    try:
        if len(tokens) == 1 and re.fullmatch(r"\d{8}", tokens[0]):
            t = tokens[0]
            return dt.date(int(t[:4]), int(t[4:6]), int(t[6:]))
        if len(tokens) != 3:
            return None
        named = [i for i, t in enumerate(tokens) if t in _MONTHS]
        if len(named) == 1:
            month = _MONTHS[tokens[named[0]]]
            numbers = [t for i, t in enumerate(tokens) if i != named[0]]
            if not all(n.isdigit() for n in numbers):
                return None
            if len(numbers[0]) == 4:  # 1990 march 4
                return dt.date(int(numbers[0]), month, int(numbers[1]))
            return dt.date(_year(numbers[1], today), month, int(numbers[0]))
        if named or not all(t.isdigit() for t in tokens):
            return None
        a, b, c = tokens
        if len(a) == 4:
            return dt.date(int(a), int(b), int(c))
        if len(c) not in (2, 4):
            return None
        first, second, year = int(a), int(b), _year(c, today)
        if first > 12 or (second <= 12 and region != "US"):
            return dt.date(year, second, first)
        return dt.date(year, first, second)
    except ValueError:
        return None


def _year(text: str, today: dt.date) -> int:
    year = int(text)
    if len(text) == 2:
        year += 2000 if 2000 + year <= today.year else 1900
    return year


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
