"""Phone numbers: the digits of the international number, country calling code first.

A quick path reads the common written forms itself; everything else goes through
libphonenumber's parser. Either way only numbers valid by libphonenumber's metadata are kept.

Rules that Meta leaves open, decided here, on one principle: a number we are not sure of is
dropped, never guessed (Meta takes the hash of a wrong number silently, and it matches nobody):
- The international prefix in any form makes a number international: `+`, `00`, `+00`, and the
  region's own (`011` from the US and Canada, read by libphonenumber). Otherwise the number is
  national, read in the region: the customer's country, then the contact's, then
  `CAPI_DEFAULT_PHONE_REGION` (chosen by `normalize_customer_info`; a country that is stated
  but not known gives no region).
- A number not valid in its region, or with no region, is read as international only when its
  digits say so: written without `+` but not starting with the trunk prefix `0`
  (`16505551212`). `0532 123 45 67` with no region is dropped, never read as `+53...`.
"""

from __future__ import annotations

import re
from functools import cache

import phonenumbers

from consumer.events.normalize.userdata import Invalid

__all__ = ["normalize_phone"]


def normalize_phone(raw: str, region: str | None) -> str:
    """Digits of the international number: country calling code first, no `+`, no `00`.

    `+...`, `00...` and `+00...` are international. Otherwise the number is read in `region`;
    when that gives no valid number, or there is no region, digits that do not start with `0`
    are tried as an international number written without `+` (`16505551212`). Only numbers valid
    by libphonenumber's metadata for their region are kept: a number that cannot exist matches
    nobody.
    """
    text = raw.strip()
    if text.startswith("+00"):
        text = "+" + text[3:]
    elif text.startswith("00"):
        text = "+" + text[2:]
    quick = _quick_phone(text, region) if text else None
    return quick if quick is not None else _parsed_phone(text, region)


def _parsed_phone(text: str, region: str | None) -> str:
    """`normalize_phone` through libphonenumber's parser: every written form it reads."""
    if not any(c.isdigit() for c in text):
        raise Invalid("invalid_phone")
    if text.startswith("+"):
        number = _parse_phone(text, None)
        if number is not None:
            return _e164_digits(number)
        raise Invalid("invalid_phone")
    if region:
        number = _parse_phone(text, region)
        if number is not None:
            return _e164_digits(number)
    digits = "".join(c for c in text if c.isdigit())
    if digits.startswith("0"):  # a trunk prefix: a national number, and no region to read it in
        raise Invalid("invalid_phone")
    number = _parse_phone("+" + digits, None)
    if number is not None:
        return _e164_digits(number)
    raise Invalid("invalid_phone")


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
        for size in (1, 2, 3):  # calling codes are prefix-free: one size at most fits
            code = _CALLING_CODES.get(digits[:size], 0)
            if code:
                national = digits[size:]
                break
        else:
            return None
    elif region:
        code = _calling_code_of(region)
        if code == 0 or digits.startswith(str(code)):
            return None
        national = digits
    else:
        return None
    prefix = _national_prefix(code)
    if not national or national[0] == "0" or prefix is None or prefix.match(national):
        return None
    return f"{code}{national}" if is_valid_number(code, national) else None


_NEVER = re.compile(r"(?!)")
# every country calling code, as written
_CALLING_CODES = {str(code): code for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}


@cache
def _calling_code_of(region: str) -> int:
    """The country calling code of `region`, 0 for a region libphonenumber does not know."""
    return phonenumbers.country_code_for_region(region)


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
    """The number `parse` reads in `text`, if it is valid."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    nsn = phonenumbers.national_significant_number(number)
    return number if is_valid_number(number.country_code or 0, nsn) else None


def is_valid_number(code: int, nsn: str) -> bool:
    """`phonenumbers.is_valid_number` for calling code `code` and national significant number
    `nsn`, from patterns compiled once per calling code (~0.5 µs instead of ~8).

    The same steps: with several regions behind the code, the number's region is the first
    whose leading digits start it or, for a region without leading digits, whose patterns it
    matches; it is valid when it matches the region's general pattern and the pattern of one
    of its number types, each at a length that type allows. A test holds the two equal on
    every region's example numbers and their near misses.
    """
    for leading, by_length in _regions_of(code):
        if leading is None:
            if _matches(by_length, nsn):
                return True
        elif leading.match(nsn):
            return _matches(by_length, nsn)
    return False


_ByLength = dict[int, tuple[re.Pattern[str], re.Pattern[str]]]
_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
)


def _matches(by_length: _ByLength, nsn: str) -> bool:
    patterns = by_length.get(len(nsn))
    return (
        patterns is not None
        and patterns[0].fullmatch(nsn) is not None
        and patterns[1].fullmatch(nsn) is not None
    )


@cache
def _regions_of(code: int) -> tuple[tuple[re.Pattern[str] | None, _ByLength], ...]:
    """For each region of calling code `code`, in libphonenumber's order: its leading digits
    (None when there is one region: `is_valid_number` then looks no further), and by length,
    its general pattern and the alternation of its number types' patterns."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
    found = []
    for region in regions:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)
        if metadata is None:
            continue
        leading = metadata.leading_digits if len(regions) > 1 else None
        found.append((re.compile(leading) if leading else None, _patterns_by_length(metadata)))
    return tuple(found)


def _patterns_by_length(metadata: phonenumbers.PhoneMetadata) -> _ByLength:
    descs = [getattr(metadata, name) for name in _TYPES]
    if not metadata.same_mobile_and_fixed_line_pattern:
        descs.append(metadata.mobile)
    general = metadata.general_desc
    if general is None or not general.national_number_pattern:
        return {}
    general_pattern = re.compile(general.national_number_pattern)
    by_length: _ByLength = {}
    for length in general.possible_length:  # never empty in libphonenumber's metadata
        kinds = [d.national_number_pattern for d in descs if _allows(d, length)]
        if kinds:
            alternation = "|".join(f"(?:{pattern})" for pattern in kinds)
            by_length[length] = (general_pattern, re.compile(alternation))
    return by_length


def _allows(desc: phonenumbers.PhoneNumberDesc | None, length: int) -> bool:
    """Whether numbers of `length` digits may be of this description (libphonenumber's test)."""
    return (
        desc is not None
        and bool(desc.national_number_pattern)
        and (not desc.possible_length or length in desc.possible_length)
    )


def _e164_digits(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
