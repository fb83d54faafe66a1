"""Topics read without a consumer group: the consumer's settings, and a whole topic read from
its beginning to its end.

`read_to_end` assigns every partition of a topic from its beginning and reads until each
partition's position reaches the end the broker gave when the read began. It compares
positions, not the offsets of the messages read: compaction and transaction markers leave
gaps, and the last offset of a partition may be a marker that is never delivered. Only
committed records are read (`read_committed`); one that a transaction still holds open keeps
its partition short of the end until the transaction ends, so a read in which no partition moves
for `stall_s` stops with an error naming them instead of waiting for ever.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from consumer.errors import BrokerUnavailableError, CapiConsumerError
from consumer.kafka.clients import ALL_BROKERS_DOWN, READ_AHEAD

__all__ = ["EndReader", "read_to_end", "reader_config"]

_UNKNOWN_TOPIC = frozenset(
    {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC}  # noqa: SLF001
)
_ANSWER_S = 10.0  # how long the broker has to say what a topic holds


def reader_config(kafka_config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A consumer that reads assigned partitions from stored offsets: no group commits, only
    committed records, the service's read-ahead."""
    return {
        **READ_AHEAD,
        **kafka_config,
        "group.id": f"capi-{name}-{uuid.uuid4()}",
        "enable.auto.commit": "false",
        "enable.auto.offset.store": "false",
        "enable.partition.eof": "false",
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    }


class EndReader(Protocol):
    """The part of a group-less `confluent_kafka.Consumer` a read to the end uses."""

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]: ...

    def assign(self, partitions: list[TopicPartition]) -> None: ...

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]: ...

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]: ...

    def close(self) -> None: ...


def read_to_end(
    kafka_config: Mapping[str, Any],
    topic: str,
    on_record: Callable[[bytes | None, bytes | None], None],
    *,
    stopped: Callable[[], bool] = lambda: False,
    stall_s: float = 75.0,
    consumer: EndReader | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Hand `on_record` the key and value of every committed record of `topic`, partition by
    partition in order, up to the end each partition had when the read began; return early
    when `stopped()`.

    `BrokerUnavailableError` when the broker does not answer; `CapiConsumerError` when the topic
    does not exist or the read stalls (see the module's documentation). `consumer` (tests pass
    a fake) is built from `kafka_config` by default; it is closed either way.
    """
    bootstrap = str(kafka_config.get("bootstrap.servers", "?"))
    reader = consumer if consumer is not None else Consumer(reader_config(kafka_config, "read"))
    try:
        ends = _ends(reader, topic, bootstrap)
        reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        positions: dict[int, int] = {}
        moved = clock()
        while ends and not stopped():
            for msg in reader.consume(num_messages=1000, timeout=0.5):
                error = msg.error()
                if error is None:
                    on_record(msg.key(), msg.value())
                elif error.fatal() or error.code() == ALL_BROKERS_DOWN:
                    raise BrokerUnavailableError(bootstrap, error.str())
            now = clock()
            for tp in reader.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
                if positions.get(tp.partition) != tp.offset:
                    positions[tp.partition] = tp.offset
                    moved = now
            if ends and now - moved > stall_s:
                raise CapiConsumerError(
                    f"{topic}: partitions {sorted(ends)} did not move for {stall_s:.0f} s, short "
                    "of their end (a transaction left open, or a broker that stopped answering)"
                )
    finally:
        reader.close()


def _ends(reader: EndReader, topic: str, bootstrap: str) -> dict[int, int]:
    """Each partition of `topic` with records, and the offset that ends it now."""
    try:
        metadata = reader.list_topics(topic, timeout=_ANSWER_S).topics[topic]
        if metadata.error is None:
            ends = {}
            for partition in sorted(metadata.partitions):
                tp = TopicPartition(topic, partition)
                low, high = reader.get_watermark_offsets(tp, timeout=_ANSWER_S)
                if high > low:
                    ends[partition] = high
            return ends
    except KafkaException as exc:
        error = exc.args[0]
        reason = error.str() if isinstance(error, KafkaError) else str(error)
        raise BrokerUnavailableError(bootstrap, reason) from exc
    if metadata.error.code() in _UNKNOWN_TOPIC:
        raise CapiConsumerError(f"topic {topic} does not exist on {bootstrap}")
    raise CapiConsumerError(f"topic {topic} on {bootstrap}: {metadata.error.str()}")
