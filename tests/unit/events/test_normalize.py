import hashlib
import re

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.events import normalize
from consumer.events.normalize import (
    HASHED_KEYS,
    normalize_city,
    normalize_country,
    normalize_customer_info,
    normalize_date_of_birth,
    normalize_email,
    normalize_gender,
    normalize_name,
    normalize_phone,
    normalize_state,
    normalize_zip,
    sha256_hex,
)
from consumer.events.records import CUSTOMER_FIELDS, CustomerInfo
from tests.factories import customer_info


def test_meta_published_digests():
    assert sha256_hex(normalize_email(" John_Smith@gmail.com ")) == (
        "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
    )
    assert sha256_hex(normalize_phone("+1 (650) 555-1212", None)) == (
        "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
    )


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+1 (650) 555-1212", None, "16505551212"),
        ("16505551212", None, "16505551212"),
        ("(650) 555-1212", "US", "16505551212"),
        ("06 12 34 56 78", "FR", "33612345678"),
        ("0044 20 7946 0958", None, "442079460958"),
        ("+44 (0)20 7946 0958", None, "442079460958"),
        ("020 7946 0958", "GB", "442079460958"),
        ("+55 11 91234-5678", "US", "5511912345678"),
    ],
)
def test_phone(raw, region, expected):
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize("raw", ["", "call me", "12", "+0 000"])
def test_impossible_phone_is_refused(raw):
    with pytest.raises(ValueError, match="invalid_phone"):
        normalize_phone(raw, "US")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("John", "john"),
        ("  Marie-Claire ", "marieclaire"),
        ("Mary  Ann", "maryann"),
        ("O'Brien", "obrien"),
        ("José", "josé"),
        ("Zoë", "zoë"),
        ("Oğuz", "oğuz"),
        ("Владимир", "владимир"),
        ("李", "李"),
        ("J.R.R.", "jrr"),
    ],
)
def test_names_keep_letters_of_every_script(raw, expected):
    assert normalize_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("1990-03-04", None, "19900304"),
        ("19900304", None, "19900304"),
        ("04/03/1990", "FR", "19900304"),
        ("04/03/1990", "US", "19900403"),
        ("25/12/1990", "US", "19901225"),
        ("12/25/1990", "FR", "19901225"),
        ("March 4, 1990", None, "19900304"),
        ("4 Mar 1990", None, "19900304"),
        ("March 4th, 1990", None, "19900304"),
        ("4th of March 1990", None, "19900304"),
        ("4-Mar-1990", None, "19900304"),
        ("4 mars 1990", None, "19900304"),
        ("1er janvier 1990", None, "19900101"),
        ("4 de marzo de 1990", None, "19900304"),
        ("4. März 1990", None, "19900304"),
        ("1990/03/04", None, "19900304"),
        ("04.03.1990", "DE", "19900304"),
        ("04/03/90", "US", "19900403"),
        ("04/03/05", "FR", "20050304"),
        ("1990-03-04T00:00:00Z", None, "19900304"),
        (" 1990-03-04 ", None, "19900304"),
    ],
)
def test_date_of_birth(raw, region, expected):
    assert normalize_date_of_birth(raw, region) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "31/02/1990",
        "yesterday",
        "1800-01-01",
        "2999-01-01",
        "13/13/1990",
        "1990",
        "4 5",
        "1990-01-99999999999",
        "99999999999999999999-01-01",
        "01/01/99999999999999999999",
    ],
)
def test_impossible_date_of_birth_is_refused(raw):
    with pytest.raises(ValueError, match="invalid_date_of_birth"):
        normalize_date_of_birth(raw)


@pytest.mark.parametrize(
    ("raw", "expected"), [("Female", "f"), ("M", "m"), ("femme", "f"), ("male", "m")]
)
def test_gender(raw, expected):
    assert normalize_gender(raw) == expected


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("California", "US", "ca"),
        ("CA", "US", "ca"),
        ("New York", None, "ny"),
        ("Île-de-France", "FR", "îledefrance"),
    ],
)
def test_state(raw, region, expected):
    assert normalize_state(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("New York", "newyork"),
        ("São Paulo", "sãopaulo"),
        ("Paris 15e", "paris15e"),
        ("St. John's", "stjohns"),
        ("東京", "東京"),
    ],
)
def test_city(raw, expected):
    assert normalize_city(raw) == expected


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [("94025-1234", "US", "94025"), ("SW1A 1AA", "GB", "sw1a1aa"), ("01310-100", "BR", "01310100")],
)
def test_zip(raw, region, expected):
    assert normalize_zip(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("US", "us"),
        ("usa", "us"),
        ("United States", "us"),
        ("DEU", "de"),
        ("Germany", "de"),
        ("United Kingdom", "gb"),
        ("uk", "gb"),
    ],
)
def test_country(raw, expected):
    assert normalize_country(raw) == expected


def test_customer_info_hashes_present_fields_and_drops_bad_ones():
    info = CustomerInfo(
        email="not-an-email",
        phone="+1 650 555 1212",
        first_name="  ",
        gender="other",
        country="USA",
        zip="94025-1234",
    )
    out = normalize_customer_info(info)
    assert set(out.hashed) == {"ph", "country", "zp"}
    assert out.hashed["zp"] == hashlib.sha256(b"94025").hexdigest()
    assert {(d.key, d.reason) for d in out.dropped} == {
        ("em", "invalid_email"),
        ("ge", "invalid_gender"),
    }


def test_national_phone_takes_the_customers_country():
    out = normalize_customer_info(CustomerInfo(phone="06 12 34 56 78", country="France"))
    assert out.hashed["ph"] == sha256_hex("33612345678")


def test_existing_sha256_passes_through_lowercased():
    digest = "62A14E44F765419D10FEA99367361A727C12365E2520F32218D505ED9AA0F62F"
    out = normalize_customer_info(CustomerInfo(email=digest))
    assert out.hashed == {"em": digest.lower()}


_HEX = re.compile(r"[0-9a-f]{64}")


@given(st.builds(CustomerInfo, **{f: st.one_of(st.none(), st.text()) for f in CUSTOMER_FIELDS}))
def test_never_raises_and_only_emits_digests(info):
    out = normalize_customer_info(info, default_region="US")
    assert set(out.hashed) <= HASHED_KEYS
    assert all(_HEX.fullmatch(v) for v in out.hashed.values())


@given(st.text())
def test_name_normalization_is_idempotent(text):
    once = normalize_name(text)
    assert normalize_name(once) == once


def _idempotent(fn, text, *args):
    try:
        once = fn(text, *args)
    except ValueError:
        return
    assert fn(once, *args) == once


@given(st.text())
def test_every_field_normalization_is_idempotent(text):
    _idempotent(normalize_email, text)
    _idempotent(normalize_name, text)
    _idempotent(normalize_city, text)
    _idempotent(normalize_gender, text)
    _idempotent(normalize_country, text)
    _idempotent(normalize_state, text, "US")
    _idempotent(normalize_state, text, "FR")
    _idempotent(normalize_zip, text, "US")
    _idempotent(normalize_zip, text, "GB")
    _idempotent(normalize_date_of_birth, text, "US")


@given(st.from_regex(r"\+?[0-9 ()\-]{0,20}", fullmatch=True), st.sampled_from(["US", "FR", None]))
def test_phone_normalization_is_idempotent(text, region):
    """A normalized phone is international: it reads the same again without a region (with
    one, its digits could also pass for a national number there)."""
    try:
        once = normalize_phone(text, region)
    except ValueError:
        return
    assert normalize_phone(once, None) == once
    assert normalize_phone("+" + once, region) == once


@given(st.builds(CustomerInfo, **{f: st.one_of(st.none(), st.text()) for f in CUSTOMER_FIELDS}))
def test_no_plaintext_value_is_ever_emitted(info):
    out = normalize_customer_info(info, default_region="US")
    for name in CUSTOMER_FIELDS:
        raw = getattr(info, name)
        if raw and raw.strip() and not re.fullmatch(r"[0-9a-fA-F]{64}", raw.strip()):
            assert raw.strip() not in out.hashed.values()


def _slow_phone(text, region):
    try:
        return normalize.phone._parsed_phone(text, region)
    except ValueError:
        return None


def _written_forms():
    """Every region's example numbers of every type, as people write them, in every format."""
    formats = (
        phonenumbers.PhoneNumberFormat.E164,
        phonenumbers.PhoneNumberFormat.INTERNATIONAL,
        phonenumbers.PhoneNumberFormat.NATIONAL,
    )
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE,
            phonenumbers.PhoneNumberType.TOLL_FREE,
        ):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            for fmt in formats:
                yield region, phonenumbers.format_number(example, fmt)


@pytest.mark.parametrize(
    ("text", "region"),
    [
        ("+0307000000000", None),
        ("+1 650 555 1212 ext 3", None),
        ("020 7946 0958", "GB"),
        ("16505551212", "US"),
        ("+39 06 6982 1234", None),
        ("1-800-FLOWERS", "US"),
    ],
)
def test_quick_phone_path_leaves_the_unusual_to_the_parser(text, region):
    assert normalize.phone._quick_phone(text, region) is None


def test_quick_phone_path_agrees_with_libphonenumbers_parser():
    taken = 0
    for region, text in _written_forms():
        for read_in in (region, "US", "BR", None):
            quick = normalize.phone._quick_phone(text, read_in)
            if quick is not None:
                taken += 1
                assert quick == _slow_phone(text, read_in), (text, read_in)
    assert taken > 500  # the quick path is really taken for most well-written numbers


@settings(max_examples=1500)
@given(
    st.sampled_from(["", "+", "00", "+1", "+44", "+49", "+55", "+52", "+39", "+54", "+91"]),
    st.text(alphabet="0123456789 -().", min_size=1, max_size=16),
    st.sampled_from([None, "US", "GB", "DE", "BR", "MX", "IT", "AR", "IN", "FR"]),
)
def test_quick_phone_path_never_disagrees_on_any_digits(prefix, rest, region):
    text = (prefix + rest).strip()
    if not text or not any(c.isdigit() for c in text):
        return
    if text.startswith("00"):
        text = "+" + text[2:]
    quick = normalize.phone._quick_phone(text, region)
    if quick is not None:
        assert quick == _slow_phone(text, region)


@given(
    st.builds(
        CustomerInfo,
        **{
            f: st.one_of(st.none(), st.text(alphabet="ab\x00\x01 @.+1", max_size=4))
            for f in CUSTOMER_FIELDS
        },
    ),
    st.sampled_from([None, "US", "BR"]),
)
def test_the_whole_info_cache_answers_what_normalizing_would(info, region):
    """Values holding the key's separators, or shifting between fields, never share a key."""
    fresh = normalize._normalize_info(info, None, region)
    for _ in range(2):  # computed, then from the cache
        out = normalize_customer_info(info, default_region=region)
        assert out.hashed == fresh.hashed and out.dropped == fresh.dropped
    out.hashed.clear()  # what a caller does to its copy does not reach the cache
    assert normalize_customer_info(info, default_region=region).hashed == fresh.hashed


def test_values_that_run_together_alike_are_told_apart():
    a = CustomerInfo(first_name="a\x00", last_name="b")
    b = CustomerInfo(first_name="a", last_name="\x00b")
    assert normalize._info_key(a, None, None) != normalize._info_key(b, None, None)
    assert normalize._info_key(CustomerInfo(city="\x01"), None, None) != normalize._info_key(
        CustomerInfo(), None, None
    )


def test_a_date_of_birth_past_what_a_date_holds_drops_only_that_field():
    info = CustomerInfo.from_avro(
        customer_info(email="a@b.co", date_of_birth="1990-01-99999999999")
    )
    out = normalize_customer_info(info)
    assert set(out.hashed) == {"em"}
    assert [(d.key, d.reason) for d in out.dropped] == [("db", "invalid_date_of_birth")]
