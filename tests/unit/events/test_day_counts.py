"""A day's counts: each `user_data` key of every SENT event is counted once, whenever and
however often the counts are read, merged or written in between."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.events.signals import KEY_ORDER, DayCounts, SignalKey, Tally

KEY = SignalKey(0, "ds-1", "Purchase", "2026-12-06")

results = st.lists(
    st.tuples(
        st.sampled_from(["SENT", "SKIPPED", "FAILED"]),
        st.lists(st.sampled_from(KEY_ORDER), unique=True).map(tuple),
        st.booleans(),  # the counts are read after this result
    ),
    max_size=40,
)


def _expected(counted: list[tuple[str, tuple[str, ...], bool]]) -> dict[str, int]:
    expected: dict[str, int] = {}
    for status, keys, _ in counted:
        if status == "SENT":
            for key in keys:
                expected[key] = expected.get(key, 0) + 1
    return expected


def _count(counted: list[tuple[str, tuple[str, ...], bool]]) -> DayCounts:
    counts = DayCounts()
    for n, (status, keys, read) in enumerate(counted):
        counts.add(Tally(KEY, "ws-1", status, "" if status == "SENT" else "R", keys))
        if read:
            assert counts.match_keys == _expected(counted[: n + 1])
    return counts


@settings(max_examples=200, deadline=None)
@given(results, results)
def test_every_key_of_every_sent_event_is_counted_once(mine, theirs):
    counts, other = _count(mine), _count(theirs)
    assert counts.match_keys == _expected(mine)
    assert counts.sent == sum(status == "SENT" for status, _, _ in mine)
    assert DayCounts.decode(counts.encode(KEY)) == counts
    counts.merge(other)
    assert counts.match_keys == _expected(mine + theirs)
    assert counts == DayCounts.decode(counts.encode(KEY))


def test_counts_of_the_same_results_are_equal_however_they_were_read():
    read, unread = DayCounts(), DayCounts()
    for keys in (("em", "ph"), ("em",), ("em", "ph")):
        tally = Tally(KEY, "ws-1", "SENT", "", keys)
        read.add(tally)
        assert read.match_keys  # counted key by key now
        unread.add(tally)
    assert read == unread == DayCounts("ws-1", 3, {}, {}, {"em": 3, "ph": 2})
    assert repr(unread) == (
        "DayCounts(workspace_id='ws-1', sent=3, skipped={}, failed={}, "
        "match_keys={'em': 3, 'ph': 2})"
    )
