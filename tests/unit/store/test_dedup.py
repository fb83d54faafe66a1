"""The dedup table's lookups, without Kafka (restore and reset are covered end to end)."""

from consumer.events.results import DedupEntry
from consumer.store.dedup import Dedup
from consumer.store.sqlite import StateStore

NOW_MS = 1_800_000_000_000
DAY_MS = 86_400_000


def _dedup(tmp_path):
    store = StateStore(tmp_path).open()
    dedup = Dedup(store, "results", clock_ms=lambda: NOW_MS)
    dedup.create_table()
    with store.transaction():
        store.db.executemany(
            "INSERT INTO dedup (event_id, status, at, partition) VALUES (?, ?, ?, ?)",
            [("sent", "SENT", NOW_MS - DAY_MS, 0), ("old", "SENT", NOW_MS - 8 * DAY_MS, 0)]
            + [(f"e{i}", "FAILED", NOW_MS, 1) for i in range(1200)],
        )
    return dedup


def test_a_batch_looked_up_at_once_answers_like_one_by_one(tmp_path):
    dedup = _dedup(tmp_path)
    ids = ["sent", "old", "new", *(f"e{i}" for i in range(0, 1500, 3))]
    one_by_one = {e: dedup.seen(e) for e in ids}
    assert one_by_one["sent"] == "SENT" and one_by_one["old"] is None  # outside the window
    assert one_by_one["new"] is None and one_by_one["e3"] == "FAILED"
    dedup.look_up(ids)  # more than one query's worth of ids
    dedup._store.db.execute("DROP TABLE dedup")  # every answer must now come from memory
    assert {e: dedup.seen(e) for e in ids} == one_by_one


def test_what_the_open_transaction_knows_wins_over_the_lookup(tmp_path):
    dedup = _dedup(tmp_path)
    dedup.look_up(["new", "sent"])
    dedup.begin("new")
    assert dedup.seen("new") == "IN_PROGRESS"
    dedup.record(DedupEntry("new", "SENT"), 0)
    assert dedup.seen("new") == "SENT"


def test_a_commit_forgets_the_lookup(tmp_path):
    dedup = _dedup(tmp_path)
    dedup.look_up(["x"])
    dedup.record(DedupEntry("x", "SKIPPED"), 0)
    dedup.committed()
    assert dedup.seen("x") == "SKIPPED"  # from the table the commit wrote, not the stale lookup
