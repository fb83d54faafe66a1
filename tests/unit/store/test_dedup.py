"""The dedup table: lookups, its compact rows, the window kept while running, and what a lost
transaction leaves behind (restore and reset are covered end to end)."""

import random
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.events.results import DedupEntry, DedupStatus
from consumer.store.dedup import Dedup, id_key
from consumer.store.sqlite import StateStore

NOW_MS = 1_800_000_000_000
DAY_MS = 86_400_000


class Clock:
    def __init__(self) -> None:
        self.ms = NOW_MS

    def __call__(self) -> int:
        return self.ms


def _dedup(tmp_path, clock=lambda: NOW_MS):
    store = StateStore(tmp_path).open()
    dedup = Dedup(store, "results", clock_ms=clock)
    dedup.create_table()
    dedup.store(
        [
            ("sent", DedupStatus.SENT, NOW_MS - DAY_MS),
            ("old", DedupStatus.SENT, NOW_MS - 8 * DAY_MS),
        ]
        + [(f"e{i}", DedupStatus.FAILED, NOW_MS) for i in range(1200)],
        {},
    )
    return dedup


def test_a_batch_looked_up_at_once_answers_like_one_by_one(tmp_path):
    dedup = _dedup(tmp_path)
    ids = ["sent", "old", "new", *(f"e{i}" for i in range(0, 1500, 3))]
    one_by_one = {e: dedup.seen(e) for e in ids}
    assert one_by_one["sent"] == "SENT" and one_by_one["old"] is None  # outside the window
    assert one_by_one["new"] is None and one_by_one["e3"] == "FAILED"
    dedup.look_up(ids)  # more than one query's worth of ids
    dedup._store.db.execute("DROP TABLE dedup_ids")  # every answer must now come from memory
    assert {e: dedup.seen(e) for e in ids} == one_by_one


def test_what_the_open_transaction_knows_wins_over_the_lookup(tmp_path):
    dedup = _dedup(tmp_path)
    dedup.look_up(["new", "sent"])
    dedup.begin("new")
    assert dedup.seen("new") == "IN_PROGRESS"
    dedup.record(DedupEntry("new", DedupStatus.SENT), 0)
    assert dedup.seen("new") == "SENT"


def test_a_commit_forgets_the_lookup(tmp_path):
    dedup = _dedup(tmp_path)
    dedup.look_up(["x"])
    dedup.record(DedupEntry("x", DedupStatus.SKIPPED), 0)
    dedup.committed()
    assert dedup.seen("x") == "SKIPPED"  # from the table the commit wrote, not the stale lookup


def test_a_uuid_is_kept_as_16_bytes_and_other_ids_as_their_text(tmp_path):
    dedup = _dedup(tmp_path)
    canonical = "0b8f3c52-6a4e-4d7e-9a51-3c2f1e0d9b7a"
    dedup.store(
        [(canonical, DedupStatus.SENT, NOW_MS), ("order-17", DedupStatus.SKIPPED, NOW_MS)], {}
    )
    rows = dedup._store.db.execute(
        "SELECT typeof(id), length(id) FROM dedup_ids WHERE id IN (?, ?)",
        (uuid.UUID(canonical).bytes, "order-17"),
    ).fetchall()
    assert sorted(rows) == [("blob", 16), ("text", 8)]
    assert dedup.seen(canonical) == "SENT"
    # the same UUID in capitals is another id: Meta would take it as another event
    assert dedup.seen(canonical.upper()) is None
    dedup.look_up([canonical, canonical.upper(), "order-17"])
    assert [dedup.seen(e) for e in (canonical, canonical.upper(), "order-17")] == [
        "SENT",
        None,
        "SKIPPED",
    ]


def test_an_id_takes_at_most_half_the_bytes_it_took_as_text(tmp_path):
    """The earlier layout (text id, status text, time in ms, partition) took ~64 bytes an id
    on disk for random UUIDs; the target is at most half of the ~65 measured in production."""
    store = StateStore(tmp_path).open()
    dedup = Dedup(store, "results", clock_ms=lambda: NOW_MS)
    dedup.create_table()
    rng = random.Random(7)
    ids = 100_000
    for start in range(0, ids, 2_000):
        rows = []
        for _ in range(2_000):
            event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            rows.append(
                (
                    event_id,
                    rng.choice((DedupStatus.SENT, DedupStatus.SKIPPED, DedupStatus.FAILED)),
                    NOW_MS,
                )
            )
        dedup.store(rows, {0: start})
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    free = store.db.execute("PRAGMA freelist_count").fetchone()[0]
    page_size = store.db.execute("PRAGMA page_size").fetchone()[0]
    per_id = (pages - free) * page_size / ids
    print(f"dedup table: {per_id:.1f} bytes an id over {ids:,} random UUIDs")
    assert per_id <= 32.5


def test_the_window_is_kept_while_running_a_slice_at_a_time(tmp_path):
    clock = Clock()
    dedup = _dedup(tmp_path, clock)  # 1,201 ids in the window, 1 already past it
    dedup.store([(f"late{i}", DedupStatus.SENT, NOW_MS + DAY_MS) for i in range(300)], {})
    purged = [dedup.purge_step(limit=500) for _ in range(4)]  # one sweep: 1,502 ids
    assert sum(purged) == 1  # "old"
    assert dedup.ids == 1_501
    clock.ms = NOW_MS + 7 * DAY_MS + 1_000  # "sent" and the e-ids leave the window, "late" stay
    swept = 0
    while dedup.ids != 300:
        swept += 1
        dedup.purge_step(limit=500)
        assert swept < 10
    remaining = dedup._store.db.execute("SELECT COUNT(*) FROM dedup_ids").fetchone()[0]
    assert remaining == 300
    assert dedup.seen("late0") == "SENT" and dedup.seen("e1") is None


def test_a_lost_transaction_leaves_no_position_behind(tmp_path):
    dedup = _dedup(tmp_path)
    dedup.record(DedupEntry("a", DedupStatus.SENT), 0)
    dedup.record(DedupEntry("b", DedupStatus.SENT), 1)
    dedup.delivered(0, 41)
    dedup.delivered(1, 17)
    dedup.delivered_ahead(1, 12)
    dedup.drop_uncommitted({1})
    dedup.committed(write=True)
    # partition 1's results were aborted with the transaction: the table reads them again
    assert dedup.stored_offsets() == {0: 42}
    assert dedup.seen("a") == "SENT" and dedup.seen("b") is None


def _rows(dedup: Dedup) -> int:
    return int(dedup._store.db.execute("SELECT COUNT(*) FROM dedup_ids").fetchone()[0])


def test_committed_ids_are_written_together_once_a_second(tmp_path):
    clock = Clock()
    dedup = _dedup(tmp_path, clock)  # its rows written just now
    before = _rows(dedup)
    dedup.record(DedupEntry("a", DedupStatus.SENT), 0)
    dedup.delivered(0, 41)
    dedup.committed()
    dedup.look_up(["a"])  # the table does not hold it yet: memory answers
    assert dedup.seen("a") == "SENT"
    assert _rows(dedup) == before and dedup.stored_offsets() == {}
    clock.ms += 999
    dedup.record(DedupEntry("b", DedupStatus.SKIPPED), 0)
    dedup.delivered(0, 42)
    dedup.committed()
    assert _rows(dedup) == before
    clock.ms += 1
    dedup.record(DedupEntry("c", DedupStatus.FAILED), 1)
    dedup.delivered(1, 7)
    dedup.committed()  # a second since the last write: all three, with the latest positions
    assert _rows(dedup) == before + 3
    assert dedup.stored_offsets() == {0: 43, 1: 8}
    dedup.forget_looked_up()
    assert [dedup.seen(e) for e in "abc"] == ["SENT", "SKIPPED", "FAILED"]


def test_a_crash_before_the_write_leaves_the_position_before_the_ids_it_lost(tmp_path):
    dedup = _dedup(tmp_path)
    dedup.record(DedupEntry("a", DedupStatus.SENT), 0)
    dedup.delivered(0, 41)
    dedup.committed()
    # the process dies: a new one finds the table as it was, and reads the results again
    after = Dedup(dedup._store, "results", clock_ms=lambda: NOW_MS)
    assert after.seen("a") is None
    assert after.stored_offsets() == {}


def test_a_partition_lost_after_its_commit_keeps_the_ids_committed(tmp_path):
    dedup = _dedup(tmp_path)
    before = _rows(dedup)
    dedup.record(DedupEntry("a", DedupStatus.SENT), 1)
    dedup.delivered(1, 41)
    dedup.committed()
    dedup.record(DedupEntry("b", DedupStatus.SENT), 1)  # the next transaction, then lost
    dedup.drop_uncommitted({1})
    assert dedup.seen("a") == "SENT" and dedup.seen("b") is None
    dedup.write()
    assert dedup.stored_offsets() == {1: 42}
    assert _rows(dedup) == before + 1


def test_a_restore_writes_the_waiting_ids_with_its_own_and_its_positions_win(tmp_path):
    dedup = _dedup(tmp_path)
    before = _rows(dedup)
    dedup.record(DedupEntry("a", DedupStatus.SENT), 0)
    dedup.delivered(0, 41)
    dedup.record(DedupEntry("b", DedupStatus.SENT), 1)
    dedup.delivered(1, 9)
    dedup.committed()
    dedup.store([("r", DedupStatus.SKIPPED, NOW_MS)], {0: 50})  # partition 0 read to its end
    assert dedup.stored_offsets() == {0: 50, 1: 10}
    assert _rows(dedup) == before + 3
    dedup.write()  # nothing waits: the positions stay
    assert dedup.stored_offsets() == {0: 50, 1: 10}


def test_a_state_folder_of_the_earlier_layout_is_read_again_from_the_results_topic(tmp_path):
    store = StateStore(tmp_path).open()
    store.db.execute(
        "CREATE TABLE dedup (event_id TEXT PRIMARY KEY, status TEXT NOT NULL,"
        " at INTEGER NOT NULL, partition INTEGER NOT NULL) WITHOUT ROWID"
    )
    store.db.execute("INSERT INTO dedup VALUES ('x', 'SENT', ?, 0)", (NOW_MS,))
    store.save_offset("results", 0, 99)
    store.save_offset("retry", 0, 5)
    dedup = Dedup(store, "results", clock_ms=lambda: NOW_MS)
    dedup.create_table()
    assert dedup.stored_offsets() == {}  # restored from the start of the results topic
    assert store.offsets("retry") == {0: 5}
    tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master")}
    assert "dedup" not in tables and "dedup_ids" in tables


CANONICAL = "0b8f3c52-6a4e-4d7e-9a51-3c2f1e0d9b7a"
NEAR_MISSES = [
    CANONICAL.upper(),
    "{" + CANONICAL[1:-1] + "}",
    CANONICAL.replace("-", ""),
    CANONICAL[:8] + " " + CANONICAL[9:],
    CANONICAL[:-2] + " 7",
    CANONICAL[:-1] + "g",
    "urn:uuid:" + CANONICAL,
    "0b8f3c526a4e-4d7e-9a51-3c2f1e0d9b7a-",
]


@pytest.mark.parametrize("event_id", NEAR_MISSES)
def test_an_id_that_is_not_a_canonical_uuid_stays_text(event_id):
    assert id_key(event_id) == event_id


@given(st.uuids())
def test_a_canonical_uuid_is_its_16_bytes(value):
    assert id_key(str(value)) == value.bytes
