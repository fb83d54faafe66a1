"""The parts of librdkafka's clients the service uses, as protocols: the service is written
against these, production passes `confluent_kafka.Consumer` and `Producer`, tests pass fakes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from consumer.errors import BrokerUnavailableError

__all__ = [
    "ALL_BROKERS_DOWN",
    "FENCED",
    "GROUP_MOVED_ON",
    "PARTITION_EOF",
    "READ_AHEAD",
    "InputConsumer",
    "TransactionalProducer",
    "topic_partitions",
]

# librdkafka names its own error codes with a leading `_`
# the error event a consumer reports at the end of a partition
PARTITION_EOF: int = KafkaError._PARTITION_EOF  # noqa: SLF001
# what a client reports when no broker of the cluster answers
ALL_BROKERS_DOWN: int = KafkaError._ALL_BROKERS_DOWN  # noqa: SLF001
# what a producer is told when another one took its transactional id (librdkafka also reports
# a coordinator's own abort of a transaction past its timeout as `_FENCED`: the publisher tells
# the two apart by the broker's error, INVALID_PRODUCER_EPOCH)
FENCED = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED})  # noqa: SLF001
# what a transaction's offsets commit is told when the group has moved on without this member
# (its session expired, or another consumer took its group.instance.id): the offsets can be
# committed only after the consumer has polled and rejoined
GROUP_MOVED_ON = frozenset(
    {KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID, KafkaError.FENCED_INSTANCE_ID}
)


# librdkafka's read-ahead, which a lagging consumer keeps full: 16 MiB and 20,000 messages a
# partition for every consumer of the service (its defaults, 64 MiB and 100,000, are a quarter
# of the memory budget; 16 MiB is still seconds of input at full speed); a CAPI_KAFKA_QUEUED_*
# setting given to the service wins
READ_AHEAD: Mapping[str, str] = {
    "queued.max.messages.kbytes": "16384",
    "queued.min.messages": "20000",
}


class InputConsumer(Protocol):
    """The group member reading the input topic."""

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]: ...

    def poll(self, timeout: float = -1) -> Message | None: ...

    def pause(self, partitions: list[TopicPartition]) -> None: ...

    def resume(self, partitions: list[TopicPartition]) -> None: ...

    def seek(self, partition: TopicPartition) -> None: ...

    def committed(
        self, partitions: list[TopicPartition], timeout: float = -1
    ) -> list[TopicPartition]: ...

    def consumer_group_metadata(self) -> Any: ...


class TransactionalProducer(Protocol):
    """A producer with a `transactional.id`."""

    def init_transactions(self, timeout: float = -1) -> None: ...

    def begin_transaction(self) -> None: ...

    # the binding's own signature, positions included (`callback` is `on_delivery`)
    def produce(  # noqa: PLR0917
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int = -1,
        callback: Any = None,
        on_delivery: Any = None,
        timestamp: int = 0,
        headers: Any = None,
    ) -> None: ...

    def poll(self, timeout: float = -1) -> int: ...

    def send_offsets_to_transaction(
        self, positions: list[TopicPartition], group_metadata: Any, timeout: float = -1
    ) -> None: ...

    def commit_transaction(self, timeout: float = -1) -> None: ...

    def abort_transaction(self, timeout: float = -1) -> None: ...

    def flush(self, timeout: float = -1) -> int: ...


def topic_partitions(admin_config: Mapping[str, Any], timeout_s: float = 5.0) -> dict[str, int]:
    """Partitions of every topic of the cluster: the one way the service and its commands ask
    the broker whether it answers. `BrokerUnavailableError` names it and says why (librdkafka's
    own lines are silenced: the caller says it once)."""
    try:
        metadata = AdminClient({**admin_config, "log_level": "0"}).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        error = exc.args[0]
        reason = error.str() if isinstance(error, KafkaError) else str(error)
        bootstrap = admin_config.get("bootstrap.servers", "?")
        raise BrokerUnavailableError(str(bootstrap), reason) from exc
    return {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}
