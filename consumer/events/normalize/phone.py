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
    if not any(c.isdigit() for c in text):
        raise Invalid("invalid_phone")
    quick = _quick_phone(text, region)
    return quick if quick is not None else _parsed_phone(text, region)


def _parsed_phone(text: str, region: str | None) -> str:
    """`normalize_phone` through libphonenumber's parser: every written form it reads."""
    if text.startswith("+"):
        number = _parse_phone(text, None)
        if number is not None and phonenumbers.is_valid_number(number):
            return _e164_digits(number)
        raise Invalid("invalid_phone")
    if region:
        number = _parse_phone(text, region)
        if number is not None and phonenumbers.is_valid_number(number):
            return _e164_digits(number)
    digits = "".join(c for c in text if c.isdigit())
    if digits.startswith("0"):  # a trunk prefix: a national number, and no region to read it in
        raise Invalid("invalid_phone")
    number = _parse_phone("+" + digits, None)
    if number is not None and phonenumbers.is_valid_number(number):
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
