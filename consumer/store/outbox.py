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
from consumer.events.results import DedupEntry, DedupStatus, SourceRef
from consumer.kafka.publisher import OutRecord
from consumer.store.sqlite import StateStore

__all__ = ["Outbox"]

log = logging.getLogger(__name__)


# An entry is MessagePack (msgspec): [records, dedup], a record [topic, key, value, partition,
# headers] with its bytes as bytes. Earlier versions wrote JSON with the bytes in base64; such
# an entry (it starts with "{") is still read, so a state folder left by one loses nothing.
_ENCODER = msgspec.msgpack.Encoder()
_Entry = tuple[
    list[tuple[str, bytes | None, bytes | None, int | None, list[tuple[str, bytes | None]]]],
    tuple[str, str] | None,
]
_DECODER = msgspec.msgpack.Decoder(_Entry)


def _header_bytes(value: str | bytes | None) -> bytes:
    return value if isinstance(value, bytes) else str(value or "").encode()


def _entry(records: Iterable[OutRecord], dedup: DedupEntry | None) -> bytes:
    """The outbox entry that keeps these records and dedup entry."""
    return _ENCODER.encode(
        (
            [
                (
                    r.topic,
                    r.key,
                    r.value,
                    r.partition,
                    [(k, _header_bytes(v)) for k, v in r.headers] if r.headers else [],
                )
                for r in records
            ],
            None if dedup is None else (dedup.event_id, dedup.status.value),
        )
    )


def _read_entry(raw: bytes) -> _Entry:
    """An entry's records and dedup entry, as `_entry` wrote them (or as JSON, by an earlier
    version)."""
    if raw[:1] != b"{":
        return _DECODER.decode(raw)
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


class Outbox:
    """Meta's answers by input offset, in the state store: written each loop turn (`flush`),
    read back for a message processed again (`take`), deleted once committed (`committed`,
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
        self._pending: list[tuple[str, int, int, bytes, int]] = []
        # (topic, partition, last offset) committed: their entries are deleted by the next write
        self._committed_ends: list[tuple[str, int, int]] = []
        self._known: dict[tuple[str, int], set[int]] = {}

    def open(self) -> None:
        """Create the table, and purge what is older than Meta's window: entries of partitions
        this instance was never assigned again (an event that old would be refused anyway)."""
        db = self._store.db
        db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (topic TEXT NOT NULL, partition INTEGER NOT NULL,"
            " offset INTEGER NOT NULL, entry BLOB NOT NULL, at INTEGER NOT NULL DEFAULT 0,"
            " PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID"
        )
        now = self._clock_ms()
        with self._store.transaction():
            columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
            if "at" not in columns:  # a state folder of an earlier version: its entries are new
                db.execute("ALTER TABLE outbox ADD COLUMN at INTEGER NOT NULL DEFAULT 0")
                db.execute("UPDATE outbox SET at = ?", (now,))
            purged = db.execute("DELETE FROM outbox WHERE at < ?", (now - self._window_ms,))
        if purged.rowcount:
            log.info("outbox entries older than the event window purged count=%d", purged.rowcount)

    def load(self, topic: str, partition: int, committed: int) -> None:
        """Remember which offsets of a newly assigned partition have an entry; drop the ones
        before the committed offset (another instance finished them)."""
        with contextlib.suppress(StateFullError), self._store.transaction(adds=False):
            self._store.db.execute(
                "DELETE FROM outbox WHERE topic = ? AND partition = ? AND offset < ?",
                (topic, partition, committed),
            )
        rows = self._store.db.execute(
            "SELECT offset FROM outbox WHERE topic = ? AND partition = ?", (topic, partition)
        ).fetchall()
        self._known[(topic, partition)] = {int(r[0]) for r in rows}
        if rows:
            log.info(
                "outbox entries to publish topic=%s partition=%d count=%d",
                topic,
                partition,
                len(rows),
            )

    def forget(self, topic: str, partition: int) -> None:
        self._known.pop((topic, partition), None)

    def has(self, topic: str, partition: int, offset: int) -> bool:
        known = self._known.get((topic, partition))
        return bool(known) and offset in known  # type: ignore[operator]

    def add(
        self,
        topic: str,
        partition: int,
        offset: int,
        records: Iterable[OutRecord],
        dedup: DedupEntry | None,
    ) -> None:
        """Queue an entry; `flush` writes the queued entries in one transaction."""
        self._pending.append((topic, partition, offset, _entry(records, dedup), self._clock_ms()))

    def flush(self) -> None:
        """Write the queued entries, and delete the committed ones in the same transaction;
        while the store is full the entries stay queued (a crash then loses them: those events
        would be sent again), until committed or written."""
        if not (self._pending or self._committed_ends) or not self._store.may_write():
            return
        try:
            with self._store.transaction():
                self._delete_committed()
                self._store.db.executemany(
                    "INSERT OR REPLACE INTO outbox (topic, partition, offset, entry, at)"
                    " VALUES (?,?,?,?,?)",
                    self._pending,
                )
        except StateFullError:
            # the deletes alone make room; left behind, they are done when the partition is
            # assigned again (`load`)
            with contextlib.suppress(StateFullError), self._store.transaction(adds=False):
                self._delete_committed()
            self._committed_ends.clear()
            return
        self._pending.clear()
        self._committed_ends.clear()

    def _delete_committed(self) -> None:
        self._store.db.executemany(
            "DELETE FROM outbox WHERE topic = ? AND partition = ? AND offset <= ?",
            self._committed_ends,
        )

    def take(
        self, topic: str, partition: int, offset: int
    ) -> tuple[list[OutRecord], DedupEntry | None]:
        """The records and dedup entry kept for an input message."""
        row = self._store.db.execute(
            "SELECT entry FROM outbox WHERE topic = ? AND partition = ? AND offset = ?",
            (topic, partition, offset),
        ).fetchone()
        entries, kept = _read_entry(row[0])
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
            for record_topic, key, value, record_partition, headers in entries
        ]
        dedup = None if kept is None else DedupEntry(kept[0], DedupStatus(kept[1]))
        return records, dedup

    def discard(self, sources: list[SourceRef]) -> None:
        """The entries of these messages are published: not needed any more."""
        if not sources:
            return
        entries = [(s.topic, s.partition, s.offset) for s in sources]
        done = set(entries)
        self._pending = [e for e in self._pending if e[:3] not in done]
        # left behind on a full volume, never recovered: the published answer is found first
        with contextlib.suppress(StateFullError), self._store.transaction(adds=False):
            self._store.db.executemany(
                "DELETE FROM outbox WHERE topic = ? AND partition = ? AND offset = ?", entries
            )
        for topic, partition, offset in entries:
            known = self._known.get((topic, partition))
            if known:
                known.discard(offset)

    def committed(self, released: dict[tuple[str, int], list[int]]) -> None:
        """Those offsets are committed: their entries are not needed any more."""
        # released offsets are a partition's next contiguous run: everything up to the last
        # one is committed, so one range delete per partition does
        ends = [(t, p, max(offsets)) for (t, p), offsets in released.items() if offsets]
        if not ends:
            return
        last = {(t, p): end for t, p, end in ends}
        self._pending = [e for e in self._pending if e[2] > last.get((e[0], e[1]), -1)]
        # deleted with the next entries written (one transaction less per commit); an entry at
        # or before the committed offset is never taken meanwhile, and `load` drops it too
        self._committed_ends += ends
        for topic, partition, end in ends:
            known = self._known.get((topic, partition))
            if known:
                known.difference_update([o for o in known if o <= end])
