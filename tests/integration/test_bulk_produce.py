"""`produce_all` on a real broker: every record where it was sent, once; and a broker that
confirms nothing is an error, not a silent loss."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from consumer.kafka.bulk import UndeliveredError, produce_all
from consumer.settings import Topics
from consumer.tools.embedded_broker import free_port

pytestmark = pytest.mark.integration


def test_every_record_lands_once_on_its_partition(kafka_bootstrap: str, topics: Topics):
    records = [(topics.triggered, b"k%d" % i, b"v%d" % i, i % 3) for i in range(2_500)]
    produced = produce_all({"bootstrap.servers": kafka_bootstrap}, records, 60)
    assert produced == 2_500
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"bulk-check-{topics.triggered}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topics.triggered, p, OFFSET_BEGINNING) for p in range(3)])
    read: list[tuple[bytes | None, int | None]] = []
    deadline = time.monotonic() + 60
    try:
        while len(read) < len(records) and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error() is None:
                    read.append((msg.key(), msg.partition()))
    finally:
        consumer.close()
    assert sorted(read) == sorted((key, partition) for _, key, _, partition in records)


def test_records_no_broker_confirms_raise_with_how_many():
    config = {
        "bootstrap.servers": f"127.0.0.1:{free_port()}",  # nothing listens there
        "message.timeout.ms": "1000",
        "log_level": "0",
    }
    records = [("nowhere", b"k", b"v", None)] * 3
    with pytest.raises(UndeliveredError, match="3 of 3 records not delivered"):
        produce_all(config, records, 30)
