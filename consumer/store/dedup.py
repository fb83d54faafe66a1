"""Deduplication by `event_id`: the table the hot path reads and the commit writes.

Meta does not deduplicate business-messaging events, so the service must not send one twice.
Every processed `event_id` (sent, skipped or failed) counts for `window_s` (7 days). The table
lives in the state store and is rebuilt from the results topic (`recovery.py`); entries of
the open transaction are kept in memory until it commits, and messages in progress are tracked
too, so a second copy arriving before the first is resolved is a duplicate as well.

Committed ids are written to the table together, once a second (`write_every_s`), and at
once when partitions move or the service stops: each commit's few hundred ids fall on random
leaves of the table, and a transaction per commit wrote most of those pages again each time.
Until written they are known from memory. A crash before loses nothing: the table's position
in the results topic is written with its rows, so the restore reads those results again.

The window is kept while the service runs: `purge_step` walks the table in key order a slice
at a time and deletes what is older than the window, so an id leaves the disk at most one sweep
after its window ends (a sweep of 100 million ids takes hours at the loop's pace), with no index
on time to pay for. The rows are compact (about 30 bytes an id on disk, measured in
`tests/unit/store/test_dedup.py`): an id that is a UUID in its canonical form is kept as its
16 bytes, any other id as its text (SQLite never finds a text equal to a blob, so the two
cannot meet); the status is a small number, the time a number of seconds since 2020.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from consumer.errors import StateFullError
from consumer.events.results import DedupEntry, DedupStatus
from consumer.store.sqlite import StateStore

__all__ = ["Dedup", "DedupRow"]

DedupRow = tuple[str, DedupStatus, int]  # event_id, status, processed at (ms)

# the most frequent statuses are 0 and 1, which SQLite stores in no byte at all
_STATUS_CODES = {
    DedupStatus.SENT: 0,
    DedupStatus.SKIPPED: 1,
    DedupStatus.FAILED: 2,
    DedupStatus.PARKED: 3,
}
_STATUSES = {code: status for status, code in _STATUS_CODES.items()}
_EPOCH_S = 1_577_836_800  # 2020-01-01: seconds since then fit in 4 bytes until 2088
_INSERT = "INSERT OR REPLACE INTO dedup_ids (id, status, at) VALUES (?, ?, ?)"


def id_key(event_id: str) -> bytes | str:
    """The table's key of `event_id`: 16 bytes for a UUID written in its canonical form (the
    same UUID in capitals is another id, and stays text), the text itself otherwise."""
    if (
        len(event_id) == 36
        and event_id[8] == event_id[13] == event_id[18] == event_id[23] == "-"
        and event_id == event_id.lower()
    ):
        try:
            key = bytes.fromhex(event_id.replace("-", ""))
        except ValueError:
            return event_id
        if len(key) == 16:
            return key
    return event_id


def _stored_at(at_ms: int) -> int:
    return max(0, at_ms // 1000 - _EPOCH_S)


class Dedup:
    """How each `event_id` was resolved within the window: the table, the ids of the batch
    being handled (read in one query), the open transaction's entries and the ids in progress.
    Used from the main loop only."""

    def __init__(
        self,
        store: StateStore,
        results_topic: str,
        *,
        window_s: int = 7 * 24 * 3600,
        write_every_s: float = 1.0,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.topic = results_topic
        self.window_s = window_s
        self._store = store
        self._window_ms = window_s * 1000
        self._write_every_ms = write_every_s * 1000
        self._clock_ms = clock_ms
        self._in_progress: set[str] = set()
        # the open transaction's: id -> (status, results partition); timed when it commits
        self._uncommitted: dict[str, tuple[DedupStatus, int]] = {}
        self._result_offsets: dict[int, int] = {}  # results partition -> next offset
        self._first_ahead: dict[int, int] = {}  # results partition -> first result ahead
        # committed, not written to the table yet: id -> (status, at), and the table's
        # positions in the results partitions that go with them
        self._unwritten: dict[str, tuple[DedupStatus, int]] = {}
        self._unwritten_positions: dict[int, int] = {}
        self._written_at: int | None = None  # when they were last written (None: not yet)
        # the table's rows for the ids of the batch being handled, read in one query
        self._looked_up: set[str] = set()
        self._found: dict[str, tuple[DedupStatus, int]] = {}
        self._sweep_after: bytes | str | None = None  # where the purge's next slice starts
        self._swept = 0  # ids seen by the sweep under way
        self.ids: int | None = None  # ids the last whole sweep found (None before one ended)

    def create_table(self) -> None:
        """Create the table. A state folder of an earlier version kept ids as text with their
        results partition: its table goes, and the results topic is read again from its start
        (`recovery.py`), as for a new state folder."""
        db = self._store.db
        with self._store.transaction():
            earlier = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dedup'"
            ).fetchone()
            if earlier:
                db.execute("DROP TABLE dedup")
                db.execute("DELETE FROM offsets WHERE topic = ?", (self.topic,))
            db.execute(
                "CREATE TABLE IF NOT EXISTS dedup_ids (id PRIMARY KEY, status INTEGER NOT NULL,"
                " at INTEGER NOT NULL) WITHOUT ROWID"
            )

    def reset(self, topic_id: str) -> None:
        """The results topic is new (its id changed): what the table holds is void."""
        with self._store.transaction():
            self._store.db.execute("DELETE FROM dedup_ids")
            self._store.reset_topic(self.topic, topic_id)
        self._unwritten.clear()  # results of the topic that went
        self._unwritten_positions.clear()

    # -- reading -----------------------------------------------------------------------------

    def look_up(self, event_ids: Iterable[str]) -> None:
        """Read the table's rows for a consumed batch in one query per 500 ids; `seen` answers
        from them until `forget_looked_up` (the table changes only at commit and restore)."""
        self._looked_up = set(event_ids)
        self._found = {}
        keys = {id_key(e): e for e in self._looked_up}
        rows = self._store.select_in("SELECT id, status, at FROM dedup_ids WHERE id", list(keys))
        for key, status, at in rows:
            self._found[keys[key]] = (_STATUSES[int(status)], int(at))

    def forget_looked_up(self) -> None:
        self._looked_up = set()
        self._found = {}

    def seen(self, event_id: str) -> DedupStatus | None:
        """How this event_id was resolved before (`IN_PROGRESS` if it is being processed)."""
        if event_id in self._in_progress:
            return DedupStatus.IN_PROGRESS
        entry = self._uncommitted.get(event_id) or self._unwritten.get(event_id)
        if entry is not None:
            return entry[0]
        if event_id in self._looked_up:
            found = self._found.get(event_id)
        else:
            row = self._store.db.execute(
                "SELECT status, at FROM dedup_ids WHERE id = ?",
                (id_key(event_id),),
            ).fetchone()
            found = None if row is None else (_STATUSES[int(row[0])], int(row[1]))
        if found is None or found[1] < _stored_at(self._clock_ms() - self._window_ms):
            return None
        return found[0]

    def within_window(self, at_ms: int) -> bool:
        """A result processed at `at_ms` still counts."""
        return at_ms >= self._clock_ms() - self._window_ms

    # -- the open transaction ----------------------------------------------------------------

    def begin(self, event_id: str) -> None:
        self._in_progress.add(event_id)

    def abandon(self, event_id: str) -> None:
        """The message will be processed again (its partition moved): not a duplicate."""
        self._in_progress.discard(event_id)

    def record(self, entry: DedupEntry, partition: int) -> None:
        """Note the outcome of an event in the open transaction."""
        self._in_progress.discard(entry.event_id)
        self._uncommitted[entry.event_id] = (entry.status, partition)

    def delivered(self, partition: int, offset: int) -> None:
        """A result of the open transaction reached results partition `partition`."""
        if offset + 1 > self._result_offsets.get(partition, -1):
            self._result_offsets[partition] = offset + 1

    def delivered_ahead(self, partition: int, offset: int) -> None:
        """A result published ahead of its input offset (its partition was let go) reached
        `partition`: the table's position there stays before it, so that the next restore of
        the partition reads it again and skips its input message (see `recovery.py`)."""
        if offset < self._first_ahead.get(partition, offset + 1):
            self._first_ahead[partition] = offset

    def committed(self, *, write: bool = False) -> None:
        """The transaction committed: its entries are durable. They wait in memory, where
        `seen` finds them, and are written to the table when a second has passed since the
        last write (now with `write`). While the store is full they wait for room. Their window
        starts now: they were recorded as this commit published their results, moments ago."""
        now = self._clock_ms()
        for event_id, (status, _) in self._uncommitted.items():
            self._unwritten[event_id] = (status, now)
        self._uncommitted.clear()
        # this commit's positions replace the earlier ones, as writing each commit's would
        self._unwritten_positions.update(self._result_offsets | self._first_ahead)
        self._result_offsets.clear()
        self._first_ahead.clear()
        written = self._written_at
        if write or written is None or not 0 <= now - written < self._write_every_ms:
            self.write()

    def write(self) -> None:
        """Write the committed entries waiting in memory (they wait on while the store is
        full)."""
        if not (self._unwritten or self._unwritten_positions) or not self._store.may_write():
            return
        try:
            self.store([], {})
        except StateFullError:
            return

    def drop_uncommitted(self, partitions: set[int]) -> None:
        """The transaction was lost for these partitions: forget what it recorded, and where
        its results were written (aborted, they are no position to resume from)."""
        for event_id in [e for e, v in self._uncommitted.items() if v[1] in partitions]:
            del self._uncommitted[event_id]
        for partition in partitions:
            self._result_offsets.pop(partition, None)
            self._first_ahead.pop(partition, None)

    # -- the table ---------------------------------------------------------------------------

    def store(self, rows: list[DedupRow], result_offsets: Mapping[int, int]) -> None:
        """Write rows and how far each results partition is read into them, in one
        transaction, with the committed entries waiting in memory (a position of `rows` wins
        over theirs: every row before either is in the table once it commits)."""
        self.forget_looked_up()
        waiting = [(e, s, at) for e, (s, at) in self._unwritten.items()]
        positions = self._unwritten_positions | dict(result_offsets)
        with self._store.transaction():
            self._store.db.executemany(
                _INSERT,
                [(id_key(e), _STATUS_CODES[s], _stored_at(at)) for e, s, at in waiting + rows],
            )
            for partition, offset in positions.items():
                self._store.save_offset(self.topic, partition, offset)
        self._unwritten.clear()
        self._unwritten_positions.clear()
        self._written_at = self._clock_ms()

    def stored_offsets(self) -> dict[int, int]:
        return self._store.offsets(self.topic)

    def may_write(self) -> bool:
        return self._store.may_write()

    def stored_topic_id(self) -> str | None:
        return self._store.topic_id(self.topic)

    def purge_step(self, limit: int = 5_000) -> int:
        """Delete the expired ids among the next `limit` of the table in key order; return
        how many. The sweep starts again from the first key when it reaches the last."""
        db = self._store.db
        if self._sweep_after is None:
            rows = db.execute(
                "SELECT id, at FROM dedup_ids ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        else:
            rows = db.execute(
                "SELECT id, at FROM dedup_ids WHERE id > ? ORDER BY id LIMIT ?",
                (self._sweep_after, limit),
            ).fetchall()
        cutoff = _stored_at(self._clock_ms() - self._window_ms)
        expired = [(key,) for key, at in rows if int(at) < cutoff]
        self._swept += len(rows) - len(expired)
        if len(rows) < limit:  # the end of the table: the next slice starts over
            self._sweep_after, self.ids, self._swept = None, self._swept, 0
        else:
            self._sweep_after = rows[-1][0]
        if not expired:
            return 0
        self.forget_looked_up()
        try:
            with self._store.transaction(adds=False):
                db.executemany("DELETE FROM dedup_ids WHERE id = ?", expired)
        except StateFullError:  # no room even for the journal: the next sweep deletes them
            return 0
        return len(expired)
