"""Records produced in bulk by the tools (the walkthrough, the demo's sample traffic, the
benchmarks), each one confirmed by the broker.

A producer that is not idempotent may repeat or reorder a record it retries, and one whose
deliveries nobody reads loses a record whose retries ran out without a word: a demo or a
benchmark then waits for results of messages that were never written, or counts fewer than it
produced. Here every record is produced idempotently and its delivery report read; what was
not delivered raises `UndeliveredError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from consumer.errors import CapiConsumerError

__all__ = ["BulkRecord", "UndeliveredError", "produce_all"]

# (topic, key, value, partition: None for the producer's partitioner)
BulkRecord = tuple[str, bytes | None, bytes | None, int | None]


class UndeliveredError(CapiConsumerError):
    """Records the broker did not confirm."""


def produce_all(config: Mapping[str, Any], records: Iterable[BulkRecord], flush_s: float) -> int:
    """Produce `records` with a producer of `config` (made idempotent), wait up to `flush_s`
    for the broker to confirm them all, and return how many were produced."""
    producer = Producer({**config, "enable.idempotence": "true"})
    errors: list[str] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err.str())

    count = 0
    for topic, key, value, partition in records:
        options: dict[str, Any] = {"key": key, "value": value, "on_delivery": delivered}
        if partition is not None:
            options["partition"] = partition
        while True:
            try:
                producer.produce(topic, **options)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.05)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    left = producer.flush(flush_s)
    if left or errors:
        reason = errors[0] if errors else f"not confirmed within {flush_s:.0f} s"
        raise UndeliveredError(f"{left + len(errors)} of {count} records not delivered ({reason})")
    return count
