"""Deduplication by `event_id`: the table the hot path reads and the commit writes.

Meta does not deduplicate business-messaging events, so the service must not send one twice.
Every processed `event_id` (sent, skipped or failed) counts for `window_s` (7 days). The table
lives in the state store and is rebuilt from the results topic (`dedup_restore.py`); entries of
the open transaction are kept in memory until it commits, and messages in progress are tracked
too, so a second copy arriving before the first is resolved is a duplicate as well.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from consumer.events.results import DedupEntry
from consumer.store.sqlite import StateStore

__all__ = ["IN_PROGRESS", "PARKED", "Dedup", "DedupRow"]

IN_PROGRESS = "IN_PROGRESS"
PARKED = "PARKED"  # waiting in the retry topic: a copy of it is a duplicate too
DedupRow = tuple[str, str, int, int]  # event_id, status, processed at (ms), results partition
_INSERT = "INSERT OR REPLACE INTO dedup (event_id, status, at, partition) VALUES (?, ?, ?, ?)"


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
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.topic = results_topic
        self._store = store
        self._window_ms = window_s * 1000
        self._clock_ms = clock_ms
        self._in_progress: set[str] = set()
        self._uncommitted: dict[str, tuple[str, int, int]] = {}  # id -> (status, at, partition)
        self._result_offsets: dict[int, int] = {}  # results partition -> next offset
        self._first_ahead: dict[int, int] = {}  # results partition -> first result ahead
        # the table's rows for the ids of the batch being handled, read in one query
        self._looked_up: set[str] = set()
        self._found: dict[str, tuple[str, int]] = {}

    def create_table(self) -> None:
        self._store.db.execute(
            "CREATE TABLE IF NOT EXISTS dedup (event_id TEXT PRIMARY KEY, status TEXT NOT NULL,"
            " at INTEGER NOT NULL, partition INTEGER NOT NULL) WITHOUT ROWID"
        )

    def reset(self, topic_id: str) -> None:
        """The results topic is new (its id changed): what the table holds is void."""
        with self._store.transaction():
            self._store.db.execute("DELETE FROM dedup")
            self._store.reset_topic(self.topic, topic_id)

    # -- reading -----------------------------------------------------------------------------

    def look_up(self, event_ids: Iterable[str]) -> None:
        """Read the table's rows for a consumed batch in one query per 500 ids; `seen` answers
        from them until `forget_looked_up` (the table changes only at commit and restore)."""
        self._looked_up = set(event_ids)
        rows = self._store.rows_by_event_id("event_id, status, at", "dedup", self._looked_up)
        self._found = {event_id: (str(status), int(at)) for event_id, status, at in rows}

    def forget_looked_up(self) -> None:
        self._looked_up = set()
        self._found = {}

    def seen(self, event_id: str) -> str | None:
        """How this event_id was resolved before (`IN_PROGRESS` if it is being processed)."""
        if event_id in self._in_progress:
            return IN_PROGRESS
        entry = self._uncommitted.get(event_id)
        if entry is not None:
            return entry[0]
        if event_id in self._looked_up:
            row = self._found.get(event_id)
        else:
            row = self._store.db.execute(
                "SELECT status, at FROM dedup WHERE event_id = ?", (event_id,)
            ).fetchone()
        if row is None or int(row[1]) < self._clock_ms() - self._window_ms:
            return None
        return str(row[0])

    # -- the open transaction ----------------------------------------------------------------

    def begin(self, event_id: str) -> None:
        self._in_progress.add(event_id)

    def abandon(self, event_id: str) -> None:
        """The message will be processed again (its partition moved): not a duplicate."""
        self._in_progress.discard(event_id)

    def record(self, entry: DedupEntry, partition: int) -> None:
        """Note the outcome of an event in the open transaction."""
        self._in_progress.discard(entry.event_id)
        self._uncommitted[entry.event_id] = (entry.status, self._clock_ms(), partition)

    def delivered(self, partition: int, offset: int) -> None:
        """A result of the open transaction reached results partition `partition`."""
        if offset + 1 > self._result_offsets.get(partition, -1):
            self._result_offsets[partition] = offset + 1

    def delivered_ahead(self, partition: int, offset: int) -> None:
        """A result published ahead of its input offset (its partition was let go) reached
        `partition`: the table's position there stays before it, so that the next restore of
        the partition reads it again and skips its input message (see `dedup_restore.py`)."""
        if offset < self._first_ahead.get(partition, offset + 1):
            self._first_ahead[partition] = offset

    def committed(self) -> None:
        """The transaction committed: its entries are durable; keep them locally."""
        if not self._uncommitted and not self._result_offsets and not self._first_ahead:
            return
        rows = [(e, s, at, p) for e, (s, at, p) in self._uncommitted.items()]
        self.store(rows, self._result_offsets | self._first_ahead)
        self._uncommitted.clear()
        self._result_offsets.clear()
        self._first_ahead.clear()

    def drop_uncommitted(self, partitions: set[int]) -> None:
        """The transaction was lost for these partitions: forget what it recorded."""
        for event_id in [e for e, v in self._uncommitted.items() if v[2] in partitions]:
            del self._uncommitted[event_id]

    # -- the table ---------------------------------------------------------------------------

    def store(self, rows: list[DedupRow], result_offsets: Mapping[int, int]) -> None:
        """Write rows and how far each results partition is read into them, in one transaction."""
        self.forget_looked_up()
        with self._store.transaction():
            self._store.db.executemany(_INSERT, rows)
            for partition, offset in result_offsets.items():
                self._store.save_offset(self.topic, partition, offset)

    def stored_offsets(self) -> dict[int, int]:
        return self._store.offsets(self.topic)

    def stored_topic_id(self) -> str | None:
        return self._store.topic_id(self.topic)

    def purge(self) -> int:
        """Delete entries older than the window; return how many."""
        cutoff = self._clock_ms() - self._window_ms
        self.forget_looked_up()
        with self._store.transaction():
            cursor = self._store.db.execute("DELETE FROM dedup WHERE at < ?", (cutoff,))
        return cursor.rowcount
