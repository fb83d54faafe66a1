import pytest

from consumer.kafka.offsets import OffsetTracker


def test_offset_advances_only_past_a_contiguous_done_prefix():
    tracker = OffsetTracker()
    for offset in (10, 11, 12, 13):
        tracker.track("t", 0, offset)
    tracker.done("t", 0, 11)
    tracker.done("t", 0, 13)
    assert tracker.release() == {}
    tracker.done("t", 0, 10)
    assert tracker.release() == {("t", 0): [10, 11]}  # the next offset to consume is 12
    assert tracker.release() == {}
    tracker.done("t", 0, 12)
    assert tracker.release() == {("t", 0): [12, 13]}
    assert len(tracker) == 0


def test_release_gives_the_offsets_behind_the_new_position_in_order():
    tracker = OffsetTracker()
    for offset in (3, 4, 7):
        tracker.track("t", 0, offset)
    for offset in (7, 3, 4):
        tracker.done("t", 0, offset)
    assert tracker.release() == {("t", 0): [3, 4, 7]}
    assert tracker.release() == {}


def test_partitions_are_independent():
    tracker = OffsetTracker()
    tracker.track("t", 0, 5)
    tracker.track("t", 1, 7)
    tracker.done("t", 1, 7)
    assert tracker.release() == {("t", 1): [7]}
    assert tracker.pending("t", 0) == 1


def test_forgotten_partition_commits_nothing():
    tracker = OffsetTracker()
    tracker.track("t", 0, 5)
    tracker.forget("t", 0)
    tracker.done("t", 0, 5)
    assert tracker.release() == {}


def test_offsets_going_backwards_are_a_bug():
    tracker = OffsetTracker()
    tracker.track("t", 0, 5)
    with pytest.raises(ValueError, match="backwards"):
        tracker.track("t", 0, 5)
