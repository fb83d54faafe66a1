"""The report from counts built in memory: sums over partitions, the window, the week against
Meta's minimum, match-key coverage, reasons not sent, selection and the JSON form."""

import datetime as dt

import pytest

from consumer.events.signal_window import Window
from consumer.events.signals import SignalKey
from consumer.tools.signals.advice import UNKNOWN_REASON_ADVICE, advice_for
from consumer.tools.signals.report import (
    DayTotals,
    KeyCoverage,
    NotSentReason,
    Selection,
    build_report,
)
from tests.signal_records import read, record

LAST = dt.date(2026, 12, 5)
ALL = Selection()


def _only(report):
    [signal] = report.signals
    return signal


def test_counts_are_summed_over_partitions_per_day_with_zeros_for_quiet_days():
    counts = read(
        record(0, "ds-1", "Purchase", "2026-12-03", sent=2, skipped={"DUPLICATE": 1}),
        record(1, "ds-1", "Purchase", "2026-12-03", sent=5, failed={"META_REJECTED": 2}),
        record(2, "ds-1", "Purchase", "2026-12-05", sent=1),
    )
    signal = _only(build_report(counts, Window(LAST, 3), ALL))
    assert signal.per_day == (
        DayTotals("2026-12-03", 7, 1, 2),
        DayTotals("2026-12-04", 0, 0, 0),
        DayTotals("2026-12-05", 1, 0, 0),
    )
    assert (signal.sent, signal.skipped, signal.failed) == (8, 1, 2)


@pytest.mark.parametrize("days", [1, 3, 7, 14, 28])
def test_the_week_is_the_last_seven_days_whatever_the_window(days):
    counts = read(
        record(0, "ds-1", "Lead", "2026-11-28", sent=100),  # 8 days back: not this week
        record(0, "ds-1", "Lead", "2026-11-29", sent=10),  # 7 days back, the last day included
        record(0, "ds-1", "Lead", "2026-12-05", sent=1),
    )
    signal = _only(build_report(counts, Window(LAST, days), ALL))
    assert signal.week_sent == 11
    assert len(signal.per_day) == days
    assert signal.per_day[-1] == DayTotals("2026-12-05", 1, 0, 0)


@pytest.mark.parametrize(
    ("week_sent", "below", "to_minimum"),
    [(0, True, 50), (49, True, 1), (50, False, 0), (51, False, 0)],
)
def test_the_week_against_metas_minimum_of_50(week_sent, below, to_minimum):
    counts = read(record(0, "ds-1", "Lead", "2026-12-04", sent=week_sent))
    signal = _only(build_report(counts, Window(LAST), ALL))
    assert (signal.below_minimum, signal.to_minimum) == (below, to_minimum)


def test_days_after_the_last_day_count_nowhere():
    counts = read(
        record(0, "ds-1", "Lead", "2026-12-05", sent=2),
        record(0, "ds-1", "Lead", "2026-12-06", sent=40),
        record(0, "ds-2", "Lead", "2026-12-06", sent=40),
    )
    report = build_report(counts, Window(LAST), ALL)
    assert [(s.dataset_id, s.week_sent, s.sent) for s in report.signals] == [("ds-1", 2, 2)]


def test_an_event_that_stopped_is_listed_with_zeros():
    counts = read(record(0, "ds-1", "Lead", "2026-11-10", sent=80, match_keys={"em": 80}))
    signal = _only(build_report(counts, Window(LAST), ALL))
    assert (signal.week_sent, signal.sent, signal.below_minimum) == (0, 0, True)
    assert signal.match_keys == ()
    assert all(day.sent == 0 for day in signal.per_day)


def test_match_keys_in_a_stable_order_with_their_share_of_sent():
    keys = {"zz_new": 1, "ctwa_clid": 2, "ph": 3, "country": 4, "em": 8, "page_id": 8}
    counts = read(
        record(0, "ds-1", "Lead", "2026-12-04", sent=6, match_keys=keys),
        record(1, "ds-1", "Lead", "2026-12-05", sent=2, match_keys={"em": 0, "fn": 1}),
        record(1, "ds-1", "Lead", "2026-11-01", sent=9, match_keys={"ln": 9}),  # out of window
    )
    signal = _only(build_report(counts, Window(LAST), ALL))
    assert signal.match_keys == (
        KeyCoverage("em", 8, 1.0),
        KeyCoverage("ph", 3, 0.375),
        KeyCoverage("fn", 1, 0.125),
        KeyCoverage("country", 4, 0.5),
        KeyCoverage("ctwa_clid", 2, 0.25),
        KeyCoverage("page_id", 8, 1.0),
        KeyCoverage("zz_new", 1, 0.125),
    )


def test_reasons_not_sent_most_events_first_each_with_what_to_do():
    counts = read(
        record(
            0,
            "ds-1",
            "Lead",
            "2026-12-04",
            skipped={"CHANNEL_NOT_SELECTED": 3, "RESTRICTED_REGION": 7},
            failed={"ASSET_NOT_LINKED": 3},
        ),
        record(1, "ds-1", "Lead", "2026-12-05", skipped={"CHANNEL_NOT_SELECTED": 5}),
        record(1, "ds-1", "Lead", "2026-12-03", failed={"SOMETHING_NEW": 1}),
    )
    signal = _only(build_report(counts, Window(LAST), ALL))
    assert signal.not_sent == (
        NotSentReason("SKIPPED", "CHANNEL_NOT_SELECTED", 8, advice_for("CHANNEL_NOT_SELECTED")),
        NotSentReason("SKIPPED", "RESTRICTED_REGION", 7, advice_for("RESTRICTED_REGION")),
        NotSentReason("FAILED", "ASSET_NOT_LINKED", 3, advice_for("ASSET_NOT_LINKED")),
        NotSentReason("FAILED", "SOMETHING_NEW", 1, UNKNOWN_REASON_ADVICE),
    )


def test_the_workspace_is_the_one_of_the_latest_counts():
    counts = read(
        record(0, "ds-1", "Lead", "2026-12-05", workspace_id="ws-new"),
        record(1, "ds-1", "Lead", "2026-12-01", workspace_id="ws-old"),
        record(2, "ds-1", "Lead", "2026-12-05", workspace_id=""),
    )
    assert _only(build_report(counts, Window(LAST), ALL)).workspace_id == "ws-new"


COUNTS = read(
    record(0, "ds-1", "Lead", "2026-12-05", workspace_id="ws-a", sent=60),
    record(0, "ds-1", "Purchase", "2026-12-05", workspace_id="ws-a", sent=10),
    record(0, "ds-2", "Lead", "2026-12-05", workspace_id="ws-b", sent=5),
    record(0, "ds-3", "Lead", "2026-12-05", workspace_id="ws-c", sent=70),
)


@pytest.mark.parametrize(
    ("selection", "kept"),
    [
        (Selection(), ["ds-1 Lead", "ds-1 Purchase", "ds-2 Lead", "ds-3 Lead"]),
        (Selection(datasets=frozenset({"ds-1"})), ["ds-1 Lead", "ds-1 Purchase"]),
        (Selection(datasets=frozenset({"ds-2", "ds-3"})), ["ds-2 Lead", "ds-3 Lead"]),
        (Selection(workspaces=frozenset({"ws-b", "ws-c"})), ["ds-2 Lead", "ds-3 Lead"]),
        (Selection(below_only=True), ["ds-1 Purchase", "ds-2 Lead"]),
        (Selection(frozenset({"ds-1"}), frozenset({"ws-a"}), below_only=True), ["ds-1 Purchase"]),
        (Selection(datasets=frozenset({"ds-9"})), []),
    ],
)
def test_selection_by_dataset_workspace_and_below_the_minimum(selection, kept):
    report = build_report(COUNTS, Window(LAST), selection)
    assert [f"{s.dataset_id} {s.event_name}" for s in report.signals] == kept


def test_the_json_form_has_the_documented_fields():
    key_value = record(
        1,
        "ds-1",
        "Lead",
        "2026-12-05",
        sent=4,
        skipped={"NO_CUSTOMER_INFORMATION": 1},
        match_keys={"ph": 1, "em": 4},
    )
    counts = read(key_value, (b"bad", b"record"))
    report = build_report(counts, Window(LAST, 2), ALL)
    assert report.as_json() == {
        "topic": "signals",
        "first_day": "2026-12-04",
        "last_day": "2026-12-05",
        "days": 2,
        "week_first_day": "2026-11-29",
        "weekly_minimum": 50,
        "records_read": 2,
        "bytes_read": len(key_value[0]) + len(key_value[1]) + len(b"badrecord"),
        "undecodable_records": 1,
        "signals": [
            {
                "dataset_id": "ds-1",
                "workspace_id": "ws-1",
                "event_name": "Lead",
                "week_sent": 4,
                "below_minimum": True,
                "to_minimum": 46,
                "sent": 4,
                "skipped": 1,
                "failed": 0,
                "per_day": [
                    {"day": "2026-12-04", "sent": 0, "skipped": 0, "failed": 0},
                    {"day": "2026-12-05", "sent": 4, "skipped": 1, "failed": 0},
                ],
                "match_keys": [
                    {"key": "em", "events": 4, "share": 1.0},
                    {"key": "ph", "events": 1, "share": 0.25},
                ],
                "not_sent": [
                    {
                        "status": "SKIPPED",
                        "reason": "NO_CUSTOMER_INFORMATION",
                        "events": 1,
                        "advice": "map the contact's email or phone in the workflow step",
                    }
                ],
            }
        ],
    }


def test_a_value_that_is_not_a_signals_record_is_counted_and_left_out():
    bad_key = SignalKey(1, "ds-1", "Lead", "2026-12-05").encode()
    records = read(
        record(0, "ds-1", "Lead", "2026-12-05", sent=3),
        record(1, "ds-1", "Lead", "2026-12-05", sent=40),
        (bad_key, b'{"sent": 1}'),  # the latest of its key: the 40 are gone with it
        (SignalKey(0, "ds-2", "Lead", "2026-12-04").encode(), b"not json"),
        (SignalKey(0, "ds-3", "Lead", "2026-12-04").encode(), b"[1, 2]"),
    )
    report = build_report(records, Window(LAST), ALL)
    assert [(s.dataset_id, s.week_sent) for s in report.signals] == [("ds-1", 3)]
    assert report.undecodable_records == 3


def test_an_event_with_only_older_counts_takes_its_workspace_from_the_latest_that_reads():
    records = read(
        record(0, "ds-1", "Lead", "2026-11-01", workspace_id="ws-oldest"),
        record(0, "ds-1", "Lead", "2026-11-02", workspace_id="ws-old"),
        (SignalKey(0, "ds-1", "Lead", "2026-11-03").encode(), b"{"),
        (SignalKey(0, "ds-2", "Lead", "2026-11-03").encode(), b"{"),  # nothing that reads
    )
    report = build_report(records, Window(LAST), ALL)
    assert [(s.dataset_id, s.workspace_id) for s in report.signals] == [("ds-1", "ws-old")]
    assert report.undecodable_records == 2


def test_older_values_are_not_read_when_newer_counts_name_the_workspace():
    records = read(
        record(0, "ds-1", "Lead", "2026-12-05", workspace_id="ws-1", sent=1),
        (SignalKey(0, "ds-1", "Lead", "2026-11-03").encode(), b"{"),
    )
    report = build_report(records, Window(LAST), ALL)
    assert _only(report).workspace_id == "ws-1"
    assert report.undecodable_records == 0
