"""The window of UTC days the signal counts are summed over: its days, its week, and where
each lies among the days counted."""

import datetime as dt

import pytest

from consumer.events.signal_window import Window, count_window
from consumer.events.signals import DayCounts, SignalKey
from tests.signal_records import read, record

LAST = dt.date(2026, 12, 5)


@pytest.mark.parametrize("days", [0, -1, 29])
def test_a_window_longer_than_the_retention_is_refused(days):
    with pytest.raises(ValueError, match="between 1 and 28"):
        Window(LAST, days)


def test_the_window_is_days_ending_with_the_last_day():
    window = Window(LAST, 28)
    assert window.first_day == dt.date(2026, 11, 8)
    assert window.day_names()[0] == "2026-11-08"
    assert window.day_names()[-1] == "2026-12-05"


@pytest.mark.parametrize(
    ("days", "counted", "indices", "week"),
    [
        (1, ("2026-11-29", "2026-12-05"), range(6, 7), range(0, 7)),
        (7, ("2026-11-29", "2026-12-05"), range(0, 7), range(0, 7)),
        (15, ("2026-11-21", "2026-12-05"), range(0, 15), range(8, 15)),
    ],
)
def test_the_days_counted_are_the_windows_and_its_weeks(days, counted, indices, week):
    window = Window(LAST, days)
    assert (window.counted_days()[0], window.counted_days()[-1]) == counted
    assert (window.indices(), window.week_indices()) == (indices, week)
    assert window.day_names() == window.counted_days()[-days:]


def test_each_day_is_summed_over_the_partitions_and_the_days_in_a_range_are_summed_again():
    counts = count_window(
        read(
            record(0, "ds-1", "Lead", "2026-12-04", sent=2, match_keys={"em": 2}),
            record(1, "ds-1", "Lead", "2026-12-04", sent=3, failed={"META_REJECTED": 1}),
            record(1, "ds-1", "Lead", "2026-12-05", sent=4, match_keys={"em": 1, "ph": 4}),
            record(2, "ds-2", "Lead", "2026-12-06", sent=9),  # after the last day
        ).latest,
        Window(LAST, 2),
    )
    [lead] = counts.events
    assert (lead.dataset_id, lead.event_name) == ("ds-1", "Lead")
    assert lead.day(5) == DayCounts("", 5, {}, {"META_REJECTED": 1}, {"em": 2})
    assert lead.day(0) == DayCounts()
    assert lead.total(range(5, 7)) == DayCounts("", 9, {}, {"META_REJECTED": 1}, {"em": 3, "ph": 4})
    assert lead.workspace_id == "ws-1"


@pytest.mark.parametrize(
    "key", [b"0|ds-1|Purchase|2026-13-01", b"0|ds-1|Purchase|20261201", b"0|ds-1|Purchase"]
)
def test_a_signals_key_without_a_proper_day_is_no_key(key):
    """Checked where every reader decodes keys, the service's restore as the command's read."""
    with pytest.raises(ValueError, match=r"month|YYYY-MM-DD|values to unpack"):
        SignalKey.decode(key)
