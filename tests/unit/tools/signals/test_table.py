"""The text table: one row per dataset and event, match keys and reasons under it."""

import datetime as dt

from consumer.events.signal_window import Window
from consumer.tools.signals.report import Selection, build_report
from consumer.tools.signals.table import render_table
from tests.signal_records import read, record

LAST = dt.date(2026, 12, 5)


def test_the_table():
    counts = read(
        record(
            0,
            "ds-1",
            "Lead",
            "2026-12-04",
            sent=12,
            skipped={"CHANNEL_NOT_SELECTED": 3},
            failed={"ASSET_NOT_LINKED": 1},
            match_keys={"em": 12, "ph": 6},
        ),
        record(1, "ds-1", "Lead", "2026-12-05", sent=3, match_keys={"em": 3}),
        record(
            0,
            "1234567890",
            "Purchase",
            "2026-12-05",
            workspace_id="ws-22",
            sent=55,
            match_keys={"ph": 55, "ctwa_clid": 11},
        ),
    )
    table = render_table(build_report(counts, Window(LAST, 3), Selection()))
    assert table.splitlines() == [
        "signals: 2026-12-03 to 2026-12-05 (3 UTC days)",
        "Meta optimises ads for an event once a dataset sends it about 50 times a week.",
        "",
        "DATASET     EVENT     WORKSPACE  SENT 7 DAYS  MINIMUM          "
        "SENT PER DAY, 12-03 TO 12-05",
        "1234567890  Purchase  ws-22               55  reached           0  0 55",
        "    match keys  ph 100%  ctwa_clid 20%",
        "",
        "ds-1        Lead      ws-1                15  below, 35 to go   0 12  3",
        "    match keys  em 100%  ph 40%",
        "    not sent  SKIPPED CHANNEL_NOT_SELECTED 3  select the page or account of the "
        "conversation's channel in the workflow step",
        "              FAILED  ASSET_NOT_LINKED     1  link the dataset to the page or account "
        "in Meta Events Manager, then replay",
        "",
        "1 of 2 below 50 SENT in the last 7 days.",
    ]


def test_an_event_without_sent_events_says_so():
    counts = read(record(0, "ds-1", "Lead", "2026-12-05", skipped={"DUPLICATE": 2}))
    lines = render_table(build_report(counts, Window(LAST, 1), Selection())).splitlines()
    assert "    match keys  no SENT event in the window" in lines


def test_nothing_to_report_is_one_line_under_the_heading():
    counts = read(record(0, "ds-1", "Lead", "2026-12-05", sent=1))
    table = render_table(build_report(counts, Window(LAST), Selection(frozenset({"ds-2"}))))
    assert table.splitlines()[-1] == (
        "No dataset and event to report (no counts, or none that the filters keep)."
    )
