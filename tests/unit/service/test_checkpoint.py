"""The commit protocol with a fake producer and consumer: what each transaction carries."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError

from consumer.events.policy import Approved
from consumer.events.records import ResultStatus, Trigger
from consumer.events.results import ConversionResult, MetaResponse, RawMessage, Reason, SourceRef
from consumer.events.signals import DayCounts, SignalKey
from consumer.kafka.publisher import Publisher
from consumer.meta.batching import OutgoingEvent
from consumer.meta.dispatch import Outcome, Parking
from consumer.service.checkpoint import Checkpoint
from consumer.service.retry_topic import RetryTopic
from consumer.store.dedup import Dedup
from consumer.store.outbox import Outbox
from consumer.store.parked import ParkedTable, decode_parked
from consumer.store.signal_counts import SignalCounts
from consumer.store.sqlite import StateStore
from tests.factories import NOW_MS, trigger_record
from tests.unit.service.fakes import (
    CODEC,
    IN,
    TOPICS,
    FakeConsumer,
    FakeProducer,
    metrics,
)


class World:
    """A checkpoint over a state folder; `restart()` builds a new one over the same folder."""

    def __init__(self, tmp_path: Path, commit_interval_s: float = 0.0) -> None:
        self.commit_interval_s = commit_interval_s
        self.state = tmp_path / "state"
        self.owned = {(IN, 0), (IN, 1)}
        self.restart()

    def restart(self) -> None:
        store = StateStore(self.state).open()
        self.dedup = Dedup(store, TOPICS.results, clock_ms=lambda: NOW_MS)
        self.dedup.create_table()
        self.parked = ParkedTable(store, TOPICS.retry, clock_ms=lambda: NOW_MS)
        self.parked.create_table()
        self.retry = RetryTopic(self.parked, IN)
        self.outbox = Outbox(store)
        self.outbox.open()
        for _, partition in self.owned:
            self.outbox.load(IN, partition, 0)
        self.producer = FakeProducer()
        self.producers_made = 0
        self.producer_config: dict[str, Any] = {}

        def make(config):
            self.producers_made += 1
            self.producer_config = config
            return self.producer

        self.publisher = publisher = Publisher({}, "txn-1", producer_factory=make)
        publisher.start()
        m = metrics()
        self.checkpoint_consumer = FakeConsumer()
        self.signals = SignalCounts(TOPICS.signals, IN, clock_ms=lambda: NOW_MS)
        self.checkpoint = Checkpoint(
            consumer=self.checkpoint_consumer,
            publisher=publisher,
            outbox=self.outbox,
            dedup=self.dedup,
            retry=self.retry,
            owned=self.owned,
            topics=TOPICS,
            codec=CODEC,
            metrics=m,
            signals=self.signals,
            commit_interval_s=self.commit_interval_s,
            clock_ms=lambda: NOW_MS,
        )

    def results(self, txn_index: int = -1) -> list[tuple[int, str, str | None]]:
        """(source offset, status, reason) of the results in a transaction."""
        out = []
        for topic, _, value in self.producer.transactions[txn_index].records:
            if topic == TOPICS.results:
                r = CODEC.decode(value, "ConversionResult")
                out.append((r["source_offset"], r["status"], r["reason"]))
        return out


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def _skipped(offset: int, partition: int = 0, event_id: str = "") -> ConversionResult:
    trigger = Trigger.from_avro(trigger_record(event_id=event_id or f"e{partition}-{offset}"))
    source = SourceRef(IN, partition, offset)
    return ConversionResult(
        source, ResultStatus.SKIPPED, NOW_MS, Reason.NOT_AD_ATTRIBUTED, "no click id", trigger
    )


def _pending(offset: int, partition: int = 0) -> OutgoingEvent:
    trigger = Trigger.from_avro(trigger_record(event_id=f"e{partition}-{offset}"))
    approved = Approved({"event_id": trigger.event_id}, "LeadSubmitted", ("em",))
    return OutgoingEvent(
        SourceRef(IN, partition, offset), trigger, approved, RawMessage(b"k", b"raw")
    )


SENT = Outcome(ResultStatus.SENT, meta_response=MetaResponse(1, "trace"), attempts=1)


def test_a_commit_is_due_within_the_interval_while_results_are_held(tmp_path):
    cp = World(tmp_path, commit_interval_s=60.0).checkpoint
    assert cp.next_commit_in() is None  # nothing held: no commit to wait for
    cp.consumed(SourceRef(IN, 0, 0))
    cp.resolve(_skipped(0), None)
    assert cp.next_commit_in() == 0  # nothing committed yet: due now
    cp.commit()
    assert cp.next_commit_in() is None
    cp.consumed(SourceRef(IN, 0, 1))
    cp.resolve(_skipped(1), None)
    assert 59 < (cp.next_commit_in() or 0) <= 60  # the interval since the last commit


def test_a_result_waits_for_every_earlier_message_of_its_partition(world):
    cp = world.checkpoint
    for offset in (0, 1):
        cp.consumed(SourceRef(IN, 0, offset))
    cp.resolve(_skipped(1), None)
    cp.commit()
    assert world.producer.transactions == []  # offset 0 is unresolved: nothing may go yet
    assert len(cp) == 2  # what backpressure counts: one unresolved, one result held behind it
    cp.resolve(_skipped(0), None)
    cp.commit()
    [txn] = world.producer.committed
    assert world.results() == [
        (0, "SKIPPED", "NOT_AD_ATTRIBUTED"),
        (1, "SKIPPED", "NOT_AD_ATTRIBUTED"),
    ]
    assert txn.offsets == [(IN, 0, 2)]
    assert world.dedup.seen("e0-1") == "SKIPPED"  # in the table once committed


def test_partitions_advance_independently(world):
    cp = world.checkpoint
    cp.consumed(SourceRef(IN, 0, 5))
    cp.consumed(SourceRef(IN, 1, 8))
    cp.resolve(_skipped(8, partition=1), None)
    cp.commit()
    [txn] = world.producer.committed
    assert txn.offsets == [(IN, 1, 9)]
    assert len(cp) == 1  # partition 0's message is still unresolved


def test_a_dead_letter_goes_with_its_result(world):
    cp = world.checkpoint
    cp.consumed(SourceRef(IN, 0, 0))
    failed = ConversionResult(
        SourceRef(IN, 0, 0), ResultStatus.FAILED, NOW_MS, Reason.UNDECODABLE, "bad"
    )
    cp.resolve(failed, RawMessage(b"key", b"\x00bytes"))
    cp.commit()
    [txn] = world.producer.committed
    assert [(topic, value) for topic, _, value in txn.records][1] == (TOPICS.dlq, b"\x00bytes")
    assert txn.records[0][:2] == (TOPICS.results, 0)  # results go to the input's partition number


def test_meta_answers_are_kept_until_committed_and_recovered_after_a_crash(world):
    cp = world.checkpoint
    for offset in (0, 1):
        cp.consumed(SourceRef(IN, 0, offset))
    cp.answered(_pending(1), SENT)  # offset 0 still out: the answer waits on disk
    cp.turn()
    assert world.producer.transactions == []
    world.restart()  # a crash: the input is read again from offset 0
    assert world.outbox.has(IN, 0, 1)  # on disk, found by the restarted instance
    cp = world.checkpoint
    cp.consumed(SourceRef(IN, 0, 0))
    cp.recover(SourceRef(IN, 0, 1))  # no second send: Meta's answer comes from the outbox
    cp.resolve(_skipped(0), None)
    cp.commit()
    assert world.results() == [(0, "SKIPPED", "NOT_AD_ATTRIBUTED"), (1, "SENT", None)]
    assert world.producer.committed[0].offsets == [(IN, 0, 2)]
    cp.turn()  # the next turn's write deletes the committed entries
    world.outbox.load(IN, 0, 0)
    assert not world.outbox.has(IN, 0, 1)  # committed: the entry is gone from disk


def test_a_commit_refused_because_the_group_moved_on_keeps_everything_until_it_is_redone(world):
    """The offsets refused with a stale generation: Meta's answers stay on disk, the dedup
    entries stay uncommitted, until the consumer has rejoined and the commit is done; then the
    outbox entries go."""
    cp = world.checkpoint
    cp.consumed(SourceRef(IN, 0, 0))
    cp.answered(_pending(0), SENT)
    world.producer.fail_offsets = [
        KafkaError(KafkaError.ILLEGAL_GENERATION, "stale", txn_requires_abort=True)
    ]
    cp.commit()
    assert world.producer.committed == []
    world.outbox.load(IN, 0, 0)
    assert world.outbox.has(IN, 0, 0)  # a crash now: Meta's answer is still found
    assert _dedup_rows(world) == 0  # not durable yet: not in the local table
    cp.commit()  # the consumer has not rejoined yet: nothing more happens
    assert len(world.producer.transactions) == 1
    world.checkpoint_consumer.generation += 1
    cp.commit()
    assert world.results() == [(0, "SENT", None)]
    assert world.producer.committed[0].offsets == [(IN, 0, 1)]
    cp.turn()
    world.outbox.load(IN, 0, 0)
    assert not world.outbox.has(IN, 0, 0)
    assert _dedup_rows(world) == 1


def _dedup_rows(world: World) -> int:
    db = StateStore(world.state).open().db
    return int(db.execute("SELECT count(*) FROM dedup_ids").fetchone()[0])


def test_a_result_of_a_partition_no_longer_ours_is_dropped(world):
    cp = world.checkpoint
    cp.consumed(SourceRef(IN, 1, 0))
    world.dedup.begin("e1-0")
    world.owned.discard((IN, 1))
    assert cp.resolve(_skipped(0, partition=1), None) is False
    cp.commit(force=True)
    assert world.producer.transactions == []
    assert world.dedup.seen("e1-0") is None  # abandoned: the new owner processes it


def test_released_partitions_publish_nothing_held(world):
    cp = world.checkpoint
    for offset in (0, 1):
        cp.consumed(SourceRef(IN, 1, offset))
    cp.resolve(_skipped(1, partition=1), None)
    world.owned.discard((IN, 1))
    cp.release({(IN, 1)})
    assert len(cp) == 0
    cp.commit(force=True)
    assert world.producer.transactions == []


def test_an_answer_arriving_after_its_partition_was_lost_is_kept_for_when_it_comes_back(world):
    cp = world.checkpoint
    cp.consumed(SourceRef(IN, 1, 0))
    world.owned.discard((IN, 1))  # lost while the request was on its way to Meta
    cp.release({(IN, 1)})
    cp.answered(_pending(0, partition=1), SENT)
    cp.turn()
    assert world.producer.transactions == []  # nothing of a partition not ours is published
    world.owned.add((IN, 1))  # assigned to this instance again
    world.restart()
    assert world.outbox.has(IN, 1, 0)  # Meta's answer is published from here, not sent again


def _retry_records(txn):
    return [(partition, value) for topic, partition, value in txn.records if topic == TOPICS.retry]


def _park(world, offset=0, attempts=3):
    """Park the event of input offset `offset` of partition 0; return it as the table has it."""
    cp = world.checkpoint
    cp.consumed(SourceRef(IN, 0, offset))
    cp.answered(_pending(offset), Parking(attempts, "HTTP 503 without a Graph API error", 0.0))
    cp.commit()
    [(partition, value)] = _retry_records(world.producer.committed[-1])
    assert partition == 0  # the input's partition number
    return decode_parked(value)


def test_a_parking_commits_with_the_input_offset_and_holds_nothing_back(world):
    cp = world.checkpoint
    cp.consumed(SourceRef(IN, 0, 0))
    cp.consumed(SourceRef(IN, 0, 1))
    cp.answered(_pending(0), Parking(3, "HTTP 503 without a Graph API error", 0.0))
    cp.resolve(_skipped(1), None)
    cp.commit()
    [txn] = world.producer.committed
    assert txn.offsets == [(IN, 0, 2)]  # the partition moved on past the parked message
    assert world.results() == [(1, "SKIPPED", "NOT_AD_ATTRIBUTED")]  # no result for it yet
    [(_, value)] = _retry_records(txn)
    parked = decode_parked(value)
    assert (parked.event_id, parked.attempts, parked.parkings) == ("e0-0", 3, 1)
    assert parked.source == SourceRef(IN, 0, 0)
    assert parked.received == RawMessage(b"k", b"raw")  # the trigger as received, no token
    assert 48_000 <= parked.due_at - NOW_MS <= 72_000  # a minute, jittered
    assert world.parked.parked_among(["e0-0"]) == {"e0-0"}
    assert world.dedup.seen("e0-0") == "PARKED"  # a copy of it is a duplicate


def test_a_parked_events_result_goes_out_with_the_end_of_its_parking(world):
    parked = _park(world)
    item = replace(_pending(0), parked=parked)
    world.checkpoint.answered(item, SENT)
    world.checkpoint.commit()
    txn = world.producer.committed[-1]
    assert txn.offsets == []  # no input offset waited for it
    assert _retry_records(txn) == [(0, None)]  # the tombstone
    result = CODEC.decode(txn.records[0][2], "ConversionResult")
    assert (result["status"], result["source_offset"], result["attempts"]) == ("SENT", 0, 4)
    assert world.parked.parked_among(["e0-0"]) == set()
    assert world.dedup.seen("e0-0") == "SENT"


def test_a_parked_event_parked_again_waits_longer(world):
    parked = _park(world)
    world.checkpoint.answered(replace(_pending(0), parked=parked), Parking(1, "again", 0.0))
    world.checkpoint.commit()
    [(_, value)] = _retry_records(world.producer.committed[-1])
    again = decode_parked(value)
    assert (again.attempts, again.parkings, again.last_error) == (4, 2, "again")
    assert 240_000 <= again.due_at - NOW_MS <= 360_000  # five minutes, jittered
    assert again.first_parked_at == parked.first_parked_at


def test_parkings_are_not_published_ahead_when_a_partition_is_let_go(world):
    cp = world.checkpoint
    for offset in (0, 1, 2):
        cp.consumed(SourceRef(IN, 0, offset))
    cp.answered(_pending(1), Parking(3, "HTTP 503 without a Graph API error", 0.0))
    cp.resolve(_skipped(2), None)
    cp.commit(force=True, letting_go={(IN, 0)})
    cp.release({(IN, 0)})
    [txn] = world.producer.committed
    assert world.results() == [(2, "SKIPPED", "NOT_AD_ATTRIBUTED")]  # the result went ahead
    assert _retry_records(txn) == []  # the parking did not: the next owner sends it itself
    assert world.dedup.seen("e0-1") is None


def test_nothing_is_parked_for_a_partition_no_longer_ours(world):
    parked = _park(world)
    world.checkpoint.consumed(SourceRef(IN, 0, 1))
    world.checkpoint.release({(IN, 0)})
    world.owned.discard((IN, 0))
    parking = Parking(1, "HTTP 503 without a Graph API error", 0.0)
    world.checkpoint.answered(_pending(1), parking)
    world.checkpoint.answered(replace(_pending(0), parked=parked), parking)
    world.checkpoint.commit()
    assert len(world.checkpoint) == 0  # nothing held for it
    assert len(world.producer.committed) == 1  # the first parking's only: its next owner's now
    assert world.dedup.seen("e0-1") is None


def test_the_bytes_held_count_unresolved_messages_and_held_results(world):
    cp = world.checkpoint
    cp.consumed(SourceRef(IN, 0, 0), size=700)  # on its way to Meta
    cp.consumed(SourceRef(IN, 0, 1))
    assert cp.bytes == 700
    cp.resolve(_skipped(1), None)
    held = cp.bytes - 700
    assert held > 100  # the result held behind offset 0, as it will be produced
    cp.answered(_pending(0), SENT)
    assert held < cp.bytes < 700  # offset 0 resolved: two results held, its input bytes gone
    cp.commit()
    assert cp.bytes == 0
    cp.consumed(SourceRef(IN, 1, 0), size=500)
    cp.release({(IN, 1)})
    assert cp.bytes == 0


def test_a_parked_event_with_a_result_already_ends_with_its_tombstone_alone(world):
    parked = _park(world)
    world.checkpoint.end_parking(parked)
    world.checkpoint.commit()
    txn = world.producer.committed[-1]
    assert [(topic, value) for topic, _, value in txn.records] == [(TOPICS.retry, None)]
    assert world.parked.parked_among(["e0-0"]) == set()


def test_a_partition_let_go_takes_its_parked_rows_with_it(world):
    _park(world)
    assert world.parked.summary([0]) == (1, NOW_MS)
    world.checkpoint.release({(IN, 0)})
    assert world.parked.parked_among(["e0-0"]) == set()
    assert world.parked.summary([0]) == (0, None)
    assert world.parked.stored_offsets() == {}  # read from the retry topic's start next time


def _signal_records(txn):
    return {
        SignalKey.decode(key): DayCounts.decode(value)
        for (topic, _, value), key in zip(txn.records, txn.keys, strict=True)
        if topic == TOPICS.signals and key is not None and value is not None
    }


def test_each_transaction_carries_the_signal_counts_of_its_results(world):
    """The counts commit with the results they count: every key the transaction changed, with
    its value after it."""
    cp = world.checkpoint
    for offset in range(3):
        cp.consumed(SourceRef(IN, 0, offset))
    cp.answered(_pending(0), SENT)
    cp.resolve(_skipped(1), None)
    cp.resolve(_skipped(2), None)
    cp.commit()
    [counts] = _signal_records(world.producer.committed[0]).values()
    assert (counts.sent, counts.skipped) == (1, {"NOT_AD_ATTRIBUTED": 2})
    cp.consumed(SourceRef(IN, 0, 3))
    cp.resolve(_skipped(3), None)
    cp.commit()
    [counts] = _signal_records(world.producer.committed[1]).values()
    assert counts.skipped == {"NOT_AD_ATTRIBUTED": 3}  # the value after, not the difference


def test_signal_counts_of_a_partition_let_go_are_dropped_with_it(world):
    cp = world.checkpoint
    cp.consumed(SourceRef(IN, 1, 0))
    cp.resolve(_skipped(0, partition=1), None)
    cp.commit()
    assert len(world.signals) == 1
    world.owned.discard((IN, 1))
    cp.release({(IN, 1)})
    assert len(world.signals) == 0  # its next owner reads the committed counts back
