"""The signals topic as compaction leaves it: the latest value of each key, tombstones delete,
records whose key is not a signals key are counted and left out, and so are days before the
ones asked for."""

import datetime as dt

from consumer.events.signals import DayCounts, SignalKey
from consumer.store.signals_topic import LatestRecords
from tests.signal_records import read, record

DAY = "2026-12-05"
KEY = SignalKey(0, "ds-1", "Purchase", DAY)


def _decoded(records):
    return {key: DayCounts.decode(value) for key, value in records.latest.items()}


def test_the_latest_record_of_a_key_wins():
    records = read(
        record(0, "ds-1", "Purchase", DAY, sent=3, match_keys={"em": 3}),
        record(1, "ds-1", "Purchase", DAY, sent=5),
        record(0, "ds-1", "Purchase", DAY, sent=4, match_keys={"em": 4, "ph": 1}),
    )
    assert _decoded(records) == {
        KEY: DayCounts("ws-1", 4, {}, {}, {"em": 4, "ph": 1}),
        SignalKey(1, "ds-1", "Purchase", DAY): DayCounts("ws-1", 5),
    }
    assert (records.records, records.undecodable) == (3, 0)


def test_a_tombstone_deletes_the_key_and_a_later_record_brings_it_back():
    gone = read(record(0, "ds-1", "Purchase", DAY, sent=3), (KEY.encode(), None))
    assert gone.latest == {}
    assert gone.records == 2
    back = read(
        record(0, "ds-1", "Purchase", DAY, sent=3),
        (KEY.encode(), None),
        record(0, "ds-1", "Purchase", DAY, sent=1),
    )
    assert _decoded(back) == {KEY: DayCounts("ws-1", 1)}


def test_records_whose_key_is_not_a_signals_key_are_counted_and_left_out():
    good = record(0, "ds-1", "Purchase", DAY, sent=2)
    records = read(
        good,
        (b"0|ds-1|Purchase", good[1]),  # three parts
        (b"x|ds-1|Purchase|2026-12-05", good[1]),  # partition not a number
        (b"0|ds-1|Purchase|20261205", good[1]),  # day not YYYY-MM-DD
        (b"0|ds-1|Purchase|2026-13-01", good[1]),  # no such day
        (b"\xff\xfe|ds-1|Purchase|2026-12-05", good[1]),  # not UTF-8
        (None, good[1]),  # no key
    )
    assert _decoded(records) == {KEY: DayCounts("ws-1", 2)}
    assert (records.records, records.undecodable) == (7, 6)


def test_records_and_bytes_read_count_every_record():
    key, value = record(0, "ds-1", "Purchase", DAY, sent=2)
    records = read((key, value), (key, None), (key, value))
    assert records.records == 3
    assert records.bytes == 3 * len(key) + 2 * len(value)
    assert records.topic == "signals"


def test_keys_of_days_before_since_are_read_and_left_out():
    latest = LatestRecords(since=dt.date(2026, 12, 5))
    for key, value in (
        record(0, "ds-1", "Purchase", "2026-12-04", sent=2),
        record(0, "ds-1", "Purchase", DAY, sent=3),
        (SignalKey(0, "ds-1", "Purchase", "2026-12-04").encode(), None),
        (None, b"{}"),
    ):
        latest.add(key, value)
    records = latest.records("signals")
    assert {key: DayCounts.decode(value) for key, value in records.latest.items()} == {
        KEY: DayCounts("ws-1", 3)
    }
    assert (records.records, records.undecodable) == (4, 1)


def test_the_service_decodes_only_the_latest_value_of_a_key_it_reads_back():
    """A key's superseded records (one a commit until the topic is compacted) are not decoded:
    a broken one behind a good one costs nothing; a broken latest one counts from zero."""
    from consumer.store.signal_counts import SignalCounts

    counts = SignalCounts("signals", "in")
    good, broken = (
        SignalKey(0, "ds-1", "Purchase", "2026-12-04"),
        SignalKey(0, "ds-2", "Purchase", "2026-12-04"),
    )
    counts.restore(good.encode(), b"not json", 0, 0)
    counts.restore(good.encode(), DayCounts(sent=3).encode(good), 0, 1)
    counts.restore(broken.encode(), b"not json", 0, 2)
    assert counts.undecodable == 0
    assert getattr(counts.get(good), "sent", None) == 3
    assert counts.get(broken) is None
    assert counts.undecodable == 1
