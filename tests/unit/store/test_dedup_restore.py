"""The dedup restore's waiting: a partition stuck behind an open transaction goes on after the
transaction timeout; a broker that does not answer holds every partition. And the retry topic
read into the parked table: the latest record of each event wins, a tombstone ends it."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from consumer.events.parking import ParkedEvent
from consumer.events.results import DeadLetter, SourceRef
from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.store.dedup import Dedup
from consumer.store.dedup_restore import DedupRestore
from consumer.store.parked import ParkedTable, encode_parked
from consumer.store.sqlite import StateStore
from tests.factories import NOW_MS

TOPIC = "results"
RETRY = "retry"


class FakeResultsConsumer:
    """Positions that the test moves; high watermarks, or a broker that does not answer."""

    def __init__(self) -> None:
        self.positions: dict[int, int] = {}
        self.high: dict[int, int] = {}
        self.broker_away = False
        self.messages: list[Message] = []
        self.assigned: list[tuple[str, int, int]] = []

    def assign(self, partitions):
        self.assigned = [(tp.topic, tp.partition, tp.offset) for tp in partitions]
        for tp in partitions:
            self.positions.setdefault(tp.partition, -1001)

    def consume(self, num_messages=1, timeout=-1):
        msgs, self.messages = self.messages, []
        return msgs

    def position(self, partitions):
        return [
            TopicPartition(tp.topic, tp.partition, self.positions[tp.partition])
            for tp in partitions
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
        store = StateStore(tmp_path).open()
        dedup = Dedup(store, TOPIC)
        dedup.create_table()
        self.parked = ParkedTable(store, RETRY, clock_ms=lambda: NOW_MS)
        self.parked.create_table()
        self.consumer = FakeResultsConsumer()
        self.consumer.high = {0: 100, 1: 100}
        self.restore = DedupRestore(
            dedup,
            self.parked,
            AvroCodec(SchemaStore()),
            {},
            {},
            input_topic="in",
            transaction_timeout_s=60,
            clock=lambda: self.now,
        )
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


def _parked(event_id, partition, due_at):
    return ParkedEvent(
        event_id,
        "ds-1",
        SourceRef("in", partition, 7),
        DeadLetter(b"k", b"v"),
        attempts=3,
        parkings=1,
        first_parked_at=NOW_MS - 1000,
        parked_at=NOW_MS - 1000,
        due_at=due_at,
    )


def _retry_record(event_id, partition, offset, parked):
    value = None if parked is None else encode_parked(parked)
    return Message(
        topic=RETRY, partition=partition, offset=offset, key=event_id.encode(), value=value
    )


def test_the_retry_topic_is_read_into_the_parked_table(tmp_path):
    w = World(tmp_path)
    assert {t for t, _, _ in w.consumer.assigned} == {TOPIC, RETRY}  # both changelogs
    w.consumer.messages = [
        _retry_record("a", 0, 0, _parked("a", 0, NOW_MS - 5)),
        _retry_record("b", 0, 1, _parked("b", 0, NOW_MS - 5)),
        _retry_record("a", 0, 2, _parked("a", 0, NOW_MS + 60_000)),  # parked again, later
        _retry_record("b", 0, 3, None),  # resolved: its parking ends
        _retry_record("c", 1, 0, _parked("c", 1, NOW_MS - 5)),
    ]
    w.consumer.positions = {0: 100, 1: 100}
    assert sorted(w.after(1)) == [0, 1]
    assert w.parked.parked_among(["a", "b", "c"]) == {"a", "c"}
    assert w.parked.due({0, 1}, limit=10) == [encode_parked(_parked("c", 1, NOW_MS - 5))]
    assert w.parked.stored_offsets() == {0: 4, 1: 1}
