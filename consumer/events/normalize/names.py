"""Who the customer is: names, gender, email and external id.

Rules that Meta leaves open, decided here as Meta's newest normalizer (capi-param-builder, which
its Node SDK delegates to) decides them; where that library contradicts Meta's documentation,
the documentation wins (docs/normalization.md's table of decisions lists each):
- Names: lowercase, no punctuation and no spaces (`John Smith` -> `johnsmith`, as the library;
  the documentation says nothing of spaces); letters and marks of every script kept (the
  documentation's `valéry`), digits kept (the library's `agent007`).
- Gender: `f` or `m`, from the words the library knows and their equivalents in five more
  languages; anything else is dropped.
- external_id: lowercase, without whitespace, hashed (the library; the documentation asks only
  for the same format on every channel).
"""

from __future__ import annotations

from consumer.events.normalize.userdata import Invalid, keep

__all__ = ["normalize_email", "normalize_external_id", "normalize_gender", "normalize_name"]


def normalize_name(raw: str) -> str:
    """Lowercase; letters and marks of every script, and digits, kept; punctuation, symbols and
    spaces dropped."""
    return keep(raw, "LMN")


# the words capi-param-builder knows (PIIUtil, getNormalizedGender)
_LIBRARY_MALE = """boy gentleman guy sir mister mr son father dad daddy papa uncle nephew brother
    husband boyfriend groom widower king prince duke count emperor god lord lad fellow chap
    bloke dude he him his himself"""
_LIBRARY_FEMALE = """girl lady miss ms mrs madam ma'am daughter mother mom mama mommy aunt niece
    sister wife girlfriend bride widow queen princess duchess countess empress goddess maiden
    lass gal chick dame belle she her hers herself"""
_GENDERS = {
    "f": "f",
    "female": "f",
    "woman": "f",
    "w": "f",
    "femme": "f",
    "féminin": "f",
    "feminin": "f",
    "mujer": "f",
    "femenino": "f",
    "feminino": "f",
    "weiblich": "f",
    "m": "m",
    "male": "m",
    "man": "m",
    "homme": "m",
    "masculin": "m",
    "hombre": "m",
    "masculino": "m",
    "männlich": "m",
    "mannlich": "m",
    **dict.fromkeys(_LIBRARY_MALE.split(), "m"),
    **dict.fromkeys(_LIBRARY_FEMALE.split(), "f"),
}


def normalize_gender(raw: str) -> str:
    value = _GENDERS.get(raw.strip().lower().rstrip("."))
    if value is None:
        raise Invalid("invalid_gender")
    return value


def normalize_email(raw: str) -> str:
    value = raw.strip().lower()
    local, at, domain = value.partition("@")
    if not at or not local or "." not in domain or len(value.split()) != 1:
        raise Invalid("invalid_email")
    return value


def normalize_external_id(raw: str) -> str:
    return "".join(raw.lower().split())
