"""The outbox: what Meta already answered, kept on local disk until it is committed to Kafka.

A result is published only when every earlier message of its partition is resolved (so that
it commits with its offset), which can take a while when an earlier event waits for a retry.
If the process dies meanwhile, the input is read again. Without the outbox that would mean
sending those events to Meta a second time; with it, a restarted instance (same state folder)
finds Meta's answer here and publishes it instead. What remains at risk after a SIGKILL is
only what was on the wire: requests in flight, and answers that arrived within the last turn
of the loop.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

import msgspec
import orjson

from consumer.errors import StateFullError
from consumer.events.results import DedupEntry, DedupStatus, Partition, SourceRef
from consumer.kafka.publisher import OutRecord
from consumer.store.sqlite import StateStore

__all__ = ["Outbox"]

log = logging.getLogger(__name__)


# Entries are written in batches: one row per input partition and loop turn, holding that
# partition's entries of the turn, its first and last offset. A row per entry cost twice the
# CPU (an insert and a delete each, with their B-tree and journal pages), and an event's entry
# is written for nearly every event.
#
# A batch is MessagePack (msgspec): [[offset, records, dedup], ...], a record [topic, key, value,
# partition, headers] with its bytes as bytes. Earlier versions wrote a row per entry, in the
# table `outbox`: MessagePack [records, dedup], or JSON with the bytes in base64 (it starts with
# "{"). Such rows become batches of one when the outbox is opened, so a state folder left by
# one loses nothing.
_ENCODER = msgspec.msgpack.Encoder()
_Record = tuple[str, bytes | None, bytes | None, int | None, list[tuple[str, bytes | None]]]
_Dedup = tuple[str, str] | None
_Entry = tuple[list[_Record], _Dedup]
_BatchEntry = tuple[int, list[_Record], _Dedup]  # an entry with its input offset
_BATCH_DECODER = msgspec.msgpack.Decoder(list[_BatchEntry])
_ENTRY_DECODER = msgspec.msgpack.Decoder(_Entry)


def _header_bytes(value: str | bytes | None) -> bytes:
    return value if isinstance(value, bytes) else str(value or "").encode()


def _records(records: Iterable[OutRecord]) -> list[_Record]:
    """Records as a batch keeps them."""
    return [
        (
            r.topic,
            r.key,
            r.value,
            r.partition,
            [(k, _header_bytes(v)) for k, v in r.headers] if r.headers else [],
        )
        for r in records
    ]


def _earlier_entry(raw: bytes) -> _Entry:
    """An entry of the per-entry table of earlier versions (MessagePack, or JSON)."""
    if raw[:1] != b"{":
        return _ENTRY_DECODER.decode(raw)
    data = orjson.loads(raw)
    records = [
        (
            r["topic"],
            _unb64(r["key"]),
            _unb64(r["value"]),
            r["partition"],
            [(k, _unb64(v)) for k, v in r["headers"]],
        )
        for r in data["records"]
    ]
    dedup = data["dedup"]
    return records, None if not dedup else (str(dedup[0]), str(dedup[1]))


def _unb64(value: str | None) -> bytes | None:
    return None if value is None else base64.b64decode(value)


def _span(entries: list[_BatchEntry]) -> tuple[int, int]:
    """The first and last offset of a batch's entries."""
    offsets = [e[0] for e in entries]
    return min(offsets), max(offsets)


def _damaged(topic: str, partition: int, exc: Exception) -> None:
    """An entry or batch the state file holds damaged: left out (its messages are processed
    again, and may be sent to Meta a second time), never a reason to stop."""
    log.warning(
        "outbox entries unreadable, left out topic=%s partition=%d: %s",
        topic,
        partition,
        type(exc).__name__,
    )


class Outbox:
    """Meta's answers by input offset, in the state store: written each loop turn, a batch
    per partition (`flush`), read back when a partition is assigned (`load`) for its messages
    processed again (`take`), deleted once the batch's last offset is committed (`committed`,
    with the next write)."""

    def __init__(
        self,
        store: StateStore,
        *,
        window_s: int = 7 * 24 * 3600,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._store = store
        self._window_ms = window_s * 1000
        self._clock_ms = clock_ms
        self._pending: dict[Partition, list[_BatchEntry]] = {}  # not written yet
        # (topic, partition, last offset) committed: their batches are deleted by the next write
        self._committed_ends: list[tuple[str, int, int]] = []
        # the entries of assigned partitions found on disk when assigned, by input offset
        self._known: dict[Partition, dict[int, _Entry]] = {}

    def open(self) -> None:
        """Create the table, take over the rows of an earlier version's, and purge what is
        older than Meta's window: entries of partitions this instance was never assigned
        again (an event that old would be refused anyway)."""
        db = self._store.db
        db.execute(
            "CREATE TABLE IF NOT EXISTS outbox_batches (id INTEGER PRIMARY KEY,"
            " topic TEXT NOT NULL, partition INTEGER NOT NULL, first_offset INTEGER NOT NULL,"
            " last_offset INTEGER NOT NULL, entries BLOB NOT NULL, at INTEGER NOT NULL)"
        )
        db.execute(
            "CREATE INDEX IF NOT EXISTS outbox_batches_last"
            " ON outbox_batches (topic, partition, last_offset)"
        )
        now = self._clock_ms()
        with self._store.transaction():
            self._take_over_earlier_rows(now)
            purged = db.execute("DELETE FROM outbox_batches WHERE at < ?", (now - self._window_ms,))
        if purged.rowcount:
            log.info("outbox batches older than the event window purged count=%d", purged.rowcount)

    def _take_over_earlier_rows(self, now: int) -> None:
        """The per-entry table of earlier versions, its rows as batches of one (an entry of a
        version that kept no time counts as new)."""
        db = self._store.db
        if not db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'"
        ).fetchone():
            return
        columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
        if "at" in columns:
            rows = db.execute("SELECT topic, partition, offset, entry, at FROM outbox")
        else:
            rows = db.execute("SELECT topic, partition, offset, entry, ? FROM outbox", (now,))
        batches = []
        for topic, partition, offset, raw, written_at in rows:
            try:
                records, dedup = _earlier_entry(bytes(raw))
            except (msgspec.DecodeError, ValueError, KeyError, TypeError) as exc:
                _damaged(topic, partition, exc)
                continue
            entries = _ENCODER.encode([(offset, records, dedup)])
            batches.append((topic, partition, offset, offset, entries, written_at))
        self._insert(batches)
        db.execute("DROP TABLE outbox")

    def load(self, topic: str, partition: int, committed: int) -> None:
        """Remember which offsets of a newly assigned partition have an entry; drop the batches
        before the committed offset (another instance finished them)."""
        with contextlib.suppress(StateFullError), self._store.transaction(adds=False):
            self._store.db.execute(
                "DELETE FROM outbox_batches WHERE topic = ? AND partition = ? AND last_offset < ?",
                (topic, partition, committed),
            )
        known: dict[int, _Entry] = {}
        for _, entries in self._batches(topic, partition, committed, None):  # newest first
            for offset, records, dedup in entries:
                if offset >= committed:
                    known.setdefault(offset, (records, dedup))
        self._known[(topic, partition)] = known
        if known:
            log.info(
                "outbox entries to publish topic=%s partition=%d count=%d",
                topic,
                partition,
                len(known),
            )

    def forget(self, topic: str, partition: int) -> None:
        self._known.pop((topic, partition), None)

    def has(self, topic: str, partition: int, offset: int) -> bool:
        known = self._known.get((topic, partition))
        return known is not None and offset in known

    def add(
        self,
        topic: str,
        partition: int,
        offset: int,
        records: Iterable[OutRecord],
        dedup: DedupEntry | None,
    ) -> None:
        """Queue an entry; `flush` writes the queued entries in one transaction."""
        # a StrEnum is its value: str() takes it without the slow `.value` descriptor
        kept = None if dedup is None else (dedup.event_id, str(dedup.status))
        pending = self._pending.get((topic, partition))
        if pending is None:
            pending = self._pending[(topic, partition)] = []
        pending.append((offset, _records(records), kept))

    def flush(self) -> None:
        """Write the queued entries, a batch per partition, and delete the committed ones in
        the same transaction; while the store is full the entries stay queued (a crash then
        loses them: those events would be sent again), until committed or written."""
        if not (self._pending or self._committed_ends) or not self._store.may_write():
            return
        now = self._clock_ms()
        batches = [
            (topic, partition, *_span(entries), _ENCODER.encode(entries), now)
            for (topic, partition), entries in self._pending.items()
            if entries
        ]
        try:
            with self._store.transaction():
                self._delete_committed()
                self._insert(batches)
        except StateFullError:
            # the deletes alone make room; left behind, they are done when the partition is
            # assigned again (`load`)
            with contextlib.suppress(StateFullError), self._store.transaction(adds=False):
                self._delete_committed()
            self._committed_ends.clear()
            return
        self._pending.clear()
        self._committed_ends.clear()

    def _insert(self, batches: list[tuple[str, int, int, int, bytes, int]]) -> None:
        self._store.db.executemany(
            "INSERT INTO outbox_batches (topic, partition, first_offset, last_offset, entries,"
            " at) VALUES (?,?,?,?,?,?)",
            batches,
        )

    def _delete_committed(self) -> None:
        """A batch goes once its last offset is committed; one committed in part stays until
        then (`load` and `take` never look at its committed entries)."""
        self._store.db.executemany(
            "DELETE FROM outbox_batches WHERE topic = ? AND partition = ? AND last_offset <= ?",
            self._committed_ends,
        )

    def _batches(
        self, topic: str, partition: int, low: int, high: int | None
    ) -> list[tuple[int, list[_BatchEntry]]]:
        """The batches of a partition that may hold an offset from `low` to `high` (or any
        above `low`), newest first, with their entries."""
        rows = self._store.db.execute(
            "SELECT id, entries FROM outbox_batches WHERE topic = ? AND partition = ?"
            " AND last_offset >= ? AND first_offset <= ? ORDER BY id DESC",
            (topic, partition, low, high if high is not None else 2**63 - 1),
        ).fetchall()
        batches = []
        for row_id, entries in rows:
            try:
                batches.append((int(row_id), _BATCH_DECODER.decode(entries)))
            except msgspec.DecodeError as exc:
                _damaged(topic, partition, exc)
        return batches

    def take(
        self, topic: str, partition: int, offset: int
    ) -> tuple[list[OutRecord], DedupEntry | None]:
        """The records and dedup entry kept for an input message (`has` said there is one:
        read when its partition was assigned, no I/O now)."""
        kept, dedup = self._known[(topic, partition)][offset]
        source = (topic, partition)
        records = [
            OutRecord(
                record_topic,
                key,
                value,
                source,
                partition=record_partition,
                headers=list(headers) or None,
            )
            for record_topic, key, value, record_partition, headers in kept
        ]
        return records, None if dedup is None else DedupEntry(dedup[0], DedupStatus(dedup[1]))

    def discard(self, sources: list[SourceRef]) -> None:
        """The entries of these messages are published: not needed any more (their batches
        are written again without them)."""
        if not sources:
            return
        done: dict[Partition, set[int]] = {}
        for s in sources:
            done.setdefault(s.topic_partition, set()).add(s.offset)
        for key, offsets in done.items():
            pending = self._pending.get(key)
            if pending:
                self._pending[key] = [e for e in pending if e[0] not in offsets]
            known = self._known.get(key, {})
            for offset in offsets:
                known.pop(offset, None)
        # left behind on a full volume, never recovered: the published answer is found first
        with contextlib.suppress(StateFullError), self._store.transaction(adds=False):
            for (topic, partition), offsets in done.items():
                self._drop_entries(topic, partition, offsets)

    def _drop_entries(self, topic: str, partition: int, offsets: set[int]) -> None:
        db = self._store.db
        for row_id, entries in self._batches(topic, partition, min(offsets), max(offsets)):
            kept = [e for e in entries if e[0] not in offsets]
            if len(kept) == len(entries):
                continue
            if not kept:
                db.execute("DELETE FROM outbox_batches WHERE id = ?", (row_id,))
                continue
            db.execute(
                "UPDATE outbox_batches SET first_offset = ?, last_offset = ?, entries = ?"
                " WHERE id = ?",
                (*_span(kept), _ENCODER.encode(kept), row_id),
            )

    def committed(self, released: dict[Partition, list[int]]) -> None:
        """Those offsets are committed: their entries are not needed any more."""
        # released offsets are a partition's next contiguous run: everything up to the last
        # one is committed, so one range delete per partition does
        ends = [(t, p, max(offsets)) for (t, p), offsets in released.items() if offsets]
        if not ends:
            return
        for topic, partition, end in ends:
            key = (topic, partition)
            pending = self._pending.get(key)
            if pending:
                self._pending[key] = [e for e in pending if e[0] > end]
            known = self._known.get(key)
            if known:
                self._known[key] = {o: e for o, e in known.items() if o > end}
        # deleted with the next entries written (one transaction less per commit); an entry at
        # or before the committed offset is never taken meanwhile, and `load` drops it too
        self._committed_ends += ends
