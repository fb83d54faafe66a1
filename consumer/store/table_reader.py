"""Reference tables fed from compacted topics, kept in the local state store.

A `Table` holds the latest value per key of one compacted topic; a tombstone (null value)
deletes the key. Values are stored decoded (as JSON), so a lookup is one indexed read and one
JSON parse. A `TableReader` reads the tables' topics without a consumer group: `bootstrap()`
resumes from the offsets stored with the rows (or from the beginning with an empty state, a
new topic id, or offsets the topic no longer has) and returns once every partition has reached
the high watermark seen at start; `poll()` applies live updates afterwards. Rows and offsets
are written in one transaction per batch of records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from consumer.errors import (
    CapiConsumerError,
    DecodeError,
    SchemaUnavailableError,
    StateFullError,
)
from consumer.kafka.broker_wait import watermarks
from consumer.kafka.clients import PARTITION_EOF
from consumer.kafka.read_to_end import reader_config
from consumer.kafka.registry_wait import RegistryWait
from consumer.store.sqlite import KeyValue, StateStore

__all__ = [
    "BootstrapTimeout",
    "Table",
    "TableReader",
    "TablesFeed",
]

log = logging.getLogger(__name__)

V = TypeVar("V")


class BootstrapTimeout(CapiConsumerError):
    """A table topic is missing, or a command's tables did not catch up in time."""


# how often a bootstrap that waits says so
_REPORT_EVERY_S = 10.0


_UNKNOWN: Any = object()


class Table(Generic[V]):
    """The latest value per key of one compacted topic.

    `decode` turns the message bytes into a plain dict (stored); `build` turns that dict into
    the typed record `get` returns. `cache_size` keeps that many built records in memory
    (and keys known absent); `prefetch` fills it with a batch's keys in one query.
    """

    def __init__(
        self,
        name: str,
        topic: str,
        decode: Callable[[bytes], dict[str, Any]],
        build: Callable[[dict[str, Any]], V],
        *,
        cache_size: int = 0,
    ) -> None:
        self.name = name
        self.topic = topic
        self._decode = decode
        self._build = build
        self._cache_size = cache_size
        self._cache: dict[str, V | None] = {}
        self._kv: KeyValue | None = None
        self.errors = 0

    def attach(self, store: StateStore) -> None:
        self._kv = store.table(self.name)

    @property
    def kv(self) -> KeyValue:
        if self._kv is None:
            raise RuntimeError(f"table {self.name} is not attached to a state store")
        return self._kv

    def __len__(self) -> int:
        return self.kv.count()

    def get(self, key: str) -> V | None:
        cached = self._cache.get(key, _UNKNOWN)
        if cached is not _UNKNOWN:
            return cached  # a record, or None: known absent
        record = self._record(self.kv.get(key))
        if self._cache_size:
            # absent keys are kept too (anonymous contacts come back); `apply` evicts either
            self._make_room(1)
            self._cache[key] = record
        return record

    def prefetch(self, keys: Iterable[str]) -> None:
        """Look the keys not cached yet up in one query, so that `get` finds them in memory (a
        consumed batch's contacts, before its events are enriched one by one)."""
        if not self._cache_size:
            return
        missing = list({key for key in keys if key not in self._cache})[: self._cache_size]
        if not missing:
            return
        self._make_room(len(missing))
        found = self.kv.get_many(missing)
        for key in missing:
            self._cache[key] = self._record(found.get(key))

    def _make_room(self, keys: int) -> None:
        """The cache emptied when `keys` more would not fit (the next lookups fill it again)."""
        if len(self._cache) + keys > self._cache_size:
            self._cache.clear()

    def _record(self, stored: bytes | None) -> V | None:
        return None if stored is None else self._build(orjson.loads(stored))

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one record of the topic (inside the reader's transaction)."""
        if key is None:
            self.errors += 1
            log.warning("table record without a key table=%s", self.name)
            return
        text_key = key.decode("utf-8", errors="replace")
        self._cache.pop(text_key, None)
        if value is None:
            self.kv.delete(text_key)
            return
        try:
            data = self._decode(value)
            self._build(data)  # refuse what could not be used later
        except (DecodeError, KeyError, ValueError, TypeError) as exc:
            self.errors += 1
            log.warning(
                "undecodable table record table=%s key_len=%d error=%s",
                self.name,
                len(text_key),
                exc,
            )
            return
        self.kv.put(text_key, orjson.dumps(data))

    def reset(self) -> None:
        self._cache.clear()


class TablesFeed(Protocol):
    """What the loop asks of the reference tables' reader each turn."""

    @property
    def tables(self) -> list[Table[Any]]: ...

    def poll(self, max_messages: int = 1000) -> int: ...

    def lag(self) -> dict[str, int]: ...


class TableReader:
    """Reads the tables' topics into the state store; one librdkafka consumer for all."""

    def __init__(
        self,
        tables: list[Table[Any]],
        kafka_config: Mapping[str, Any],
        store: StateStore,
        *,
        admin_config: Mapping[str, Any] | None = None,
    ) -> None:
        self._tables = {t.topic: t for t in tables}
        self._store = store
        self._config = reader_config(kafka_config, "tables")
        self._admin_config = dict(
            admin_config or {"bootstrap.servers": kafka_config["bootstrap.servers"]}
        )
        self._consumer: Consumer | None = None
        self._assignment: list[TopicPartition] = []
        self.records_read = 0
        self.bootstrap_seconds = 0.0
        self._registry_wait = RegistryWait("table reader")

    @property
    def tables(self) -> list[Table[Any]]:
        return list(self._tables.values())

    def bootstrap(
        self,
        timeout_s: float | None = None,
        report: Callable[[str], None] = lambda what: None,
    ) -> float:
        """Catch every table up with its topic; return the seconds it took. The service waits
        as long as it takes (a registry or broker away is waited for: `report` hears what is
        awaited every `_REPORT_EVERY_S`); a command passes `timeout_s`."""
        started = time.monotonic()
        for table in self._tables.values():
            table.attach(self._store)
        if self._consumer is not None:  # a bootstrap that stopped short, begun again
            self._consumer.close()
            self._assignment = []
        consumer = self._consumer = Consumer(self._config)
        targets = self._targets(consumer, report)
        consumer.assign(self._assignment)
        deadline = None if timeout_s is None else started + timeout_s
        report_at = started + _REPORT_EVERY_S
        while targets:
            if not self._store.may_write():  # a full store: waited for, not counted
                time.sleep(0.1)
                if deadline is not None:
                    deadline += 0.1
                continue
            now = time.monotonic()
            if deadline is not None and now > deadline:
                raise BootstrapTimeout(f"tables not caught up after {timeout_s:.0f}s")
            if now >= report_at:
                report_at = now + _REPORT_EVERY_S
                self._report_catching_up(targets, report)
            self._registry_wait.release_due(consumer)
            self._apply(consumer.consume(num_messages=10_000, timeout=0.5))
            # Positions, not message offsets: compaction and transaction markers leave gaps.
            for tp in consumer.position([TopicPartition(t, p) for t, p in targets]):
                if tp.offset >= targets[(tp.topic, tp.partition)]:
                    del targets[(tp.topic, tp.partition)]
        self.bootstrap_seconds = time.monotonic() - started
        log.info(
            "tables bootstrapped seconds=%.2f records_read=%d %s",
            self.bootstrap_seconds,
            self.records_read,
            " ".join(f"{t.name}={len(t)}" for t in self._tables.values()),
        )
        return self.bootstrap_seconds

    def _targets(
        self, consumer: Consumer, report: Callable[[str], None]
    ) -> dict[tuple[str, int], int]:
        """Where each partition starts (into the assignment) and the high watermark it must
        reach, for the partitions with something to read."""
        admin = AdminClient(self._admin_config)
        descriptions = admin.describe_topics(TopicCollection(list(self._tables)))
        targets: dict[tuple[str, int], int] = {}
        for topic, future in descriptions.items():
            try:
                description = future.result()
            except Exception as exc:
                raise BootstrapTimeout(f"table topic {topic} is not available: {exc}") from exc
            partitions = [p.id for p in description.partitions]
            starts = self._starts(topic, str(description.topic_id), partitions, consumer, report)
            for partition, start in starts.items():
                self._assignment.append(TopicPartition(topic, partition, start))
                tp = TopicPartition(topic, partition)
                _, high = watermarks(consumer, tp, report)
                if high > max(start, 0):
                    targets[(topic, partition)] = high
        return targets

    def _report_catching_up(
        self, targets: Mapping[tuple[str, int], int], report: Callable[[str], None]
    ) -> None:
        waiting = [key for key in targets if key in self._registry_wait]
        what = f"the reference tables to catch up: {len(targets)} partitions to go"
        if waiting:
            what += f", {len(waiting)} of them waiting for the schema registry"
        log.info("waiting: %s", what)
        report(what)

    def _starts(
        self,
        topic: str,
        topic_id: str,
        partitions: list[int],
        consumer: Consumer,
        report: Callable[[str], None],
    ) -> dict[int, int]:
        """Where to start each partition: stored offsets, or the beginning after a reset."""
        table = self._tables[topic]
        stored = self._store.offsets(topic)
        reason = None
        if self._store.topic_id(topic) != topic_id:
            reason = "new topic id" if self._store.topic_id(topic) else "empty state"
        else:
            for partition in partitions:
                tp = TopicPartition(topic, partition)
                low, _ = watermarks(consumer, tp, report)
                if stored.get(partition, 0) < low:
                    reason = f"partition {partition} starts at {low}, past the stored offset"
        if reason is not None:
            log.info("table reset table=%s reason=%s", table.name, reason)
            with self._store.transaction():
                table.kv.clear()
                self._store.reset_topic(topic, topic_id)
            table.reset()
            stored = {}
        return {p: stored.get(p, OFFSET_BEGINNING) for p in partitions}

    def poll(self, max_messages: int = 1000) -> int:
        """Apply what arrived since the last call without waiting; return how many."""
        if self._consumer is None or not self._store.may_write():
            return 0
        self._registry_wait.release_due(self._consumer)
        msgs = self._consumer.consume(num_messages=max_messages, timeout=0)
        self._apply(msgs)
        return len(msgs)

    def _apply(self, msgs: list[Any]) -> None:
        """Apply a slice in one transaction; on a full store, read it again later."""
        if not msgs:
            return
        try:
            self._apply_in_transaction(msgs)
        except StateFullError:
            assert self._consumer is not None
            first: dict[tuple[str, int], int] = {}
            for msg in msgs:
                if msg.error() is None:
                    first.setdefault((msg.topic(), msg.partition()), msg.offset())
            for (topic, partition), offset in first.items():
                self._consumer.seek(TopicPartition(topic, partition, offset))
            for table in self._tables.values():
                table.reset()
                table.kv.recount()

    def _apply_in_transaction(self, msgs: list[Any]) -> None:
        next_offsets: dict[tuple[str, int], int] = {}
        with self._store.transaction():
            for msg in msgs:
                error = msg.error()
                if error is not None:
                    if error.code() != PARTITION_EOF:
                        log.warning("table consumer error topic=%s error=%s", msg.topic(), error)
                    continue
                topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                if (topic, partition) in self._registry_wait:
                    continue  # read again from the message that waits
                try:
                    self._tables[topic].apply(msg.key(), msg.value())
                except SchemaUnavailableError as exc:
                    assert self._consumer is not None
                    self._registry_wait.hold(self._consumer, topic, partition, offset, str(exc))
                    continue
                next_offsets[(topic, partition)] = offset + 1
            for (topic, partition), offset in next_offsets.items():
                self._store.save_offset(topic, partition, offset)
        self.records_read += len(msgs)

    def lag(self) -> dict[str, int]:
        """Records behind the last known high watermark, per table."""
        if self._consumer is None:
            return {}
        lags = dict.fromkeys((t.name for t in self._tables.values()), 0)
        positions = self._consumer.position(
            [TopicPartition(tp.topic, tp.partition) for tp in self._assignment]
        )
        for tp in positions:
            _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if tp.offset >= 0 and high >= 0:
                lags[self._tables[tp.topic].name] += max(0, high - tp.offset)
        return lags

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
