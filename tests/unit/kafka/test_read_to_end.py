"""A topic read to the end each partition had when the read began: positions against those
ends, not offsets of messages; a partition held short of its end stops the read with its name;
a missing topic and a broker that does not answer are said as such."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from consumer.errors import BrokerUnavailableError, CapiConsumerError
from consumer.kafka.read_to_end import read_to_end

TOPIC = "signals"
CONFIG = {"bootstrap.servers": "kafka:9092"}


class FakeTopicConsumer:
    """Each partition's records by offset, its watermarks and the position after each record
    (a transaction marker after the last one moves the position past it); `held` partitions
    stop before their last records (a transaction left open); a clock that each `consume`
    moves on half a second."""

    def __init__(self, logs, *, ends=None, held=(), missing=False, away=False):
        self.logs = logs  # partition -> [(offset, key, value)]
        self.ends = ends or {
            p: (records[-1][0] + 1 if records else 0) for p, records in logs.items()
        }
        self.held = set(held)
        self.missing = missing
        self.away = away
        self.now = 0.0
        self.positions = {}
        self.assigned = []
        self.closed = False
        self.errors = []  # error messages to deliver with the next consume

    def list_topics(self, topic=None, timeout=-1):
        if self.away:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Connection refused"))
        error = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART) if self.missing else None
        partitions = {} if self.missing else dict.fromkeys(self.logs)
        return SimpleNamespace(topics={topic: SimpleNamespace(error=error, partitions=partitions)})

    def get_watermark_offsets(self, partition, timeout=-1, cached=False):
        records, end = self.logs[partition.partition], self.ends[partition.partition]
        return (records[0][0] if records else end), end

    def assign(self, partitions):
        self.assigned = [(tp.topic, tp.partition, tp.offset) for tp in partitions]
        self.positions = {tp.partition: -1001 for tp in partitions}

    def consume(self, num_messages=1, timeout=-1):
        self.now += 0.5
        out = [Message(topic=TOPIC, partition=0, error=error) for error in self.errors]
        self.errors = []
        for partition in self.positions:
            records = self.logs[partition]
            if partition in self.held:
                records = records[:-1]
            start = self.positions[partition]
            for offset, key, value in records:
                if offset >= start and len(out) < num_messages:
                    out.append(
                        Message(
                            topic=TOPIC, partition=partition, offset=offset, key=key, value=value
                        )
                    )
                    self.positions[partition] = offset + 1
            if partition not in self.held and self.positions[partition] >= records[-1][0] + 1:
                self.positions[partition] = self.ends[partition]  # past the commit marker
        return out

    def position(self, partitions):
        return [
            TopicPartition(TOPIC, tp.partition, self.positions[tp.partition]) for tp in partitions
        ]

    def close(self):
        self.closed = True


def _read(consumer, **options):
    got = []
    read_to_end(
        CONFIG,
        TOPIC,
        lambda key, value: got.append((key, value)),
        consumer=consumer,
        clock=lambda: consumer.now,
        **options,
    )
    return got


def test_every_partition_is_read_to_its_end_though_its_last_offset_is_a_marker():
    consumer = FakeTopicConsumer(
        {
            0: [(0, b"a", b"1"), (1, b"b", b"2"), (2, b"a", None)],
            1: [(5, b"c", b"3")],  # compacted: starts past 0
            2: [],
        },
        ends={0: 4, 1: 6, 2: 7},  # partition 0 ends with a marker at 3; 2 holds nothing now
    )
    got = _read(consumer)
    assert got == [(b"a", b"1"), (b"b", b"2"), (b"a", None), (b"c", b"3")]
    assert consumer.assigned == [(TOPIC, 0, -2), (TOPIC, 1, -2)]  # from the beginning
    assert consumer.closed


def test_a_partition_held_short_of_its_end_stops_the_read_naming_it():
    consumer = FakeTopicConsumer(
        {0: [(0, b"a", b"1")], 1: [(0, b"b", b"1"), (1, b"b", b"2")]}, held={1}
    )
    with pytest.raises(CapiConsumerError, match=r"signals: partitions \[1\] did not move for 30 s"):
        _read(consumer, stall_s=30)
    assert 30 < consumer.now <= 31.5
    assert consumer.closed


def test_a_stop_ends_the_read_early():
    consumer = FakeTopicConsumer({0: [(0, b"a", b"1"), (1, b"a", b"2")]}, held={0})
    got = _read(consumer, stopped=lambda: consumer.now >= 2)
    assert got == [(b"a", b"1")]
    assert consumer.closed


def test_a_missing_topic_is_named():
    consumer = FakeTopicConsumer({}, missing=True)
    with pytest.raises(CapiConsumerError, match=r"^topic signals does not exist on kafka:9092$"):
        _read(consumer)
    assert consumer.closed


def test_a_broker_that_does_not_answer_is_named():
    with pytest.raises(BrokerUnavailableError, match=r"^broker kafka:9092: does not answer"):
        _read(FakeTopicConsumer({0: [(0, b"a", b"1")]}, away=True))
    consumer = FakeTopicConsumer({0: [(0, b"a", b"1")]}, held={0})
    consumer.errors = [KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down")]
    with pytest.raises(BrokerUnavailableError, match=r"\(1/1 brokers are down\)$"):
        _read(consumer)
    assert consumer.closed
