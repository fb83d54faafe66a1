"""Reference tables fed from compacted topics.

A `Table` holds the latest value per key of a compacted topic; a tombstone (null value)
deletes the key. A `TableReader` reads the topic from the beginning, without a consumer group:
`bootstrap()` returns once every partition has reached the high watermark seen at start, and
`poll()` applies live updates afterwards.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from .errors import CapiConsumerError, DecodeError

__all__ = ["BootstrapTimeout", "Table", "TableReader"]

log = logging.getLogger(__name__)

V = TypeVar("V")


class BootstrapTimeout(CapiConsumerError):
    """A table did not catch up with its topic in time."""


class Table(Generic[V]):
    """The latest value per key of one compacted topic."""

    def __init__(self, name: str, topic: str, decode: Callable[[bytes], V]) -> None:
        self.name = name
        self.topic = topic
        self._decode = decode
        self._rows: dict[str, V] = {}
        self.errors = 0

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: str) -> V | None:
        return self._rows.get(key)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            self.errors += 1
            log.warning("table record without a key table=%s", self.name)
            return
        text_key = key.decode("utf-8", errors="replace")
        if value is None:
            self._rows.pop(text_key, None)
            return
        try:
            self._rows[text_key] = self._decode(value)
        except (DecodeError, KeyError, ValueError, TypeError) as exc:
            self.errors += 1
            log.warning("undecodable table record table=%s error=%s", self.name, exc)


class TableReader:
    """Reads tables' topics into them; one librdkafka consumer for all tables."""

    def __init__(self, tables: list[Table[Any]], kafka_config: Mapping[str, Any]) -> None:
        self._tables = {t.topic: t for t in tables}
        self._config = {
            **kafka_config,
            "group.id": f"capi-tables-{uuid.uuid4()}",
            "enable.auto.commit": "false",
            "enable.auto.offset.store": "false",
            "enable.partition.eof": "false",
        }
        self._consumer: Consumer | None = None

    def bootstrap(self, timeout_s: float = 300.0) -> float:
        """Read every table up to its start-time high watermark; return the seconds taken."""
        started = time.monotonic()
        consumer = self._consumer = Consumer(self._config)
        targets: dict[tuple[str, int], int] = {}
        assignment: list[TopicPartition] = []
        for topic in self._tables:
            metadata = consumer.list_topics(topic, timeout=30)
            topic_meta = metadata.topics.get(topic)
            if topic_meta is None or topic_meta.error is not None:
                raise BootstrapTimeout(f"table topic {topic} is not available")
            for partition in topic_meta.partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=30
                )
                if high > low:
                    targets[(topic, partition)] = high
                assignment.append(TopicPartition(topic, partition, OFFSET_BEGINNING))
        consumer.assign(assignment)
        while targets:
            if time.monotonic() - started > timeout_s:
                raise BootstrapTimeout(f"tables not caught up after {timeout_s:.0f}s")
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                self._apply(msg)
            # Positions, not message offsets: compaction and transaction markers leave gaps.
            positions = consumer.position([TopicPartition(t, p) for t, p in targets])
            for tp in positions:
                if tp.offset >= targets[(tp.topic, tp.partition)]:
                    del targets[(tp.topic, tp.partition)]
        took = time.monotonic() - started
        log.info(
            "tables bootstrapped seconds=%.2f %s",
            took,
            " ".join(f"{t.name}={len(t)}" for t in self._tables.values()),
        )
        return took

    def poll(self, max_messages: int = 1000) -> int:
        """Apply what arrived since the last call without waiting; return how many."""
        if self._consumer is None:
            return 0
        msgs = self._consumer.consume(num_messages=max_messages, timeout=0)
        for msg in msgs:
            self._apply(msg)
        return len(msgs)

    def _apply(self, msg: Any) -> None:
        error = msg.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("table consumer error topic=%s error=%s", msg.topic(), error)
            return
        self._tables[msg.topic()].apply(msg.key(), msg.value())

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
