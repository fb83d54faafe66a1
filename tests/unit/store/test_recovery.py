"""The dedup restore's waiting: a partition stuck behind an open transaction goes on after the
transaction timeout; a broker that does not answer holds every partition. And the retry topic
read into the parked table: the latest record of each event wins, a tombstone ends it."""

from __future__ import annotations

from confluent_kafka import (
    OFFSET_BEGINNING,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from consumer.events.parking import ParkedEvent
from consumer.events.records import ResultStatus, Trigger
from consumer.events.results import ConversionResult, RawMessage, SourceRef
from consumer.events.signals import DayCounts, SignalKey
from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.store.dedup import Dedup
from consumer.store.parked import ParkedTable, encode_parked
from consumer.store.recovery import Recovery
from consumer.store.signal_counts import SignalCounts
from consumer.store.sqlite import StateStore
from tests.factories import NOW_MS, result_record, trigger_record

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

    def seek(self, partition):
        self.positions[partition.partition] = partition.offset

    def pause(self, partitions):
        pass

    def resume(self, partitions):
        pass

    def close(self):
        pass


class World:
    def __init__(self, tmp_path):
        self.now = 1000.0
        store = StateStore(tmp_path).open()
        dedup = Dedup(store, TOPIC, clock_ms=lambda: NOW_MS)
        dedup.create_table()
        self.parked = ParkedTable(store, RETRY, clock_ms=lambda: NOW_MS)
        self.parked.create_table()
        self.consumer = FakeResultsConsumer()
        self.consumer.high = {0: 100, 1: 100}
        self.signals = SignalCounts("signals", "in")
        self.restore = Recovery(
            dedup,
            self.parked,
            AvroCodec(SchemaStore()),
            {},
            {},
            input_topic="in",
            signals=self.signals,
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
        RawMessage(b"k", b"v"),
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
    assert {t for t, _, _ in w.consumer.assigned} == {TOPIC, RETRY, "signals"}  # the changelogs
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


def _result_record(partition, offset, source_topic, source_offset, event_id, processed_at):
    trigger = Trigger.from_avro(trigger_record(event_id=event_id))
    result = ConversionResult(
        SourceRef(source_topic, partition, source_offset),
        ResultStatus.SENT,
        processed_at,
        trigger=trigger,
    )
    value = AvroCodec(SchemaStore()).encode("ConversionResult", result_record(result), TOPIC)
    return Message(topic=TOPIC, partition=partition, offset=offset, value=value)


def test_a_partition_assigned_again_rebuilds_its_parked_rows_from_the_retry_topic(tmp_path):
    """Rows kept from an earlier ownership may have been sent by another owner since, and the
    retry records that parked them compacted away: the retry topic is read from its start, the
    local rows of the partition count no more."""
    w = World(tmp_path)
    w.consumer.messages = [
        _retry_record("a", 0, 0, _parked("a", 0, NOW_MS - 5)),
        _retry_record("b", 0, 1, _parked("b", 0, NOW_MS - 5)),
        _retry_record("c", 1, 0, _parked("c", 1, NOW_MS - 5)),
    ]
    w.consumer.positions = {0: 100, 1: 100}
    w.after(1)
    assert w.parked.parked_among(["a", "b", "c"]) == {"a", "b", "c"}
    w.restore.forget([0])  # partition 0 leaves; another instance sends a and b meanwhile
    w.parked.drop_partitions([0])
    assert w.parked.parked_among(["a", "b", "c"]) == {"c"}  # no longer counted here
    w.restore.start({0: 0})  # it comes back
    retry_assigned = {(p, o) for t, p, o in w.consumer.assigned if t == RETRY}
    assert (0, OFFSET_BEGINNING) in retry_assigned  # read from its start
    assert w.parked.stored_offsets() == {1: 1}


def test_the_restore_keeps_only_results_of_the_window_and_of_its_input_topic(tmp_path):
    w = World(tmp_path)
    week_and_a_day_ms = 8 * 86_400_000
    w.consumer.messages = [
        _result_record(0, 0, "in", 3, "fresh", NOW_MS),
        _result_record(0, 1, "in", 4, "stale", NOW_MS - week_and_a_day_ms),
        _result_record(0, 2, "in-before", 5, "other-topic", NOW_MS),
    ]
    w.consumer.positions = {0: 100, 1: 100}
    w.after(1)
    dedup = w.restore._dedup
    assert [dedup.seen(e) for e in ("fresh", "stale", "other-topic")] == ["SENT", None, "SENT"]
    rows = dedup._store.db.execute("SELECT COUNT(*) FROM dedup_ids").fetchone()[0]
    assert rows == 2  # the stale one never reached the disk
    assert w.restore.already_resolved(0, 3, "fresh")
    assert w.restore.already_resolved(0, 4, None)  # undecodable: resolved by offset alone
    assert not w.restore.already_resolved(0, 5, None)  # a result of another input topic
    # the input topic was deleted and created again: another message at offset 3
    assert not w.restore.already_resolved(0, 3, "new-message")


def test_the_signals_topic_is_read_back_into_the_counts_from_its_start(tmp_path):
    """The latest record of a key counts, a tombstone removes it; a partition assigned again
    is read back from its start, not added to what was there."""
    w = World(tmp_path)
    lead = SignalKey(0, "ds-1", "LeadSubmitted", "2026-12-04")
    buy = SignalKey(0, "ds-1", "Purchase", "2026-12-04")
    other = SignalKey(1, "ds-2", "Purchase", "2026-12-04")

    def record(key, sent, offset):
        value = None if sent is None else DayCounts(sent=sent).encode(key)
        return Message(
            topic="signals", partition=key.partition, offset=offset, key=key.encode(), value=value
        )

    w.consumer.messages = [
        record(lead, 3, 0),
        record(buy, 1, 1),
        record(lead, 5, 2),  # superseded the first
        record(buy, None, 3),  # a day past the retention
        record(other, 2, 0),
        Message(topic="signals", partition=1, offset=1, key=b"not a key", value=b"{}"),
    ]
    w.restore.step()
    assert [getattr(w.signals.get(k), "sent", None) for k in (lead, buy, other)] == [5, None, 2]
    assert w.signals.undecodable == 1
    assert w.signals.read_offsets == {0: 4, 1: 2}
    w.restore.start({0: 0})  # partition 0 comes back: read again from its start
    assert w.signals.get(lead) is None
    assert getattr(w.signals.get(other), "sent", None) == 2
    assert ("signals", 0, OFFSET_BEGINNING) in w.consumer.assigned
