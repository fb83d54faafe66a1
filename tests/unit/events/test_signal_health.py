"""The signal health the gauges show, from counts built in memory: complete weeks, which dataset
events count, which fell below the minimum, which are shown within the limit, and the match-key
coverage of all datasets together."""

import datetime as dt

import pytest

from consumer.events.signal_health import WeeklySent, signal_health
from consumer.events.signals import KEY_ORDER
from tests.signal_records import read, record

TODAY = dt.date(2026, 12, 8)
LAST_WEEK = [f"2026-12-0{d}" for d in range(1, 8)]  # the 7 complete days before today
WEEK_BEFORE = [f"2026-11-{d}" for d in range(24, 31)]


def _health(*records, series=20):
    return signal_health(read(*records).latest, TODAY, series)


@pytest.mark.parametrize(
    ("days", "counted"),
    [
        (["2026-12-07"], True),  # yesterday: the last complete week
        (["2026-11-24"], True),  # 14 days ago: the week before
        (["2026-12-08"], True),  # today: not in a week, but the event is alive
        (["2026-11-23"], False),  # 15 days ago: gone quiet
        (["2026-12-09"], False),  # tomorrow (a producer's clock ahead): not yet
    ],
)
def test_an_event_counts_with_a_result_in_the_last_14_complete_days_or_today(days, counted):
    health = _health(*(record(0, "ds-1", "Lead", day, skipped={"DUPLICATE": 1}) for day in days))
    assert health.events == int(counted)


def test_today_is_not_part_of_the_week():
    health = _health(
        record(0, "ds-1", "Lead", "2026-12-08", sent=500),
        record(0, "ds-1", "Lead", "2026-12-07", sent=20),
    )
    assert health.shown == (WeeklySent("ds-1", "Lead", 20, False),)
    assert health.below_minimum == 1


@pytest.mark.parametrize(
    ("before", "last", "below", "fell"),
    [
        (50, 49, True, True),
        (80, 0, True, True),
        (49, 10, True, False),  # below both weeks: nothing fell
        (60, 50, False, False),  # the minimum reached is not below it
        (0, 49, True, False),  # new, and below
    ],
)
def test_falling_below_is_reaching_the_minimum_the_week_before_and_not_the_last(
    before, last, below, fell
):
    health = _health(
        record(0, "ds-1", "Lead", WEEK_BEFORE[3], sent=before, failed={"META_REJECTED": 1}),
        record(1, "ds-1", "Lead", LAST_WEEK[2], sent=last // 2),
        record(2, "ds-1", "Lead", LAST_WEEK[6], sent=last - last // 2),
    )
    assert (health.events, health.below_minimum, health.fell_below) == (1, int(below), int(fell))
    assert health.shown == (WeeklySent("ds-1", "Lead", last, fell),)


def test_those_that_fell_below_are_shown_first_then_the_lowest_within_the_limit():
    records = [
        # fell below: 90 then 40; 70 then 45
        record(0, "ds-fell-a", "Lead", WEEK_BEFORE[0], sent=90),
        record(0, "ds-fell-a", "Lead", LAST_WEEK[0], sent=40),
        record(0, "ds-fell-b", "Purchase", WEEK_BEFORE[0], sent=70),
        record(0, "ds-fell-b", "Purchase", LAST_WEEK[0], sent=45),
        # the others, lowest first: 0 (only skipped), 3, 3, 60, 200
        record(1, "ds-quiet", "Lead", LAST_WEEK[1], skipped={"NOT_AD_ATTRIBUTED": 4}),
        record(1, "ds-b", "Lead", LAST_WEEK[1], sent=3),
        record(1, "ds-a", "Lead", LAST_WEEK[1], sent=3),
        record(1, "ds-ok", "Lead", LAST_WEEK[1], sent=60),
        record(1, "ds-big", "Lead", LAST_WEEK[1], sent=200),
    ]
    health = _health(*records, series=5)
    assert health.shown == (
        WeeklySent("ds-fell-a", "Lead", 40, True),
        WeeklySent("ds-fell-b", "Purchase", 45, True),
        WeeklySent("ds-quiet", "Lead", 0, False),
        WeeklySent("ds-a", "Lead", 3, False),
        WeeklySent("ds-b", "Lead", 3, False),
    )
    assert (health.events, health.below_minimum, health.fell_below) == (7, 5, 2)
    assert _health(*records, series=1).shown == (WeeklySent("ds-fell-a", "Lead", 40, True),)
    assert _health(*records, series=0).shown == ()
    assert len(_health(*records, series=1000).shown) == 7


def test_the_count_of_those_that_fell_below_is_not_bounded_by_the_limit():
    records = []
    for n in range(30):
        records.append(record(0, f"ds-{n:02}", "Lead", WEEK_BEFORE[0], sent=50 + n))
        records.append(record(0, f"ds-{n:02}", "Lead", LAST_WEEK[0], sent=n))
    health = _health(*records, series=20)
    assert health.fell_below == 30
    assert [week.dataset_id for week in health.shown] == [f"ds-{n:02}" for n in range(20)]


def test_coverage_is_the_share_of_the_last_weeks_sent_events_of_every_dataset_per_known_key():
    health = _health(
        record(0, "ds-1", "Lead", LAST_WEEK[0], sent=30, match_keys={"em": 30, "ph": 10}),
        record(1, "ds-2", "Purchase", LAST_WEEK[6], sent=10, match_keys={"ph": 10, "zz": 10}),
        # not in the last week: neither counted nor dividing
        record(0, "ds-1", "Lead", WEEK_BEFORE[6], sent=100, match_keys={"fn": 100}),
        record(0, "ds-1", "Lead", "2026-12-08", sent=100, match_keys={"ln": 100}),
    )
    assert health.coverage == {
        **dict.fromkeys(KEY_ORDER, 0.0),
        "em": 0.75,
        "ph": 0.5,
    }


def test_no_coverage_when_nothing_was_sent_in_the_last_week():
    health = _health(record(0, "ds-1", "Lead", LAST_WEEK[0], skipped={"DUPLICATE": 3}))
    assert health.coverage == {}
    assert (health.events, health.below_minimum) == (1, 1)
