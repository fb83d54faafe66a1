"""The dedup table rebuilt from the results topic when input partitions are assigned.

Results are written to the partition with the number of their input partition, in the
transaction that commits the input offset, so results partition `p` holds everything decided for
input partition `p`: the results topic is the dedup changelog. When a partition is assigned, its
results partition is read (from where the local state store stopped, or from the beginning)
before any of its messages is processed:

- every `event_id` found goes into the local dedup table;
- every input offset at or after the committed input offset that already has a result is
  remembered and its message skipped. Such results come from an instance that let the
  partition go (revoke, drain) and published Meta's answers ahead of an unresolved offset
  (`Checkpoint.commit`, `letting_go`), or from one that died before committing, on brokers
  that leave a fenced transaction's records visible (Tansu 0.6; Apache Kafka's
  `init_transactions` aborts them). Results published ahead never move the local table's
  position past them (`Dedup.delivered_ahead`), so the same instance's next restore reads
  them too. Skipping those messages keeps exactly one result per input, and no second send.

The retry topic's partition `p` (parked events of input partition `p`) is read too, into the
parked table: a trigger whose `event_id` is parked is a duplicate, and the parked events are
retried from there. So is the signals topic's partition `p`, from its start, into the signal
counts (`signal_counts.py`): the counts go on from what the last committed transaction wrote.

A partition whose reading stops short of its end waits: a broker that does not answer holds
every partition until it answers again. Only a partition stuck behind an open transaction (the
broker answers, the position does not move) for longer than the producers' transaction timeout
(`transaction.timeout.ms`; the broker aborts such a transaction by then) goes on with what is
committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from consumer.errors import (
    CapiConsumerError,
    DecodeError,
    SchemaUnavailableError,
    StateFullError,
)
from consumer.events.results import DedupStatus, Partition, Reason
from consumer.kafka.broker_wait import watermarks
from consumer.kafka.codec import AvroCodec
from consumer.kafka.read_to_end import reader_config
from consumer.kafka.registry_wait import RegistryWait
from consumer.store.dedup import Dedup, DedupRow
from consumer.store.parked import ParkedTable, decode_parked, parked_row
from consumer.store.signal_counts import SignalCounts

__all__ = ["PartitionRecovery", "Recovery", "RestoreConsumer"]

log = logging.getLogger(__name__)

_STALL_MARGIN_S = 10.0


class RestoreConsumer(Protocol):
    """The part of a group-less `confluent_kafka.Consumer` the restore uses."""

    def assign(self, partitions: list[TopicPartition]) -> None: ...

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]: ...

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]: ...

    def seek(self, partition: TopicPartition) -> None: ...

    def pause(self, partitions: list[TopicPartition]) -> None: ...

    def resume(self, partitions: list[TopicPartition]) -> None: ...

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]: ...

    def close(self) -> None: ...


class PartitionRecovery(Protocol):
    """What the service's parts ask of the recovery (tests pass a fake)."""

    partitions: int  # the input partitions it can serve

    def start(self, committed_input: Mapping[int, int]) -> None: ...

    def step(self) -> list[int]: ...

    def restoring(self) -> set[int]: ...

    def is_restoring(self, partition: int) -> bool: ...

    def already_resolved(self, partition: int, offset: int, event_id: str | None) -> bool: ...

    def forget(self, partitions: list[int]) -> None: ...


class Recovery:
    """Reads results and retry partitions into the dedup and parked tables; says which input
    partitions may not be processed yet (`is_restoring`) and which input offsets already have a
    visible result."""

    def __init__(
        self,
        dedup: Dedup,
        parked: ParkedTable,
        codec: AvroCodec,
        kafka_config: Mapping[str, Any],
        admin_config: Mapping[str, Any],
        *,
        signals: SignalCounts,
        input_topic: str,
        transaction_timeout_s: float = 60.0,
        report_wait: Callable[[str], None] = lambda what: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dedup = dedup
        self._report_wait = report_wait  # told what `start` waits for, at each pause
        self._parked = parked
        self._input_topic = input_topic
        self._stall_s = transaction_timeout_s + _STALL_MARGIN_S
        self._clock = clock
        self._topic = dedup.topic
        self._signals = signals
        self._topics = (dedup.topic, parked.topic, signals.topic)
        self._codec = codec
        self._config = reader_config(kafka_config, "dedup-restore")
        self._admin_config = dict(admin_config)
        self._consumer: RestoreConsumer | None = None
        self._restoring: dict[Partition, int] = {}  # (topic, partition) -> end offset to reach
        self._progress: dict[Partition, tuple[float, int]] = {}  # -> when it moved, position
        self._committed_input: dict[int, int] = {}  # partition -> committed input offset
        # partition -> input offsets with a result -> its event_id ("" when it has none)
        self._resolved: dict[int, dict[int, str]] = {}
        self.partitions = 0
        self.records_restored = 0
        self._registry_wait = RegistryWait("dedup restore")

    def open(self) -> None:
        """Learn the results topic's partitions; reset a table when its topic is new."""
        admin = AdminClient(self._admin_config)  # keep it alive until the answer is in
        futures = admin.describe_topics(TopicCollection(list(self._topics)))
        descriptions = {}
        for topic, kind in zip(self._topics, ("results", "retry", "signals"), strict=True):
            try:
                descriptions[topic] = futures[topic].result()
            except Exception as exc:  # any failure means the topic is unusable
                raise CapiConsumerError(f"{kind} topic {topic} is not available: {exc}") from exc
        for table in (self._dedup, self._parked):
            topic_id = str(descriptions[table.topic].topic_id)
            if table.stored_topic_id() != topic_id:
                table.reset(topic_id)
        # the input partitions it can serve: results, parked events and signal counts go to the
        # same number
        self.attach(Consumer(self._config), min(len(d.partitions) for d in descriptions.values()))

    def attach(self, consumer: RestoreConsumer, partitions: int) -> None:
        """Read with `consumer` (group-less, assigned by hand) a topic of `partitions`."""
        self._consumer = consumer
        self.partitions = partitions

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def start(self, committed_input: Mapping[int, int]) -> None:
        """Start reading the results of newly assigned input partitions.

        `committed_input` gives each partition's committed input offset (0 for none).
        """
        assert self._consumer is not None, "open() first"
        # the parked rows of these partitions are rebuilt from the retry topic, from its start:
        # rows kept from an earlier ownership may have been resolved by another owner since
        try:
            self._parked.drop_partitions(list(committed_input))
        except StateFullError:  # read on from where they are: the dedup check guards them
            log.warning("parked rows of an earlier ownership kept: the state store is full")
        self._signals.forget(committed_input)  # read back from the start
        stored = self._stored()
        consumer = self._consumer
        for partition, committed in committed_input.items():
            self._committed_input[partition] = committed
            self._resolved[partition] = {}
            for topic in self._topics:
                tp = TopicPartition(topic, partition)
                low, high = watermarks(consumer, tp, self._report_wait)
                start = stored[topic].get(partition, OFFSET_BEGINNING)
                if start != OFFSET_BEGINNING and start < low:
                    start = OFFSET_BEGINNING
                if high > max(start, low, 0):
                    self._restoring[(topic, partition)] = high
        self._reassign(stored)
        now = self._clock()
        for key in self._restoring:
            self._progress.setdefault(key, (now, -1))

    def _stored(self) -> dict[str, dict[int, int]]:
        """How far the local tables have read each topic's partitions."""
        return {
            self._dedup.topic: self._dedup.stored_offsets(),
            self._parked.topic: self._parked.stored_offsets(),
            self._signals.topic: self._signals.read_offsets,
        }

    def _reassign(self, stored: Mapping[str, Mapping[int, int]]) -> None:
        assert self._consumer is not None, "open() first"
        self._consumer.assign(
            [
                TopicPartition(topic, p, stored[topic].get(p, OFFSET_BEGINNING))
                for topic, p in self._restoring
            ]
        )

    def restoring(self) -> set[int]:
        return {p for _, p in self._restoring}

    def is_restoring(self, partition: int) -> bool:
        # asked for every message: most of the time no partition is restoring
        return bool(self._restoring) and any(p == partition for _, p in self._restoring)

    def already_resolved(self, partition: int, offset: int, event_id: str | None) -> bool:
        """This input message has a visible result already (see the module docstring). A
        result naming another `event_id` than the message's is of another message at the same
        offset (the input topic was deleted and created again): not this one's."""
        resolved = self._resolved.get(partition)
        if not resolved or offset not in resolved:
            return False
        return not (event_id and resolved[offset] and resolved[offset] != event_id)

    def step(self, max_records: int = 20_000) -> list[int]:
        """Apply a slice of the results; return the partitions now restored."""
        if not self._restoring or self._consumer is None or not self._dedup.may_write():
            return []
        self._registry_wait.release_due(self._consumer)
        msgs = self._consumer.consume(num_messages=max_records, timeout=0.05)
        rows: list[DedupRow] = []
        offsets: dict[int, int] = {}
        parked = _ParkedChanges()
        for msg in msgs:
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if msg.error() is not None or partition is None or offset is None:
                continue
            if topic == self._parked.topic:
                parked.add(msg.key(), msg.value(), partition, offset)
                continue
            if topic == self._signals.topic:
                self._signals.restore(msg.key(), msg.value(), partition, offset)
                continue
            if (self._topic, partition) in self._registry_wait:
                continue  # read again from the message that waits
            try:
                row = self._apply(msg.value(), partition)
            except SchemaUnavailableError as exc:
                self._registry_wait.hold(self._consumer, self._topic, partition, offset, str(exc))
                continue
            offsets[partition] = offset + 1
            if row is not None:
                rows.append(row)
        if msgs:
            try:
                self._dedup.store(rows, offsets)
                parked.apply(self._parked)
            except StateFullError:  # read again from what the tables hold, once there is room
                self._reassign(self._stored())
                return []
            self.records_restored += len(msgs)
        return self._finished_partitions()

    def _apply(self, value: bytes | None, partition: int) -> DedupRow | None:
        try:
            result = self._codec.decode(value, "ConversionResult")
        except DecodeError:
            log.warning("undecodable result while restoring partition=%d", partition)
            return None
        event_id = result.get("event_id") or ""
        source, offset = int(result["source_partition"]), int(result["source_offset"])
        if (
            result["source_topic"] == self._input_topic
            and source == partition
            and offset >= self._committed_input.get(partition, 0)
        ):
            self._resolved.setdefault(partition, {})[offset] = event_id
        processed_at = int(result["processed_at"])
        if not event_id or result.get("reason") == Reason.DUPLICATE:
            return None
        if not self._dedup.within_window(processed_at):
            return None  # it counts no more: the table keeps only the window
        return event_id, DedupStatus(result["status"]), processed_at

    def _finished_partitions(self) -> list[int]:
        assert self._consumer is not None, "open() first"
        done: list[Partition] = []
        now = self._clock()
        for tp in self._consumer.position([TopicPartition(t, p) for t, p in self._restoring]):
            key, position = (tp.topic, tp.partition), tp.offset
            if position >= self._restoring[key]:
                done.append(key)
            elif position != self._progress[key][1] or key in self._registry_wait:
                self._progress[key] = (now, position)  # moving, or waiting for the registry
            elif now - self._progress[key][0] > self._stall_s and self._stuck(key):
                # read_committed stops at the last stable offset: an open transaction of a dead
                # instance holds it until the broker aborts it. What lies behind is uncommitted.
                log.warning(
                    "dedup restore stuck behind an open transaction topic=%s "
                    "partition=%d for %.0f s; going on with what is committed",
                    *key,
                    now - self._progress[key][0],
                )
                done.append(key)
        for key in done:
            del self._restoring[key]
            self._progress.pop(key, None)
        restored = sorted({p for _, p in done} - self.restoring())
        if done:
            self._reassign(self._stored())
        if restored:
            log.info(
                "dedup restored partitions=%s records=%d resolved_uncommitted=%d",
                restored,
                self.records_restored,
                sum(len(self._resolved.get(p, ())) for p in restored),
            )
        return restored

    def _stuck(self, key: Partition) -> bool:
        """The broker answers, and there is more to read: an open transaction holds the
        partition (not a broker that is away, which every partition waits for)."""
        assert self._consumer is not None, "open() first"
        try:
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(*key), timeout=5, cached=False
            )
        except KafkaException as exc:
            log.info("dedup restore waits for the broker topic=%s partition=%d: %s", *key, exc)
            self._progress[key] = (self._clock(), self._progress[key][1])
            return False
        return bool(high > self._progress[key][1])

    def forget(self, partitions: list[int]) -> None:
        """Partitions that are no longer ours: stop restoring them."""
        changed = False
        for partition in partitions:
            self._resolved.pop(partition, None)
            self._committed_input.pop(partition, None)
            self._registry_wait.forget([(self._topic, partition)])
            for key in [(t, partition) for t in self._topics]:
                self._progress.pop(key, None)
                if self._restoring.pop(key, None) is not None:
                    changed = True
        if changed:
            self._reassign(self._stored())


class _ParkedChanges:
    """A slice of the retry topic read by the restore: the latest record of each key wins."""

    def __init__(self) -> None:
        self._latest: dict[str, tuple[int, bytes | None]] = {}
        self.offsets: dict[int, int] = {}

    def add(self, key: bytes | None, value: bytes | None, partition: int, offset: int) -> None:
        self.offsets[partition] = offset + 1
        if key:
            self._latest[key.decode("utf-8", "replace")] = (partition, value)

    def apply(self, table: ParkedTable) -> None:
        if not self.offsets:
            return  # nothing of the retry topic in this slice
        rows, ended = [], []
        for event_id, (partition, value) in self._latest.items():
            if value is None:
                ended.append(event_id)
                continue
            try:
                parked = decode_parked(value)
            except DecodeError:
                log.warning("undecodable parked event while restoring partition=%d", partition)
                continue
            rows.append(parked_row(parked, value))
        table.apply(rows, ended, self.offsets)
