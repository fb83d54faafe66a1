"""The dedup restore's waiting: a partition stuck behind an open transaction goes on after the
transaction timeout; a broker that does not answer holds every partition."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.store.dedup import Dedup
from consumer.store.dedup_restore import DedupRestore
from consumer.store.sqlite import StateStore

TOPIC = "results"


class FakeResultsConsumer:
    """Positions that the test moves; high watermarks, or a broker that does not answer."""

    def __init__(self) -> None:
        self.positions: dict[int, int] = {}
        self.high: dict[int, int] = {}
        self.broker_away = False

    def assign(self, partitions):
        for tp in partitions:
            self.positions.setdefault(tp.partition, -1001)

    def consume(self, num_messages=1, timeout=-1):
        return []

    def position(self, partitions):
        return [
            TopicPartition(TOPIC, tp.partition, self.positions[tp.partition]) for tp in partitions
        ]

    def get_watermark_offsets(self, partition, timeout=-1, cached=False):
        if self.broker_away:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "no answer", retriable=True))
        return 0, self.high[partition.partition]

    def close(self):
        pass


class World:
    def __init__(self, tmp_path):
        self.now = 1000.0
        dedup = Dedup(StateStore(tmp_path).open(), TOPIC)
        dedup.create_table()
        self.consumer = FakeResultsConsumer()
        self.consumer.high = {0: 100, 1: 100}
        self.restore = DedupRestore(dedup, AvroCodec(SchemaStore()), {}, {},
                                    transaction_timeout_s=60, clock=lambda: self.now)  # fmt: skip
        self.restore.attach(self.consumer, partitions=2)
        self.restore.start({0: 0, 1: 0})

    def after(self, seconds):
        self.now += seconds
        return self.restore.step()


def test_a_partition_behind_an_open_transaction_goes_on_after_the_transaction_timeout(tmp_path):
    w = World(tmp_path)
    w.consumer.positions = {0: 40, 1: 60}
    assert w.after(1) == []
    w.consumer.positions[1] = 100  # partition 1 reaches its end
    assert w.after(30) == [1]
    # partition 0 has not moved for 60 s: not yet past the transaction timeout and its margin
    assert w.after(30) == []
    assert w.after(11) == [0]
    assert w.restore.restoring() == set()


def test_a_partition_that_moves_is_never_given_up(tmp_path):
    w = World(tmp_path)
    for position in range(10, 100, 10):
        w.consumer.positions = {0: position, 1: position}
        assert w.after(60) == []
    assert w.restore.restoring() == {0, 1}


def test_while_the_broker_does_not_answer_every_partition_waits(tmp_path):
    w = World(tmp_path)
    w.consumer.positions = {0: 40, 1: 60}
    w.after(1)
    w.consumer.broker_away = True
    for _ in range(5):
        assert w.after(120) == []
    assert w.restore.restoring() == {0, 1}
    w.consumer.broker_away = False
    assert w.after(1) == []  # the broker is back: the wait starts over
    assert sorted(w.after(71)) == [0, 1]
