"""The parked events of the owned partitions, on local disk: the retry topic as a table.

The retry topic is the changelog (see `events/parking.py`); this table is its latest state,
kept like the dedup table: written when a transaction that parks or resolves events commits,
and rebuilt from the retry topic when a partition is assigned (`recovery.py`). The retry
scheduler asks it which events are due; triage asks it whether an `event_id` is parked. Rows
hold the encoded record (the trigger as received, no token), so memory holds none of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from consumer.events.parking import ParkedEvent
from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.store.sqlite import StateStore

__all__ = ["ParkedRow", "ParkedTable", "decode_parked", "encode_parked", "parked_row"]

# the retry topic is the service's own: single-object encoding, whatever the registry says
_CODEC = AvroCodec(SchemaStore())

_UPSERT = (  # not INSERT OR REPLACE: its implicit delete would not reach the count triggers
    "INSERT INTO parked (event_id, partition, dataset_id, due_at, first_parked_at, record)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO UPDATE SET"
    " partition = excluded.partition, dataset_id = excluded.dataset_id, due_at = excluded.due_at,"
    " first_parked_at = excluded.first_parked_at, record = excluded.record"
)


@dataclass(frozen=True, slots=True)
class ParkedRow:
    """A parked event as the table keeps it: what the scheduler selects on, and the record."""

    event_id: str
    partition: int
    dataset_id: str
    due_at: int
    first_parked_at: int
    record: bytes


def encode_parked(parked: ParkedEvent) -> bytes:
    return _CODEC.encode("ParkedEvent", parked.to_avro(), "")


def decode_parked(value: bytes) -> ParkedEvent:
    """The parked event in a retry-topic record (`DecodeError` if it is not one)."""
    return ParkedEvent.from_avro(_CODEC.decode(value, "ParkedEvent"))


def parked_row(parked: ParkedEvent, value: bytes) -> ParkedRow:
    """The table's row for `parked`, encoded as `value`."""
    return ParkedRow(
        parked.event_id,
        parked.partition,
        parked.dataset_id,
        parked.due_at,
        parked.first_parked_at,
        value,
    )


class ParkedTable:
    """Parked events by `event_id`. Used from the main loop only."""

    def __init__(
        self,
        store: StateStore,
        retry_topic: str,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.topic = retry_topic
        self._store = store
        self._clock_ms = clock_ms
        self._empty: bool | None = None  # known empty (most of the time): no lookup needed
        self._datasets: set[str] | None = None  # datasets with parked events (or once had)

    def create_table(self) -> None:
        db = self._store.db
        db.execute(
            "CREATE TABLE IF NOT EXISTS parked (event_id TEXT PRIMARY KEY,"
            " partition INTEGER NOT NULL, dataset_id TEXT NOT NULL, due_at INTEGER NOT NULL,"
            " first_parked_at INTEGER NOT NULL, record BLOB NOT NULL) WITHOUT ROWID"
        )
        # what is due, dataset by dataset: a throttled dataset's rows are never walked through
        db.execute(
            "CREATE INDEX IF NOT EXISTS parked_due_by_dataset ON parked (dataset_id, due_at)"
        )
        # the oldest of a partition in one index step, not a scan of millions of rows
        db.execute(
            "CREATE INDEX IF NOT EXISTS parked_oldest ON parked (partition, first_parked_at)"
        )
        db.execute("DROP INDEX IF EXISTS parked_due")  # of earlier versions: nothing reads it
        self._create_counts()

    def _create_counts(self) -> None:
        """How many events each partition has parked, and their bytes, kept by triggers in the
        transactions that change the table (counting rows every few seconds would read the
        whole table). A state folder of an earlier version counted no bytes: its counts are
        made again."""
        db = self._store.db
        columns = {row[1] for row in db.execute("PRAGMA table_info(parked_count)")}
        if "bytes" in columns:
            return
        with self._store.transaction():
            for trigger in ("parked_counted", "parked_uncounted", "parked_moved"):
                db.execute(f"DROP TRIGGER IF EXISTS {trigger}")
            db.execute("DROP TABLE IF EXISTS parked_count")
            db.execute(
                "CREATE TABLE parked_count (partition INTEGER PRIMARY KEY, n INTEGER NOT NULL,"
                " bytes INTEGER NOT NULL)"
            )
            db.execute(
                "INSERT INTO parked_count SELECT partition, COUNT(*), SUM(length(record))"
                " FROM parked GROUP BY partition"
            )
            db.execute(
                "CREATE TRIGGER parked_counted AFTER INSERT ON parked BEGIN"
                " INSERT INTO parked_count VALUES (NEW.partition, 1, length(NEW.record))"
                " ON CONFLICT (partition) DO UPDATE SET n = n + 1,"
                " bytes = bytes + length(NEW.record); END"
            )
            db.execute(
                "CREATE TRIGGER parked_uncounted AFTER DELETE ON parked BEGIN"
                " UPDATE parked_count SET n = n - 1, bytes = bytes - length(OLD.record)"
                " WHERE partition = OLD.partition; END"
            )
            db.execute(
                "CREATE TRIGGER parked_changed AFTER UPDATE ON parked BEGIN"
                " UPDATE parked_count SET n = n - 1, bytes = bytes - length(OLD.record)"
                " WHERE partition = OLD.partition;"
                " INSERT INTO parked_count VALUES (NEW.partition, 1, length(NEW.record))"
                " ON CONFLICT (partition) DO UPDATE SET n = n + 1,"
                " bytes = bytes + length(NEW.record); END"
            )

    def reset(self, topic_id: str) -> None:
        """The retry topic is new (its id changed): what the table holds is void."""
        with self._store.transaction():
            self._store.db.execute("DELETE FROM parked")
            self._store.reset_topic(self.topic, topic_id)
        self._empty = True
        self._datasets = set()

    def apply(
        self,
        parked: Iterable[ParkedRow],
        ended: Iterable[str],
        topic_offsets: Mapping[int, int] | None = None,
    ) -> None:
        """Park or park again `parked`, end the parking of `ended`, and note how far each retry
        partition is read into the table, in one local transaction."""
        parked, ended = list(parked), list(ended)
        with self._store.transaction():
            self._store.db.executemany(
                _UPSERT,
                [
                    (r.event_id, r.partition, r.dataset_id, r.due_at, r.first_parked_at, r.record)
                    for r in parked
                ],
            )
            self._store.db.executemany(
                "DELETE FROM parked WHERE event_id = ?", [(e,) for e in ended]
            )
            for partition, offset in (topic_offsets or {}).items():
                self._store.save_offset(self.topic, partition, offset)
        if parked:
            self._empty = False
        elif ended and self._empty is False:
            self._empty = None  # perhaps emptied: looked at again when asked
        if self._datasets is not None:
            self._datasets.update(r.dataset_id for r in parked)

    def may_write(self) -> bool:
        return self._store.may_write()

    def drop_partitions(self, partitions: Collection[int]) -> None:
        """The rows of `partitions` stop counting: their partition left this instance, or
        came back to it, and the retry topic is then the truth, read again from its start."""
        if not partitions:
            return
        marks = ",".join("?" * len(partitions))
        with self._store.transaction(adds=False):
            self._store.db.execute(
                f"DELETE FROM parked WHERE partition IN ({marks})",  # noqa: S608 - only placeholders
                tuple(partitions),
            )
            self._store.forget_offsets(self.topic, partitions)
        self._empty = None
        self._datasets = None

    def stored_offsets(self) -> dict[int, int]:
        return self._store.offsets(self.topic)

    def stored_topic_id(self) -> str | None:
        return self._store.topic_id(self.topic)

    def parked_among(self, event_ids: Collection[str]) -> set[str]:
        """Which of `event_ids` are parked (one query per 500; none while the table is empty)."""
        if self._empty is None:
            row = self._store.db.execute("SELECT 1 FROM parked LIMIT 1").fetchone()
            self._empty = row is None
        if self._empty:
            return set()
        return {str(e) for (e,) in self._store.rows_by_event_id("event_id", "parked", event_ids)}

    def due(
        self,
        partitions: Collection[int],
        *,
        limit: int,
        skip_ids: Collection[str] = (),
        skip_datasets: Collection[str] = (),
        due_by_ms: int | None = None,
    ) -> list[bytes]:
        """The records of the events of `partitions` due by `due_by_ms` (default now), oldest
        due first; none of `skip_datasets` (one indexed query per other dataset)."""
        if not partitions or limit <= 0:
            return []
        if self._datasets is None:
            rows = self._store.db.execute("SELECT DISTINCT dataset_id FROM parked")
            self._datasets = {str(d) for (d,) in rows}
        marks = ",".join("?" * len(partitions))
        query = (
            f"SELECT due_at, event_id, record FROM parked WHERE dataset_id = ? AND due_at <= ?"  # noqa: S608 - only placeholders
            f" AND partition IN ({marks}) ORDER BY due_at LIMIT ?"
        )
        due_by = due_by_ms or self._clock_ms()
        found = []
        for dataset in sorted(self._datasets - set(skip_datasets)):
            params = (dataset, due_by, *partitions, limit + len(skip_ids))
            found += self._store.db.execute(query, params).fetchall()
        found.sort()
        return [record for _, event_id, record in found if event_id not in skip_ids][:limit]

    def due_now(self, partitions: Collection[int]) -> None:
        """Every parked event of `partitions` is due at once (Meta is back after an outage);
        only the local table changes: a new owner goes by the records' own due times."""
        if not partitions:
            return
        marks = ",".join("?" * len(partitions))
        now = self._clock_ms()
        with self._store.transaction(adds=False):
            self._store.db.execute(
                f"UPDATE parked SET due_at = ? WHERE due_at > ? AND partition IN ({marks})",  # noqa: S608 - only placeholders
                (now, now, *partitions),
            )

    def stored_bytes(self) -> int:
        """Bytes of every parked record the table holds (one row a partition to add up)."""
        (total,) = self._store.db.execute("SELECT SUM(bytes) FROM parked_count").fetchone()
        return int(total or 0)

    def summary(self, partitions: Collection[int]) -> tuple[int, int | None]:
        """(events parked, when the oldest of them was first tried) in `partitions`: a few
        index steps, whatever the table holds."""
        db = self._store.db
        count, oldest = 0, None
        for partition in partitions:
            row = db.execute("SELECT n FROM parked_count WHERE partition = ?", (partition,))
            found = row.fetchone()
            count += int(found[0]) if found else 0
            (first,) = db.execute(
                "SELECT MIN(first_parked_at) FROM parked WHERE partition = ?", (partition,)
            ).fetchone()
            if first is not None and (oldest is None or first < oldest):
                oldest = int(first)
        return count, oldest
