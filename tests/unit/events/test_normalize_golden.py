"""Golden tables for countries, states and phones (literal inputs and outputs), and the
properties that keep a phone number from being guessed: a number we are not sure of is dropped."""

from __future__ import annotations

import hashlib

import phonenumbers
import pycountry
import pytest
from babel import Locale
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.events.normalize import (
    normalize_country,
    normalize_customer_info,
    normalize_phone,
    normalize_state,
)
from consumer.events.normalize.countries import LANGUAGES
from consumer.events.records import CustomerInfo
from tests.factories import customer_info

COUNTRIES = [
    ("Turkey", "tr"),
    ("Türkiye", "tr"),
    ("TURKIYE", "tr"),
    ("Türkei", "tr"),
    ("Turquía", "tr"),
    ("Russia", "ru"),
    ("Россия", "ru"),
    ("Great Britain", "gb"),
    ("Britain", "gb"),
    ("U.K.", "gb"),
    ("United Kingdom", "gb"),
    ("England", "gb"),
    ("Holland", "nl"),
    ("the Netherlands", "nl"),
    ("Países Bajos", "nl"),
    ("Korea", "kr"),
    ("South Korea", "kr"),
    ("North Korea", "kp"),
    ("Ivory Coast", "ci"),
    ("Côte d'Ivoire", "ci"),
    ("Cote dIvoire", "ci"),
    ("Cape Verde", "cv"),
    ("Cabo Verde", "cv"),
    ("Brunei", "bn"),
    ("Vatican", "va"),
    ("Vatican City", "va"),
    ("Palestine", "ps"),
    ("Macedonia", "mk"),
    ("North Macedonia", "mk"),
    ("Micronesia", "fm"),
    ("Swaziland", "sz"),
    ("Eswatini", "sz"),
    ("East Timor", "tl"),
    ("Timor-Leste", "tl"),
    ("DR Congo", "cd"),
    ("Congo - Kinshasa", "cd"),
    ("Democratic Republic of the Congo", "cd"),
    ("Democratic Republic of Congo", "cd"),
    ("RDC", "cd"),
    ("Republic of the Congo", "cg"),
    ("Macedonia, the former Yugoslav Republic of", "mk"),
    ("the former Yugoslav Republic of Macedonia", "mk"),
    ("UAE", "ae"),
    ("United Arab Emirates", "ae"),
    ("Macau", "mo"),
    ("Macao", "mo"),
    ("Inglaterra", "gb"),
    ("Islamic Republic of Iran", "ir"),
    ("Republic of Korea", "kr"),
    ("British Virgin Islands", "vg"),
    ("U.S.A.", "us"),
    ("USA", "us"),
    ("United States", "us"),
    ("Estados Unidos", "us"),
    ("États-Unis", "us"),
    ("Deutschland", "de"),
    ("Allemagne", "de"),
    ("Germania", "de"),
    ("Almanya", "de"),
    ("Jerman", "de"),
    ("ألمانيا", "de"),
    ("Германия", "de"),
    ("España", "es"),
    ("Espana", "es"),
    ("Brasil", "br"),
    ("Brazil", "br"),
    ("Brésil", "br"),
    ("México", "mx"),
    ("mx", "mx"),
    ("MEX", "mx"),
    ("de", "de"),
    ("DEU", "de"),
    ("Czech Republic", "cz"),
    ("Czechia", "cz"),
    ("Burma", "mm"),
    ("  france ", "fr"),
    ("M\u0131s\u0131r", "eg"),
    ("مصر", "eg"),
]


@pytest.mark.parametrize(("raw", "expected"), COUNTRIES)
def test_country(raw, expected):
    assert normalize_country(raw) == expected


@pytest.mark.parametrize("raw", ["Atlantis", "Europe", "Congo - Somewhere", "X", "ZZ", "123"])
def test_unknown_country_is_refused(raw):
    with pytest.raises(ValueError, match="invalid_country"):
        normalize_country(raw)


def test_every_iso_country_by_its_names_in_every_language():
    """Each ISO 3166-1 country from its codes, its ISO names, and its CLDR name in each of the
    platform's languages, as written and folded (no accents, upper case)."""
    failures = []
    for country in pycountry.countries:
        code = country.alpha_2.lower()
        names = [country.alpha_2, country.alpha_3, country.name]
        names += [Locale.parse(lang).territories[country.alpha_2] for lang in LANGUAGES]
        for name in names:
            for written in (name, name.upper(), _without_accents(name)):
                try:
                    if normalize_country(written) != code:
                        failures.append((written, code))
                except ValueError:
                    failures.append((written, code))
    assert failures == []


def _without_accents(text: str) -> str:
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


STATES = [
    ("California", "US", "ca"),
    ("CA", "US", "ca"),
    ("Calif.", "US", "ca"),
    ("Calif", "US", "ca"),
    ("Fla.", "US", "fl"),
    ("Tex.", "US", "tx"),
    ("Penn.", "US", "pa"),
    ("Pa.", "US", "pa"),
    ("Mass.", "US", "ma"),
    ("N.Y.", "US", "ny"),
    ("New York", "US", "ny"),
    ("W.Va.", "US", "wv"),
    ("District of Columbia", "US", "dc"),
    ("Puerto Rico", "US", "pr"),
    ("Ontario", "CA", "on"),
    ("Ont.", "CA", "on"),
    ("Québec", "CA", "qc"),
    ("Quebec", "CA", "qc"),
    ("Que.", "CA", "qc"),
    ("B.C.", "CA", "bc"),
    ("British Columbia", "CA", "bc"),
    ("Nfld.", "CA", "nl"),
    ("P.E.I.", "CA", "pe"),
    ("Calif.", None, "ca"),
    ("Ontario", None, "on"),
    ("Texas", None, "tx"),
    ("São Paulo", "BR", "sãopaulo"),
    ("SP", "BR", "sp"),
    ("Île-de-France", "FR", "îledefrance"),
    ("Bayern", "DE", "bayern"),
    ("Calif.", "BR", "calif"),
]


@pytest.mark.parametrize(("raw", "region", "expected"), STATES)
def test_state(raw, region, expected):
    assert normalize_state(raw, region) == expected


PHONES = [
    ("+001 616 954 7888", None, "16169547888"),
    ("+0044 20 7946 0958", None, "442079460958"),
    ("0044 20 7946 0958", "US", "442079460958"),
    ("011 44 20 7946 0958", "US", "442079460958"),
    ("011 44 20 7946 0958", "CA", "442079460958"),
    ("0532 123 45 67", "TR", "905321234567"),
    ("16505551212", None, "16505551212"),
    ("+90 532 123 45 67", "US", "905321234567"),
]


@pytest.mark.parametrize(("raw", "region", "expected"), PHONES)
def test_phone_international_prefixes_and_regions(raw, region, expected):
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(("raw", "region"), [("0532 123 45 67", None), ("0612345678", None)])
def test_a_national_number_without_a_region_is_dropped(raw, region):
    with pytest.raises(ValueError, match="invalid_phone"):
        normalize_phone(raw, region)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.mark.parametrize(
    ("country", "contact", "default", "phone"),
    [
        ("Turkey", None, None, _digest("905321234567")),
        ("Türkiye", "US", "US", _digest("905321234567")),
        (None, "Turkey", None, _digest("905321234567")),
        (None, None, "TR", _digest("905321234567")),
        ("Atlantis", "TR", "TR", None),  # a stated country we do not know: no region, no guess
        (None, None, None, None),
    ],
)
def test_the_phone_is_read_in_the_customers_country_then_the_contacts_then_the_default(
    country, contact, default, phone
):
    info = CustomerInfo.from_avro(customer_info(phone="0532 123 45 67", country=country))
    out = normalize_customer_info(info, contact_country=contact, default_region=default)
    assert out.hashed.get("ph") == phone
    if phone is None:
        assert ("ph", "invalid_phone") in {(d.key, d.reason) for d in out.dropped}


def _national_examples():
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None and phonenumbers.is_valid_number(example):
                national = phonenumbers.format_number(
                    example, phonenumbers.PhoneNumberFormat.NATIONAL
                )
                yield (
                    region,
                    national,
                    phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)[1:],
                )


EXAMPLES = list(_national_examples())


def test_every_regions_national_examples_with_the_right_country():
    wrong = [(r, n, e) for r, n, e in EXAMPLES if _or_none(n, r) != e]
    assert wrong == []


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(EXAMPLES), st.sampled_from([*sorted(phonenumbers.SUPPORTED_REGIONS), None]))
def test_with_a_wrong_or_no_country_a_national_number_is_never_guessed(example, given_region):
    """Read with another country (or none), a national number is that country's number if it
    is valid there, or what its digits say internationally, or nothing: never a third guess."""
    true_region, national, _ = example
    if given_region == true_region:
        return
    out = _or_none(national, given_region)
    if out is None:
        return
    digits = "".join(c for c in national if c.isdigit())
    allowed = set()
    if given_region is not None:
        parsed = _parse(national, given_region)
        if parsed is not None and phonenumbers.is_valid_number(parsed):
            allowed.add(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)[1:])
    if not digits.startswith("0"):
        allowed.add(digits)  # written without `+`, the digits say this number internationally
    assert out in allowed, (national, true_region, given_region, out)


def _or_none(raw, region):
    try:
        return normalize_phone(raw, region)
    except ValueError:
        return None


def _parse(raw, region):
    try:
        return phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None


# Where Meta's documentation is silent, as Meta's newest normalizer (capi-param-builder) does;
# where it contradicts the documentation, as the documentation says (docs/normalization.md).
DECISIONS = [
    ("first_name", "John Smith", None, "johnsmith"),
    ("first_name", "O'Connor", None, "oconnor"),
    ("last_name", "Smith-Jones", None, "smithjones"),
    ("last_name", "Van Der Berg, III", None, "vanderbergiii"),
    ("first_name", "José María", None, "josémaría"),
    ("first_name", "Владимир", None, "владимир"),
    ("first_name", "Agent007", None, "agent007"),
    ("city", "    Menlo-Park  ", None, "menlopark"),
    ("city", "St. Louis", None, "stlouis"),
    ("city", "Montréal", None, "montréal"),  # the documentation: UTF-8 (the library drops é)
    ("city", "Москва", None, "москва"),
    ("city", "Los Angeles 90210", None, "losangeles90210"),
    ("gender", "Woman", None, "f"),
    ("gender", "Boy", None, "m"),
    ("gender", "ma'am", None, "f"),
    ("gender", "Femme", None, "f"),
    ("gender", "male.", None, "m"),
    ("zip", "94025-1234", None, "94025"),
    ("zip", "94025-1234", "US", "94025"),
    ("zip", "01310-100", "BR", "01310100"),  # the documentation: no dash (the library cuts)
    ("zip", "SW1A 1AA", "GB", "sw1a1aa"),  # the documentation: no spaces (the library keeps)
    ("zip", "00-950", None, "00950"),
    ("external_id", " User 123 ", None, "user123"),
    ("external_id", "dXNlcjEyMw==", None, "dxnlcjeymw=="),
    ("state", "Carolina", "US", "carolina"),  # the documentation: not cut to two letters
    ("country", "UK", None, "gb"),  # ISO 3166-1 (the library sends uk)
    ("country", "UAE", None, "ae"),  # the United Arab Emirates, as people write it; not ua
    ("phone", "4792813113", "US", "14792813113"),  # the documentation: with the country code
]


@pytest.mark.parametrize(("field", "raw", "country", "expected"), DECISIONS)
def test_decisions_where_meta_leaves_a_choice(field, raw, country, expected):
    values = {"country": country, field: raw}
    out = normalize_customer_info(CustomerInfo.from_avro(customer_info(**values)))
    assert out.hashed.get(_KEYS[field]) == (None if expected is None else _digest(expected))


_KEYS = {
    "first_name": "fn",
    "last_name": "ln",
    "city": "ct",
    "gender": "ge",
    "zip": "zp",
    "external_id": "external_id",
    "state": "st",
    "country": "country",
    "phone": "ph",
}


def test_caches_keyed_by_raw_text_stay_bounded():
    from consumer.events.normalize import cache
    from consumer.events.normalize.places import country_or_none

    cache.clear_caches()
    for i in range(cache.CACHE_SIZE + 5_000):
        info = CustomerInfo.from_avro(
            customer_info(email=f"p{i}@x.co", state=f"State {i}", country=f"Nowhere {i}")
        )
        normalize_customer_info(info)
    assert len(cache.info_cache) <= cache.CACHE_SIZE
    assert len(cache.digest_cache) <= cache.CACHE_SIZE
    countries = country_or_none.cache_info()
    assert countries.maxsize is not None and countries.currsize <= countries.maxsize
