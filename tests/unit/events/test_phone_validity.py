"""The phone validity check compiled once per calling code answers exactly what
`phonenumbers.is_valid_number` answers: on every region's example number of every type, and on
the near misses of each (every digit changed, a digit too many, a digit too few)."""

from __future__ import annotations

import random

import phonenumbers
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.events.normalize.phone import is_valid_number

_TYPES = [t for t in vars(phonenumbers.PhoneNumberType).values() if isinstance(t, int)]


def _examples() -> list[phonenumbers.PhoneNumber]:
    found = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in _TYPES:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                found.append(example)
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        example = phonenumbers.example_number_for_non_geo_entity(code)
        if example is not None:
            found.append(example)
    return found


def _near_misses(nsn: str, rng: random.Random) -> list[str]:
    """`nsn` itself, with each digit changed to a random other, one longer and one shorter."""
    misses = [nsn, nsn + str(rng.randrange(10)), nsn[:-1]]
    for i in range(len(nsn)):
        other = rng.choice([d for d in "0123456789" if d != nsn[i]])
        misses.append(nsn[:i] + other + nsn[i + 1 :])
    return misses


def _libphonenumbers_answer(code: int, nsn: str) -> bool:
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int(nsn))
    if nsn.startswith("0"):  # kept as libphonenumber's parser keeps it
        number.italian_leading_zero = True
        number.number_of_leading_zeros = len(nsn) - len(nsn.lstrip("0"))
    return phonenumbers.is_valid_number(number)


def test_the_compiled_check_answers_as_libphonenumber_on_examples_and_near_misses():
    rng = random.Random(7)
    checked = valid = 0
    for example in _examples():
        nsn = phonenumbers.national_significant_number(example)
        for candidate in _near_misses(nsn, rng):
            if not candidate or candidate.strip("0") == "":
                continue
            code = example.country_code
            assert code is not None
            expected = _libphonenumbers_answer(code, candidate)
            assert is_valid_number(code, candidate) == expected, (
                example.country_code,
                candidate,
            )
            checked += 1
            valid += expected
    # enough numbers of both answers for the comparison to mean something
    assert checked > 15_000
    assert 0.2 < valid / checked < 0.8


@settings(max_examples=3000)
@given(
    st.sampled_from([*sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE), 0, 999]),
    st.text(alphabet="0123456789", min_size=1, max_size=18),
)
def test_the_compiled_check_answers_as_libphonenumber_on_any_digits(code, nsn):
    if nsn.strip("0") == "":
        return
    assert is_valid_number(code, nsn) == _libphonenumbers_answer(code, nsn)
