import base64
import time

import msgspec
import orjson

from consumer.events.results import DedupEntry, DedupStatus, SourceRef
from consumer.kafka.publisher import OutRecord
from consumer.store.outbox import Outbox
from consumer.store.sqlite import StateStore


def _stored(store: StateStore) -> list[tuple[int, int]]:
    """Every entry on disk, as (partition, offset), whatever batch holds it."""
    decoder = msgspec.msgpack.Decoder()
    rows = store.db.execute("SELECT partition, entries FROM outbox_batches").fetchall()
    return sorted((p, entry[0]) for p, entries in rows for entry in decoder.decode(entries))


def test_entries_survive_a_restart_until_committed(tmp_path):
    store = StateStore(tmp_path).open()
    outbox = Outbox(store)
    outbox.open()
    records = [
        OutRecord("results", b"evt-1", b"\x00avro", ("in", 2), partition=2),
        OutRecord("dlq", None, b"raw", ("in", 2), headers=[("capi.error", b"X: y")]),
    ]
    outbox.add("in", 2, 41, records, DedupEntry("evt-1", DedupStatus.SENT))
    outbox.flush()
    store.close()

    store = StateStore(tmp_path).open()  # a new process
    outbox = Outbox(store)
    outbox.open()
    outbox.load("in", 2, committed=40)
    assert outbox.has("in", 2, 41)
    assert not outbox.has("in", 2, 40)
    got, dedup = outbox.take("in", 2, 41)
    assert dedup == ("evt-1", "SENT")
    assert [(r.topic, r.key, r.value, r.partition) for r in got] == [
        ("results", b"evt-1", b"\x00avro", 2),
        ("dlq", None, b"raw", None),
    ]
    assert got[1].headers == [("capi.error", b"X: y")]
    outbox.committed({("in", 2): [41]})
    assert not outbox.has("in", 2, 41)
    outbox.flush()  # the next write deletes the committed entries
    outbox.load("in", 2, committed=0)
    assert not outbox.has("in", 2, 41)


def test_entries_before_the_committed_offset_are_dropped_on_load(tmp_path):
    store = StateStore(tmp_path).open()
    outbox = Outbox(store)
    outbox.open()
    for offset in (5, 9):  # two loop turns: two batches
        outbox.add("in", 0, offset, [], None)
        outbox.flush()
    outbox.load("in", 0, committed=7)
    assert not outbox.has("in", 0, 5)
    assert outbox.has("in", 0, 9)
    assert _stored(store) == [(0, 9)]


def test_a_commit_drops_the_entries_up_to_its_offsets_and_keeps_later_ones(tmp_path):
    store = StateStore(tmp_path).open()
    outbox = Outbox(store)
    outbox.open()
    for offset in (3, 4, 5):
        outbox.add("in", 1, offset, [], None)
    outbox.add("in", 2, 4, [], None)
    outbox.flush()
    outbox.add("in", 1, 8, [], None)
    outbox.flush()
    outbox.load("in", 1, committed=0)
    outbox.load("in", 2, committed=0)
    outbox.committed({("in", 1): [3, 4, 5]})
    assert [outbox.has("in", 1, o) for o in (3, 4, 5, 8)] == [False, False, False, True]
    assert outbox.has("in", 2, 4)  # another partition's entry at the same offset stays
    outbox.add("in", 1, 9, [], None)
    outbox.flush()  # the deletes go with the next entries written, in one transaction
    assert _stored(store) == [(1, 8), (1, 9), (2, 4)]


def test_a_batch_committed_in_part_stays_until_its_last_offset_is_committed(tmp_path):
    store = StateStore(tmp_path).open()
    outbox = Outbox(store)
    outbox.open()
    for offset in (3, 4, 7):  # one loop turn's entries of the partition: one batch
        outbox.add("in", 1, offset, [OutRecord("results", None, bytes([offset]), ("in", 1))], None)
    outbox.flush()
    outbox.load("in", 1, committed=0)
    outbox.committed({("in", 1): [3, 4]})
    outbox.flush()
    assert _stored(store) == [(1, 3), (1, 4), (1, 7)]
    assert not outbox.has("in", 1, 4) and outbox.has("in", 1, 7)
    records, _ = outbox.take("in", 1, 7)
    assert [r.value for r in records] == [b"\x07"]
    reopened = Outbox(store)  # a restart: the committed entries of the batch are not known
    reopened.open()
    reopened.load("in", 1, committed=5)
    assert [reopened.has("in", 1, o) for o in (3, 4, 7)] == [False, False, True]
    outbox.committed({("in", 1): [5, 6, 7]})
    outbox.flush()
    assert _stored(store) == []


def test_an_entry_published_ahead_leaves_its_batch_and_the_others_stay(tmp_path):
    store = StateStore(tmp_path).open()
    outbox = Outbox(store)
    outbox.open()
    for offset in (3, 4, 5):
        outbox.add("in", 1, offset, [OutRecord("results", None, bytes([offset]), ("in", 1))], None)
    outbox.flush()
    outbox.add("in", 1, 6, [], None)  # queued, not written yet
    outbox.load("in", 1, committed=0)
    outbox.discard([SourceRef("in", 1, 3), SourceRef("in", 1, 5), SourceRef("in", 1, 6)])
    outbox.flush()
    assert _stored(store) == [(1, 4)]
    assert [outbox.has("in", 1, o) for o in (3, 4, 5)] == [False, True, False]
    records, _ = outbox.take("in", 1, 4)
    assert [r.value for r in records] == [b"\x04"]
    outbox.discard([SourceRef("in", 1, 4)])  # the last of its batch: the batch goes
    assert store.db.execute("SELECT COUNT(*) FROM outbox_batches").fetchone()[0] == 0


def test_committed_entries_are_deleted_even_when_the_entries_written_with_them_find_no_room(
    tmp_path,
):
    store = StateStore(tmp_path).open()
    outbox = Outbox(store)
    outbox.open()
    for offset in (3, 4):  # two loop turns: two batches
        outbox.add("in", 1, offset, [], None)
        outbox.flush()
    outbox.load("in", 1, committed=0)
    outbox.committed({("in", 1): [3]})
    outbox.add("in", 1, 5, [OutRecord("results", None, b"x" * 200_000, ("in", 1))], None)
    page_size = store.db.execute("PRAGMA page_size").fetchone()[0]
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages + 2}")  # no room for the big entry
    assert page_size * 2 < 200_000
    outbox.flush()
    assert store.full
    # the committed one deleted all the same; the new one still queued
    assert _stored(store) == [(1, 4)]
    assert outbox.has("in", 1, 4)


def test_entries_older_than_meta_s_window_are_purged_at_open(tmp_path):
    now = {"ms": 1_800_000_000_000}
    store = StateStore(tmp_path).open()
    outbox = Outbox(store, clock_ms=lambda: now["ms"])
    outbox.open()
    outbox.add("in", 0, 5, [], None)
    outbox.flush()
    now["ms"] += 6 * 86_400_000
    outbox.add("in", 1, 9, [], None)
    outbox.flush()
    now["ms"] += 2 * 86_400_000  # the first entry is 8 days old, the second 2
    Outbox(store, clock_ms=lambda: now["ms"]).open()
    reopened = Outbox(store, clock_ms=lambda: now["ms"])
    reopened.load("in", 0, committed=0)
    reopened.load("in", 1, committed=0)
    assert not reopened.has("in", 0, 5)
    assert reopened.has("in", 1, 9)


def test_a_state_folder_of_an_earlier_version_keeps_its_entries(tmp_path):
    store = StateStore(tmp_path).open()
    store.db.execute(
        "CREATE TABLE outbox (topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT"
        " NULL, entry BLOB NOT NULL, PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID"
    )
    store.db.execute(
        "INSERT INTO outbox VALUES ('in', 0, 3, ?)", (b'{"records": [], "dedup": null}',)
    )
    outbox = Outbox(store)
    outbox.open()
    outbox.load("in", 0, committed=0)
    assert outbox.has("in", 0, 3)
    assert outbox.take("in", 0, 3) == ([], None)
    tables = {row[0] for row in store.db.execute("SELECT name FROM sqlite_master")}
    assert "outbox" not in tables  # its rows are batches of one now


def test_an_entry_written_as_json_by_an_earlier_version_is_taken_whole(tmp_path):
    # the JSON form, bytes in base64, as the version before MessagePack entries wrote it
    entry = orjson.dumps(
        {
            "records": [
                {
                    "topic": "results",
                    "key": base64.b64encode(b"evt-1").decode(),
                    "value": base64.b64encode(b"\x00avro").decode(),
                    "partition": 2,
                    "headers": [],
                },
                {
                    "topic": "dlq",
                    "key": None,
                    "value": base64.b64encode(b"raw").decode(),
                    "partition": None,
                    "headers": [["capi.error", base64.b64encode(b"X: y").decode()]],
                },
            ],
            "dedup": ["evt-1", "SENT"],
        }
    )
    store = StateStore(tmp_path).open()
    store.db.execute(
        "CREATE TABLE outbox (topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT"
        " NULL, entry BLOB NOT NULL, at INTEGER NOT NULL DEFAULT 0,"
        " PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID"
    )
    store.db.execute(
        "INSERT INTO outbox VALUES ('in', 2, 41, ?, ?)", (entry, int(time.time() * 1000))
    )
    outbox = Outbox(store)
    outbox.open()
    outbox.load("in", 2, committed=0)
    records, dedup = outbox.take("in", 2, 41)
    assert dedup == DedupEntry("evt-1", DedupStatus.SENT)
    assert [(r.topic, r.key, r.value, r.partition, r.headers) for r in records] == [
        ("results", b"evt-1", b"\x00avro", 2, None),
        ("dlq", None, b"raw", None, [("capi.error", b"X: y")]),
    ]


def test_the_state_folder_is_private(tmp_path):
    folder = tmp_path / "state"
    StateStore(folder).open().close()
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / "tables.sqlite3").stat().st_mode & 0o777 == 0o600


def test_a_damaged_batch_is_left_out_with_a_warning_not_a_crash(tmp_path, caplog):
    store = StateStore(tmp_path).open()
    store.db.execute(
        "CREATE TABLE outbox (topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT"
        " NULL, entry BLOB NOT NULL, PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID"
    )
    store.db.execute("INSERT INTO outbox VALUES ('in', 0, 2, ?)", (b"{not json",))
    store.db.execute(
        "INSERT INTO outbox VALUES ('in', 0, 3, ?)", (b'{"records": [], "dedup": null}',)
    )
    outbox = Outbox(store)
    outbox.open()  # the earlier version's damaged entry is left out, the other one taken over
    outbox.add("in", 0, 7, [], None)
    outbox.flush()
    store.db.execute(
        "INSERT INTO outbox_batches (topic, partition, first_offset, last_offset, entries, at)"
        " VALUES ('in', 0, 5, 6, ?, ?)",
        (b"\xc1 damaged", int(time.time() * 1000)),
    )
    outbox.load("in", 0, committed=0)
    assert [outbox.has("in", 0, o) for o in (2, 3, 5, 7)] == [False, True, False, True]
    assert outbox.take("in", 0, 7) == ([], None)
    warnings = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warnings) == 2
    assert all("topic=in partition=0" in w for w in warnings)
