"""The parked table's summary (how many, since when) comes from counts the table's own
triggers keep and an index: exact through parking, parking again, ending and resetting, and
for a state folder written before the counts existed."""

from __future__ import annotations

from consumer.events.parking import ParkedEvent
from consumer.events.results import RawMessage, SourceRef
from consumer.store.parked import ParkedTable, encode_parked, parked_row
from consumer.store.sqlite import StateStore
from tests.factories import NOW_MS


def _row(event_id: str, partition: int, first_parked_s_ago: int = 60, due_in_s: int = 60):
    parked = ParkedEvent(
        event_id,
        "ds-1",
        SourceRef("in", partition, 0),
        RawMessage(None, b"v"),
        attempts=1,
        parkings=1,
        first_parked_at=NOW_MS - first_parked_s_ago * 1000,
        parked_at=NOW_MS,
        due_at=NOW_MS + due_in_s * 1000,
    )
    return parked_row(parked, encode_parked(parked))


def _table(store: StateStore) -> ParkedTable:
    table = ParkedTable(store, "retry", clock_ms=lambda: NOW_MS)
    table.create_table()
    return table


def _counted(store: StateStore) -> dict[int, int]:
    rows = store.db.execute("SELECT partition, COUNT(*) FROM parked GROUP BY partition")
    return {int(p): int(n) for p, n in rows}


def test_the_summary_follows_parking_parking_again_and_ending(tmp_path):
    store = StateStore(tmp_path).open()
    table = _table(store)
    table.apply([_row("a", 0, 300), _row("b", 0, 60), _row("c", 1, 900)], [])
    assert table.summary([0]) == (2, NOW_MS - 300_000)
    assert table.summary([0, 1]) == (3, NOW_MS - 900_000)
    table.apply([_row("a", 0, 300, due_in_s=600)], [])  # parked again: still one event
    assert table.summary([0, 1])[0] == 3
    table.apply([], ["a", "c", "never-parked"])
    assert table.summary([0, 1]) == (1, NOW_MS - 60_000)
    assert table.summary([2]) == (0, None)
    table.apply([_row("b", 2, 60)], [])  # the same event id from another partition
    assert [table.summary([p])[0] for p in (0, 1, 2)] == [0, 0, 1]
    assert _counted(store) == {2: 1}
    assert table.stored_bytes() == len(_row("b", 2, 60).record)
    table.reset("new-topic-id")
    assert table.summary([0, 1, 2]) == (0, None)
    assert table.stored_bytes() == 0


def test_a_state_folder_from_before_the_counts_is_counted_once_at_start(tmp_path):
    store = StateStore(tmp_path).open()
    table = _table(store)
    table.apply([_row("a", 0), _row("b", 0), _row("c", 1)], [])
    store.db.execute("DROP TABLE parked_count")  # as an earlier version left it
    store.db.execute("DROP TRIGGER parked_counted")
    store.db.execute("DROP TRIGGER parked_uncounted")
    store.db.execute("DROP TRIGGER parked_changed")
    store.close()
    store = StateStore(tmp_path).open()
    table = _table(store)
    assert table.summary([0, 1])[0] == 3
    table.apply([_row("d", 1)], ["a"])
    assert table.summary([0])[0] == 1 and table.summary([1])[0] == 2


def test_a_state_folder_that_counted_no_bytes_is_counted_again_at_start(tmp_path):
    store = StateStore(tmp_path).open()
    table = _table(store)
    rows = [_row("a", 0), _row("b", 0), _row("c", 1)]
    table.apply(rows, [])
    for trigger in ("parked_counted", "parked_uncounted", "parked_changed"):
        store.db.execute(f"DROP TRIGGER {trigger}")
    store.db.execute("DROP TABLE parked_count")
    store.db.execute("CREATE TABLE parked_count (partition INTEGER PRIMARY KEY, n INTEGER)")
    store.db.execute("INSERT INTO parked_count VALUES (0, 2), (1, 1)")
    store.close()
    store = StateStore(tmp_path).open()
    table = _table(store)
    assert table.stored_bytes() == sum(len(r.record) for r in rows)
    table.apply([], ["a"])
    assert table.stored_bytes() == sum(len(r.record) for r in rows[1:])
