"""Phone numbers: the digits of the international number, country calling code first.

A quick path reads the common written forms itself; everything else goes through
libphonenumber's parser. Either way only numbers valid by libphonenumber's metadata are kept.

Rules that Meta leaves open, decided here:
- A number written with `+` or `00` is international. Otherwise the region is the
  customer's country, then the contact's, then `CAPI_DEFAULT_PHONE_REGION` (chosen by
  `normalize_customer_info`); with no region a number whose digits form a valid international
  number (`16505551212`) is taken as such.
"""

from __future__ import annotations

import re
from functools import cache

import phonenumbers

from consumer.events.normalize.userdata import Invalid

__all__ = ["normalize_phone"]


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
    number = _parse_phone("+" + digits.lstrip("0"), None)
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
