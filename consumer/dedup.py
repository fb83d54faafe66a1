"""Deduplication by `event_id`, and idempotence per input message, across crashes and moves.

Meta does not deduplicate business-messaging events, so the service must not send one twice.
Every processed `event_id` (sent, skipped or failed) counts for `window_s` (7 days).

The results topic is the changelog. Results are written to the partition with the number of
their input partition, in the transaction that commits the input offset, so results partition
`p` holds everything decided for input partition `p`. When a partition is assigned, its results
partition is read (from where the local state store stopped, or from the beginning) before any
of its messages is processed:

- every `event_id` found goes into the local dedup table (`dedup` in the state store);
- every input offset at or after the committed input offset that already has a result is
  remembered: such a message was resolved by an instance that died before committing its
  offset, and whose result is nevertheless visible. On Apache Kafka that cannot happen (the
  new producer's `init_transactions` aborts the dead one's transaction), but some brokers
  (Tansu 0.6) leave a fenced transaction's records visible. Skipping those messages keeps
  exactly one result per input, and no second send, on either.

Entries of the open transaction are kept in memory until it commits; messages in progress are
tracked too, so a second copy arriving before the first is resolved is a duplicate as well.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from .codec import AvroCodec
from .errors import CapiConsumerError, DecodeError
from .state import StateStore
from .tables import reader_config

__all__ = ["Dedup"]

log = logging.getLogger(__name__)

_RESTORE_STALL_S = 30.0
_DUPLICATE = "DUPLICATE"


class Dedup:
    def __init__(
        self,
        store: StateStore,
        results_topic: str,
        codec: AvroCodec,
        kafka_config: Mapping[str, Any],
        admin_config: Mapping[str, Any],
        *,
        window_s: int = 7 * 24 * 3600,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.topic = results_topic
        self._store = store
        self._codec = codec
        self._window_ms = window_s * 1000
        self._clock_ms = clock_ms
        self._config = reader_config(kafka_config, "dedup-restore")
        self._admin_config = dict(admin_config)
        self._consumer: Consumer | None = None
        self._restoring: dict[int, int] = {}  # partition -> end offset to reach
        self._restore_progress = (0.0, -1)
        self._committed_input: dict[int, int] = {}  # partition -> committed input offset
        self._resolved: dict[int, set[int]] = {}  # partition -> input offsets with a result
        self._in_progress: set[str] = set()
        self._uncommitted: dict[str, tuple[str, int, int]] = {}  # id -> (status, at, partition)
        # the table's rows for the ids of the batch being handled, read in one query
        self._looked_up: set[str] = set()
        self._found: dict[str, tuple[str, int]] = {}
        self._result_offsets: dict[int, int] = {}
        self.partitions = 0
        self.records_restored = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def create_table(self) -> None:
        self._store.db.execute(
            "CREATE TABLE IF NOT EXISTS dedup (event_id TEXT PRIMARY KEY, status TEXT NOT NULL,"
            " at INTEGER NOT NULL, partition INTEGER NOT NULL) WITHOUT ROWID"
        )

    def open(self) -> None:
        """Create the local table; reset it when the results topic is new."""
        db = self._store.db
        self.create_table()
        admin = AdminClient(self._admin_config)  # keep it alive until the answer is in
        future = admin.describe_topics(TopicCollection([self.topic]))
        try:
            description = future[self.topic].result()
        except Exception as exc:  # any failure means the topic is unusable
            raise CapiConsumerError(f"results topic {self.topic} is not available: {exc}") from exc
        self.partitions = len(description.partitions)
        topic_id = str(description.topic_id)
        if self._store.topic_id(self.topic) != topic_id:
            with self._store.transaction():
                db.execute("DELETE FROM dedup")
                db.execute("DELETE FROM offsets WHERE topic = ?", (self.topic,))
                db.execute(
                    "INSERT OR REPLACE INTO topics (topic, topic_id) VALUES (?, ?)",
                    (self.topic, topic_id),
                )
        self._consumer = Consumer(self._config)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    # -- restore -----------------------------------------------------------------------------

    def restore(self, committed_input: Mapping[int, int]) -> None:
        """Start reading the results of newly assigned input partitions.

        `committed_input` gives each partition's committed input offset (-1 for none).
        """
        assert self._consumer is not None
        stored = self._store.offsets(self.topic)
        for partition, committed in committed_input.items():
            self._committed_input[partition] = committed
            self._resolved[partition] = set()
            tp = TopicPartition(self.topic, partition)
            low, high = self._consumer.get_watermark_offsets(tp, timeout=30)
            start = stored.get(partition, OFFSET_BEGINNING)
            if start != OFFSET_BEGINNING and start < low:
                start = OFFSET_BEGINNING
            if high > max(start, low, 0):
                self._restoring[partition] = high
        self._reassign(stored)
        self._restore_progress = (time.monotonic(), self.records_restored)

    def _reassign(self, stored: Mapping[int, int]) -> None:
        assert self._consumer is not None
        self._consumer.assign(
            [
                TopicPartition(self.topic, p, stored.get(p, OFFSET_BEGINNING))
                for p in self._restoring
            ]
        )

    def restoring(self) -> set[int]:
        return set(self._restoring)

    def is_restoring(self, partition: int) -> bool:
        return partition in self._restoring

    def restore_step(self, max_records: int = 20_000) -> list[int]:
        """Apply a slice of the results; return the partitions now restored."""
        if not self._restoring or self._consumer is None:
            return []
        msgs = self._consumer.consume(num_messages=max_records, timeout=0.05)
        rows = []
        offsets: dict[int, int] = {}
        for msg in msgs:
            partition, offset = msg.partition(), msg.offset()
            if msg.error() is not None or partition is None or offset is None:
                continue
            offsets[partition] = offset + 1
            row = self._apply(msg.value(), partition)
            if row is not None:
                rows.append(row)
        if msgs:
            self.forget_looked_up()
            with self._store.transaction():
                self._store.db.executemany(
                    "INSERT OR REPLACE INTO dedup (event_id, status, at, partition) "
                    "VALUES (?, ?, ?, ?)",
                    rows,
                )
                for partition, offset in offsets.items():
                    self._store.save_offset(self.topic, partition, offset)
            self.records_restored += len(msgs)
        return self._finished_partitions()

    def _apply(self, value: bytes | None, partition: int) -> tuple[str, str, int, int] | None:
        try:
            result = self._codec.decode(value, "ConversionResult")
        except DecodeError:
            log.warning("undecodable result while restoring partition=%d", partition)
            return None
        source = int(result["source_partition"])
        if source == partition and result["source_offset"] >= self._committed_input.get(
            partition, 0
        ):
            self._resolved.setdefault(partition, set()).add(int(result["source_offset"]))
        event_id = result.get("event_id")
        if not event_id or result.get("reason") == _DUPLICATE:
            return None
        return event_id, result["status"], int(result["processed_at"]), partition

    def _finished_partitions(self) -> list[int]:
        assert self._consumer is not None
        done = []
        for tp in self._consumer.position([TopicPartition(self.topic, p) for p in self._restoring]):
            if tp.offset >= self._restoring[tp.partition]:
                done.append(tp.partition)
        now = time.monotonic()
        last_move, last_count = self._restore_progress
        if self.records_restored != last_count or done:
            self._restore_progress = (now, self.records_restored)
        elif now - last_move > _RESTORE_STALL_S:
            # read_committed stops at the last stable offset: an open transaction of a dead
            # instance holds it until the broker aborts it. What lies behind is uncommitted.
            log.warning("dedup restore stalled partitions=%s; going on with what is committed",
                        sorted(self._restoring))  # fmt: skip
            done = list(self._restoring)
        for partition in done:
            del self._restoring[partition]
        if done:
            self._reassign(self._store.offsets(self.topic))
            log.info("dedup restored partitions=%s records=%d resolved_uncommitted=%d",
                     done, self.records_restored,
                     sum(len(self._resolved.get(p, ())) for p in done))  # fmt: skip
        return done

    def forget(self, partitions: list[int]) -> None:
        """Partitions that are no longer ours: stop restoring them."""
        changed = False
        for partition in partitions:
            self._resolved.pop(partition, None)
            self._committed_input.pop(partition, None)
            if self._restoring.pop(partition, None) is not None:
                changed = True
        if changed:
            self._reassign(self._store.offsets(self.topic))

    # -- the hot path ------------------------------------------------------------------------

    def already_resolved(self, partition: int, offset: int) -> bool:
        """This input message has a visible result already (see the module docstring)."""
        resolved = self._resolved.get(partition)
        return bool(resolved) and offset in resolved  # type: ignore[operator]

    def look_up(self, event_ids: Iterable[str]) -> None:
        """Read the table's rows for a consumed batch in one query per 500 ids; `seen` answers
        from them until `forget_looked_up` (the table changes only at commit and restore)."""
        ids = list(set(event_ids))
        self._looked_up = set(ids)
        self._found = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._store.db.execute(
                f"SELECT event_id, status, at FROM dedup WHERE event_id IN ({marks})",  # noqa: S608 - only placeholders
                chunk,
            )
            for event_id, status, at in rows:
                self._found[event_id] = (str(status), int(at))

    def forget_looked_up(self) -> None:
        self._looked_up = set()
        self._found = {}

    def seen(self, event_id: str) -> str | None:
        """How this event_id was resolved before ("IN_PROGRESS" if it is being processed)."""
        if event_id in self._in_progress:
            return "IN_PROGRESS"
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

    def begin(self, event_id: str) -> None:
        self._in_progress.add(event_id)

    def abandon(self, event_id: str) -> None:
        """The message will be processed again (its partition moved): not a duplicate."""
        self._in_progress.discard(event_id)

    def record(self, event_id: str, status: str, partition: int) -> None:
        """Note the outcome of an event in the open transaction."""
        self._in_progress.discard(event_id)
        self._uncommitted[event_id] = (status, self._clock_ms(), partition)

    def delivered(self, partition: int, offset: int) -> None:
        """A result of the open transaction reached results partition `partition`."""
        if offset + 1 > self._result_offsets.get(partition, -1):
            self._result_offsets[partition] = offset + 1

    def committed(self) -> None:
        """The transaction committed: its entries are durable; keep them locally."""
        if not self._uncommitted and not self._result_offsets:
            return
        self.forget_looked_up()
        rows = [(e, s, at, p) for e, (s, at, p) in self._uncommitted.items()]
        with self._store.transaction():
            self._store.db.executemany(
                "INSERT OR REPLACE INTO dedup (event_id, status, at, partition) "
                "VALUES (?, ?, ?, ?)",
                rows,
            )
            for partition, offset in self._result_offsets.items():
                self._store.save_offset(self.topic, partition, offset)
        self._uncommitted.clear()
        self._result_offsets.clear()

    def drop_uncommitted(self, partitions: set[int]) -> None:
        """The transaction was lost for these partitions: forget what it recorded."""
        for event_id in [e for e, v in self._uncommitted.items() if v[2] in partitions]:
            del self._uncommitted[event_id]

    def purge(self) -> int:
        """Delete entries older than the window; return how many."""
        cutoff = self._clock_ms() - self._window_ms
        self.forget_looked_up()
        with self._store.transaction():
            cursor = self._store.db.execute("DELETE FROM dedup WHERE at < ?", (cutoff,))
        return cursor.rowcount
