from consumer.kafka.publisher import OutRecord
from consumer.store.outbox import Outbox
from consumer.store.sqlite import StateStore


def test_entries_survive_a_restart_until_committed(tmp_path):
    store = StateStore(tmp_path).open()
    outbox = Outbox(store)
    outbox.open()
    records = [
        OutRecord("results", b"evt-1", b"\x00avro", ("in", 2), partition=2),
        OutRecord("dlq", None, b"raw", ("in", 2), headers=[("capi.error", b"X: y")]),
    ]
    outbox.add("in", 2, 41, records, ("evt-1", "SENT"))
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
    outbox.load("in", 2, committed=0)
    assert not outbox.has("in", 2, 41)


def test_entries_before_the_committed_offset_are_dropped_on_load(tmp_path):
    store = StateStore(tmp_path).open()
    outbox = Outbox(store)
    outbox.open()
    outbox.add("in", 0, 5, [], None)
    outbox.add("in", 0, 9, [], None)
    outbox.flush()
    outbox.load("in", 0, committed=7)
    assert not outbox.has("in", 0, 5)
    assert outbox.has("in", 0, 9)
    assert store.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1


def test_a_commit_drops_the_entries_up_to_its_offsets_and_keeps_later_ones(tmp_path):
    store = StateStore(tmp_path).open()
    outbox = Outbox(store)
    outbox.open()
    for offset in (3, 4, 5, 8):
        outbox.add("in", 1, offset, [], None)
    outbox.add("in", 2, 4, [], None)
    outbox.flush()
    outbox.load("in", 1, committed=0)
    outbox.load("in", 2, committed=0)
    outbox.committed({("in", 1): [3, 4, 5]})
    assert [outbox.has("in", 1, o) for o in (3, 4, 5, 8)] == [False, False, False, True]
    assert outbox.has("in", 2, 4)  # another partition's entry at the same offset stays
    rows = store.db.execute("SELECT partition, offset FROM outbox ORDER BY 1, 2").fetchall()
    assert rows == [(1, 8), (2, 4)]
