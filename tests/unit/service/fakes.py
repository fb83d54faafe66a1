"""Stand-ins for the Kafka clients and the dedup restore, behind the service's protocols."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import CollectorRegistry

from consumer.kafka.clients import InputConsumer, TransactionalProducer
from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.ops.metrics import Metrics
from consumer.settings import Topics

TOPICS = Topics()
CODEC = AvroCodec(SchemaStore())
IN = TOPICS.triggered


def message(
    offset: int,
    value: bytes | None,
    *,
    partition: int = 0,
    key: bytes = b"c-1",
    headers: list[tuple[str, str | bytes | None]] | None = None,
) -> Message:
    return Message(
        topic=IN, partition=partition, offset=offset, key=key, value=value, headers=headers
    )


def trigger_bytes(record: dict[str, Any]) -> bytes:
    return CODEC.encode("ConversionTriggered", record, IN)


def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


class FakeConsumer(InputConsumer):
    """Records pauses, resumes and seeks; answers `committed` from `committed_offsets` (or
    raises the errors of `fail_committed` first); its group metadata names its `generation`."""

    def __init__(self) -> None:
        self.paused: set[tuple[str, int]] = set()
        self.seeks: list[tuple[str, int, int]] = []
        self.committed_offsets: dict[tuple[str, int], int] = {}
        self.fail_committed: list[KafkaError] = []
        self.generation = 1

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        return []

    def poll(self, timeout: float = -1) -> Message | None:
        """librdkafka's `poll`: one message (or None), as `consume` of one."""
        batch = self.consume(1, timeout)
        return batch[0] if batch else None

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}

    def seek(self, partition: TopicPartition) -> None:
        self.seeks.append((partition.topic, partition.partition, partition.offset))

    def committed(
        self, partitions: list[TopicPartition], timeout: float = -1
    ) -> list[TopicPartition]:
        if self.fail_committed:
            raise KafkaException(self.fail_committed.pop(0))
        offsets = self.committed_offsets
        return [
            TopicPartition(tp.topic, tp.partition, offsets.get((tp.topic, tp.partition), -1001))
            for tp in partitions
        ]

    def consumer_group_metadata(self) -> Any:
        return f"group-metadata generation={self.generation}"


@dataclass
class Transaction:
    records: list[tuple[str, int | None, bytes | None]] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)  # the records', in the same order
    offsets: list[tuple[str, int, int]] = field(default_factory=list)
    state: str = "open"


class FakeProducer(TransactionalProducer):
    """A transactional producer in memory: `transactions` lists every transaction begun, with
    its records and offsets and whether it committed; `fail_commits` (`fail_offsets`) makes the
    next commits (offsets sent) raise those errors."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.transactions: list[Transaction] = []
        self.fail_commits: list[KafkaError] = []
        self.fail_aborts: list[KafkaError] = []
        self.fail_offsets: list[KafkaError] = []
        self.fail_inits: list[KafkaError] = []
        self.offsets_sent = 0  # calls of send_offsets_to_transaction
        self._callbacks: list[tuple[Any, Message]] = []

    @property
    def committed(self) -> list[Transaction]:
        return [t for t in self.transactions if t.state == "committed"]

    def init_transactions(self, timeout: float = -1) -> None:
        if self.fail_inits:
            raise KafkaException(self.fail_inits.pop(0))

    def begin_transaction(self) -> None:
        self.transactions.append(Transaction())

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int = -1,
        callback: Any = None,
        on_delivery: Any = None,
        timestamp: int = 0,
        headers: Any = None,
    ) -> None:
        on_delivery = on_delivery or callback
        txn = self.transactions[-1]
        assert txn.state == "open", "produce outside a transaction"
        txn.records.append((topic, None if partition == -1 else partition, value))
        txn.keys.append(key)
        if on_delivery is not None:
            offset = sum(len(t.records) for t in self.transactions) - 1
            msg = Message(topic=topic, partition=max(partition, 0), offset=offset, value=value)
            self._callbacks.append((on_delivery, msg))

    def poll(self, timeout: float = -1) -> int:
        callbacks, self._callbacks = self._callbacks, []
        for callback, msg in callbacks:
            callback(None, msg)
        return len(callbacks)

    def send_offsets_to_transaction(
        self, positions: list[TopicPartition], group_metadata: Any, timeout: float = -1
    ) -> None:
        self.offsets_sent += 1
        if self.fail_offsets:
            raise KafkaException(self.fail_offsets.pop(0))
        self.transactions[-1].offsets = [(p.topic, p.partition, p.offset) for p in positions]

    def commit_transaction(self, timeout: float = -1) -> None:
        self.poll()
        if self.fail_commits:
            raise KafkaException(self.fail_commits.pop(0))
        self.transactions[-1].state = "committed"

    def abort_transaction(self, timeout: float = -1) -> None:
        if self.fail_aborts:
            raise KafkaException(self.fail_aborts.pop(0))
        self.transactions[-1].state = "aborted"

    def flush(self, timeout: float = -1) -> int:
        return 0


class FakeRestore:
    """The dedup restore's answers, set by the test."""

    def __init__(self, partitions: int = 6) -> None:
        self.partitions = partitions
        self.restoring_partitions: set[int] = set()
        self.resolved: set[tuple[int, int]] = set()
        self.started: list[dict[int, int]] = []
        self.forgotten: list[int] = []
        self.finished_next_step: list[int] = []

    def restoring(self) -> set[int]:
        return set(self.restoring_partitions)

    def is_restoring(self, partition: int) -> bool:
        return partition in self.restoring_partitions

    def already_resolved(self, partition: int, offset: int, event_id: str | None) -> bool:
        return (partition, offset) in self.resolved

    def step(self) -> list[int]:
        done, self.finished_next_step = self.finished_next_step, []
        self.restoring_partitions -= set(done)
        return done

    def start(self, committed_input: Mapping[int, int]) -> None:
        self.started.append(dict(committed_input))

    def forget(self, partitions: list[int]) -> None:
        self.forgotten += partitions
