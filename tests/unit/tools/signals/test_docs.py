"""docs/signals.md documents what the command prints: every JSON field, and the advice for
every reason, word for word."""

import datetime as dt
import re
from pathlib import Path

from consumer.events.signal_window import Window
from consumer.tools.signals.advice import REASON_ADVICE
from consumer.tools.signals.report import Selection, build_report
from tests.signal_records import read, record

DOC = (Path(__file__).resolve().parents[4] / "docs" / "signals.md").read_text()


def _section(title):
    return DOC.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _paths(value, prefix=""):
    """Every field of a JSON value as the docs name it: `signals[].per_day[].day`."""
    if isinstance(value, dict):
        return {
            path
            for key, inner in value.items()
            for path in {f"{prefix}{key}"} | _paths(inner, f"{prefix}{key}.")
        }
    if isinstance(value, list) and value:
        return _paths(value[0], prefix[:-1] + "[].")
    return set()


def test_every_json_field_is_documented_and_every_documented_field_exists():
    records = read(
        record(
            0,
            "ds-1",
            "Lead",
            "2026-12-05",
            sent=2,
            skipped={"DUPLICATE": 1},
            match_keys={"em": 2},
        )
    )
    report = build_report(records, Window(dt.date(2026, 12, 5)), Selection())
    documented = set()
    for cell in re.findall(r"^\| (`[^|]+`) \|", _section("JSON fields"), re.MULTILINE):
        names = re.findall(r"`([^`]+)`", cell)
        parent = names[0].rsplit(".", 1)[0] + "." if "." in names[0] else ""
        documented |= {name if not name.startswith(".") else parent + name[1:] for name in names}
    assert documented == _paths(report.as_json())


def test_the_advice_table_is_the_commands_advice():
    rows = re.findall(
        r"^\| `([A-Z_]+)` \| (.+) \|$", _section("What to do about each reason"), re.M
    )
    assert dict(rows) == dict(REASON_ADVICE)
