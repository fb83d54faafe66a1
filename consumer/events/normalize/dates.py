"""Dates of birth: YYYYMMDD.

Rules that Meta leaves open, decided here:
- ISO `YYYY-MM-DD` and `YYYYMMDD` first. For `a/b/yyyy` (also `-` or `.`), a part over 12 is
  the day; when both could be the day, month first for US customers, day first for everyone
  else. Month names in six languages are read (`5 March 1990`, `March 5th, 1990`). A two-digit
  year is the latest such year not in the future. Dates before 1900 or in the future are
  refused.
"""

from __future__ import annotations

import datetime as dt
import re

from consumer.events.normalize.userdata import Invalid

__all__ = ["normalize_date_of_birth"]


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
    """YYYYMMDD, or `Invalid` when the text is not a plausible birth date.

    Read: `1990-03-04`, `1990/03/04`, `19900304`, ISO date-times, `04/03/1990` and `04.03.90`
    (a part over 12 is the day; otherwise month first for US customers, day first for the
    rest), month names in six languages (`March 4th, 1990`, `4 mars 1990`, `4-Mar-1990`).
    A two-digit year is the latest year ending so that is not in the future.
    """
    today = today or dt.date.today()
    date = _parse_date(raw.strip().lower(), region, today)
    if date is None or not (dt.date(1900, 1, 1) <= date <= today):
        raise Invalid("invalid_date_of_birth")
    return date.isoformat().replace("-", "")  # a year past 1900 has its four digits


_ISO_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}t.*")
_SEPARATORS = re.compile(r"[\s,/.\-]+")
_ALL_DIGITS = re.compile(r"(?:\d+[/.\-])*\d+")  # `1990-03-04`, `04/03/1990`, `19900304`


def _tokens(text: str) -> list[str]:
    """The parts of a date: its numbers and words, without ordinal suffixes and fillers."""
    if _ALL_DIGITS.fullmatch(text):  # the common forms, in one step
        return _SEPARATORS.split(text)
    if _ISO_DATE_TIME.fullmatch(text):  # an ISO date-time: its date
        text = text[:10]
    text = _ORDINAL.sub(r"\1", text)
    return [t for t in _SEPARATORS.split(text) if t and t not in _FILLER]


def _parse_date(text: str, region: str | None, today: dt.date) -> dt.date | None:
    tokens = _tokens(text)
    try:
        if len(tokens) == 1 and len(tokens[0]) == 8 and tokens[0].isdigit():
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
    except (ValueError, OverflowError):  # a day or year past what a date (or a C long) holds
        return None


def _year(text: str, today: dt.date) -> int:
    year = int(text)
    if len(text) == 2:
        year += 2000 if 2000 + year <= today.year else 1900
    return year
