"""The HTML page: self-contained, escaped, one chart per dataset and event whose bars are SENT
per day and whose dashed line is the weekly minimum spread over 7 days, and the coverage
table."""

import datetime as dt
import re

import pytest

from consumer.events.signal_window import Window
from consumer.tools.signals.page import BAR_COLOUR, CHART_HEIGHT, MINIMUM_COLOUR, render_page
from consumer.tools.signals.report import Selection, build_report
from tests.signal_records import read, record

LAST = dt.date(2026, 12, 5)
BAR = re.compile(
    r'<rect x="(\d+)" y="(\d+)" width="(\d+)" height="(\d+)" fill="'
    + re.escape(BAR_COLOUR)
    + r'" shape-rendering="crispEdges"><title>([0-9-]+): (\d+) SENT</title>'
)
MINIMUM = re.compile(r'<line x1="\d+" y1="(\d+)" x2="\d+" y2="\1" stroke="' + MINIMUM_COLOUR)


def _page(*records, days=7):
    return render_page(build_report(read(*records), Window(LAST, days), Selection()))


def test_the_page_needs_nothing_from_elsewhere():
    page = _page(record(0, "ds-1", "Lead", "2026-12-05", sent=3, match_keys={"em": 3}))
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(
        r"https?:|//|url\(|@import|<script|<link|<img|<iframe|<object|src=|href=", page, re.I
    )


def test_every_value_from_the_topic_is_escaped():
    page = _page(
        record(
            0,
            "<img src=x onerror=alert(1)>",
            'Lead"&<b>',
            "2026-12-05",
            workspace_id="<ws>",
            sent=1,
            failed={"<NEW>": 1},
            match_keys={"<k>": 1},
        )
    )
    assert "<img" not in page
    assert "<b>" not in page
    assert "<ws>" not in page
    assert "<NEW>" not in page
    assert "<k>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "Lead&quot;&amp;&lt;b&gt;" in page


def test_a_bar_per_day_with_sent_events_its_height_proportional():
    page = _page(
        record(0, "ds-1", "Lead", "2026-12-01", sent=10),
        record(1, "ds-1", "Lead", "2026-12-01", sent=30),
        record(0, "ds-1", "Lead", "2026-12-03", sent=20),
        record(0, "ds-1", "Lead", "2026-12-05", sent=5),
    )
    bars = [(day, int(sent), int(height)) for _, _, _, height, day, sent in BAR.findall(page)]
    assert [(day, sent) for day, sent, _ in bars] == [
        ("2026-12-01", 40),
        ("2026-12-03", 20),
        ("2026-12-05", 5),
    ]
    tallest = bars[0][2]
    assert [height for _, _, height in bars] == [tallest, tallest // 2, round(tallest / 8)]
    xs = [int(x) for x, *_ in BAR.findall(page)]
    assert xs == sorted(xs)  # oldest day left


def test_the_dashed_line_is_the_weekly_minimum_spread_over_seven_days():
    page = _page(record(0, "ds-1", "Lead", "2026-12-05", sent=50))
    [(_, y, _, height, _, _)] = BAR.findall(page)
    [line_y] = MINIMUM.findall(page)
    base = int(y) + int(height)
    assert (base - int(line_y)) / int(height) == pytest.approx(50 / 7 / 50, abs=0.01)
    assert "50 a week = 7.1 a day" in page


def test_with_few_sent_events_the_scale_still_shows_the_line():
    page = _page(record(0, "ds-1", "Lead", "2026-12-05", sent=1))
    [line_y] = MINIMUM.findall(page)
    assert 0 < int(line_y) < CHART_HEIGHT


def test_one_chart_per_dataset_and_event_and_one_coverage_table():
    page = _page(
        record(0, "ds-1", "Lead", "2026-12-05", sent=4, match_keys={"ph": 2, "em": 4}),
        record(0, "ds-1", "Purchase", "2026-12-05", sent=2, match_keys={"ctwa_clid": 1}),
        record(0, "ds-2", "Lead", "2026-12-04", skipped={"RESTRICTED_REGION": 3}),
    )
    assert page.count("<svg ") == 3
    assert page.count("<h2>Match-key coverage</h2>") == 1
    head = "<tr><th>dataset</th><th>event</th><th>SENT</th><th>em</th><th>ph</th>"
    assert head + "<th>ctwa_clid</th></tr>" in page
    assert (
        '<tr><td>ds-1</td><td>Lead</td><td class="n">4</td><td class="n">100%</td>'
        '<td class="n">50%</td><td class="n">-</td></tr>'
    ) in page
    assert "<td>RESTRICTED_REGION</td>" in page


def test_a_long_window_labels_every_other_day():
    page = _page(record(0, "ds-1", "Lead", "2026-12-05", sent=9), days=28)
    labels = re.findall(r'text-anchor="middle">(\d\d-\d\d)</text>', page)
    assert labels == [f"11-{d:02d}" for d in range(8, 31, 2)] + ["12-02", "12-04"]
