"""The quick ways through normalization agree with the plain definitions they shortcut: the
characters a name or city keeps (ASCII shortcut, memoized Unicode categories), the parts of a
date (digits-only shortcut), and the email and zip rules on whitespace."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consumer.events.normalize import dates, normalize_email, normalize_zip
from consumer.events.normalize.userdata import Invalid, keep


def _keep_by_definition(raw: str, categories: str) -> str:
    text = unicodedata.normalize("NFC", raw).lower()
    kept = "".join(c for c in text if unicodedata.category(c)[0] in categories)
    return unicodedata.normalize("NFC", kept)


_WRITTEN = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(max_codepoint=127)),
    st.text(alphabet="aAzZ09 -'.éÉe\u0301İ\u0131ß\u03c3Σ日本٣²"),
)


@settings(max_examples=2000)
@given(_WRITTEN, st.sampled_from(["LMN", "LM"]))
@example("O'Brien", "LMN")
@example("Marie-Claire 2", "LM")
@example("e\u0301", "LMN")
@example("İstanbul", "LMN")
def test_keep_agrees_with_its_definition(raw, categories):
    assert keep(raw, categories) == _keep_by_definition(raw, categories)


def _tokens_by_definition(text: str) -> list[str]:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}t.*", text):
        text = text[:10]
    text = re.sub(r"(\d+)(st|nd|rd|th|er|e|º|°)\b", r"\1", text)
    return [t for t in re.split(r"[\s,/.\-]+", text) if t and t not in {"of", "de", "del", "the"}]


@settings(max_examples=2000)
@given(st.text(alphabet="0123456789/.- ,٣t", max_size=14))
@example("1990-03-04")
@example("04/03/1985")
@example("19900304")
@example("1990-03-04t10:00")
def test_the_parts_of_a_date_agree_with_their_definition(text):
    assert dates._tokens(text) == _tokens_by_definition(text)


@pytest.mark.parametrize("raw", ["a b@example.com", "a@exa\tmple.com", "a@example.com\u2003x"])
def test_an_email_with_whitespace_inside_is_refused(raw):
    with pytest.raises(Invalid, match="invalid_email"):
        normalize_email(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("SW1A 1AA", "sw1a1aa"), ("01310-100", "01310100"), ("K1A\u20030B1", "k1a0b1")],
)
def test_zip_drops_every_kind_of_space_and_dashes(raw, expected):
    assert normalize_zip(raw, "GB") == expected
