"""A full state store is an operating condition: writes that find no room are rolled back and
kept by their writers until there is room again. The limit is SQLite's own (`max_page_count`
through `CAPI_STATE_MAX_BYTES`), the error the one a full volume gives (SQLITE_FULL)."""

from __future__ import annotations

import os

import pytest

from consumer.errors import StateFullError
from consumer.events.results import DedupEntry, DedupStatus
from consumer.kafka.publisher import OutRecord
from consumer.store.dedup import Dedup
from consumer.store.outbox import Outbox
from consumer.store.parked import ParkedTable
from consumer.store.sqlite import StateStore
from tests.factories import NOW_MS

LIMIT = 256 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _filler(store: StateStore) -> None:
    """Fill the store to its limit with a table of its own; `_room` frees it."""
    store.db.execute("CREATE TABLE IF NOT EXISTS filler (b BLOB)")
    for size in (4000, 400, 40, 1):  # down to the last bytes of the last pages
        with pytest.raises(StateFullError):
            _insert_until_full(store, size)


def _insert_until_full(store: StateStore, size: int) -> None:
    while True:
        with store.transaction():
            store.db.execute("INSERT INTO filler VALUES (?)", (os.urandom(size),))


def _room(store: StateStore) -> None:
    with store.transaction(adds=False):
        store.db.execute("DELETE FROM filler")


def test_a_write_past_the_limit_is_rolled_back_and_the_store_says_it_is_full(tmp_path):
    clock = Clock()
    store = StateStore(tmp_path, max_bytes=LIMIT, clock=clock).open()
    assert not store.full
    _filler(store)
    assert store.full and store.full_since == 100.0
    assert not store.db.in_transaction
    assert not store.may_write()  # writers try again once a second
    clock.now += 1
    assert store.may_write()
    _room(store)
    assert store.full  # a delete succeeds on a full volume too: it says nothing of room
    with store.transaction():
        store.db.execute("INSERT INTO filler VALUES (x'00')")
    assert not store.full
    assert 0 < store.used_bytes() <= LIMIT


def test_dedup_entries_committed_to_kafka_wait_in_memory_until_there_is_room(tmp_path):
    clock = Clock()
    store = StateStore(tmp_path, max_bytes=LIMIT, clock=clock).open()
    dedup = Dedup(store, "results", clock_ms=lambda: NOW_MS)
    dedup.create_table()
    _filler(store)
    for i in range(2_000):  # more than the table's one page holds
        dedup.record(DedupEntry(f"e{i}", DedupStatus.SENT), 0)
    dedup.delivered(0, 1_999)
    clock.now += 1
    dedup.committed()  # no room: nothing lost, still known
    assert dedup.seen("e7") == "SENT"
    assert dedup.stored_offsets() == {}
    _room(store)
    clock.now += 1
    dedup.committed()
    assert dedup.stored_offsets() == {0: 2_000}
    assert store.db.execute("SELECT COUNT(*) FROM dedup_ids").fetchone()[0] == 2_000
    assert not store.full


def test_parking_changes_wait_and_their_events_stay_taken_until_there_is_room(tmp_path):
    from consumer.service.retry_topic import ParkingChange, RetryTopic
    from tests.unit.store.test_parked import _row

    clock = Clock()
    store = StateStore(tmp_path, max_bytes=LIMIT, clock=clock).open()
    table = ParkedTable(store, "retry", clock_ms=lambda: NOW_MS)
    table.create_table()
    retry = RetryTopic(table, "in")
    table.apply([_row("a", 0, due_in_s=-1)], [])
    [taken] = retry.take_due({0}, limit=10)
    _filler(store)
    clock.now += 1
    # in one transaction, its parking ended and other events were parked
    parked = [_row(f"b{i}", 0) for i in range(200)]
    retry.committed(
        [ParkingChange("a", 0, None)] + [ParkingChange(r.event_id, 0, r) for r in parked]
    )
    assert table.parked_among(["a", "b0"]) == {"a"}  # the table could not take them yet
    assert retry.take_due({0}, limit=10) == []  # and it is not tried again from that row
    _room(store)
    clock.now += 1
    retry.committed([])
    assert table.parked_among(["a", "b0"]) == {"b0"}
    assert retry.taken() == 0
    assert taken.event_id == "a"


def test_the_outbox_keeps_its_entries_queued_and_drops_those_committed_meanwhile(tmp_path):
    clock = Clock()
    store = StateStore(tmp_path, max_bytes=LIMIT, clock=clock).open()
    outbox = Outbox(store)
    outbox.open()
    _filler(store)
    # a result too big for the free bytes of a page: the write needs pages the store lacks
    result = [OutRecord("results", None, os.urandom(5000), ("in", 0))]
    outbox.add("in", 0, 5, result, DedupEntry("e5", DedupStatus.SENT))
    outbox.add("in", 0, 6, result, DedupEntry("e6", DedupStatus.SENT))
    clock.now += 1
    outbox.flush()  # no room: still queued
    assert store.full
    outbox.committed({("in", 0): [5]})  # offset 5 committed: its entry is not needed
    _room(store)
    clock.now += 1
    outbox.flush()
    outbox.load("in", 0, 0)
    assert (outbox.has("in", 0, 5), outbox.has("in", 0, 6)) == (False, True)
