"""Rebalances with fake Kafka clients and the real sender over a mock Graph API."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
from confluent_kafka import KafkaError, TopicPartition

from consumer.errors import FatalError
from consumer.events.policy import Approved
from consumer.events.records import Trigger
from consumer.events.results import RawMessage, SourceRef
from consumer.kafka.publisher import Publisher
from consumer.meta.batching import Batcher, BatchKey, OutgoingEvent
from consumer.meta.breaker import CircuitBreaker
from consumer.meta.client import CapiClient, Credentials
from consumer.meta.dispatch import Dispatcher
from consumer.meta.senders import Sender
from consumer.ops.monitor import Monitor
from consumer.service.answers import Answers
from consumer.service.checkpoint import Checkpoint
from consumer.service.flow import FlowControl
from consumer.service.ownership import Ownership
from consumer.service.rebalance import Rebalance
from consumer.service.retry_topic import RetryTopic
from consumer.settings import Secret
from consumer.store.dedup import Dedup
from consumer.store.outbox import Outbox
from consumer.store.parked import ParkedTable
from consumer.store.signal_counts import SignalCounts
from consumer.store.sqlite import StateStore
from tests.factories import NOW_MS, trigger_record
from tests.unit.service.fakes import (
    CODEC,
    IN,
    TOPICS,
    FakeConsumer,
    FakeProducer,
    FakeRestore,
    message,
    metrics,
)

KEY = BatchKey("ds-1", Credentials(Secret("tok")), None)
THROTTLED = BatchKey("ds-throttled", Credentials(Secret("tok")), None)


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.meta_may_answer = threading.Event()
        self.requests = 0
        self.now = 1000.0
        store = StateStore(tmp_path / "state").open()
        self.dedup = Dedup(store, TOPICS.results, clock_ms=lambda: NOW_MS)
        self.dedup.create_table()
        self.parked = ParkedTable(store, TOPICS.retry, clock_ms=lambda: NOW_MS)
        self.parked.create_table()
        self.outbox = Outbox(store)
        self.outbox.open()
        self.consumer = FakeConsumer()
        self.producer = FakeProducer()
        self.restore = FakeRestore(partitions=2)
        self.owned = Ownership()
        m = metrics()
        self.metrics = m
        publisher = Publisher({}, "txn-1", producer_factory=lambda config: self.producer)
        publisher.start()
        self.checkpoint = Checkpoint(
            consumer=self.consumer,
            publisher=publisher,
            outbox=self.outbox,
            dedup=self.dedup,
            retry=RetryTopic(self.parked, IN),
            owned=self.owned,
            topics=TOPICS,
            codec=CODEC,
            metrics=m,
            signals=SignalCounts(TOPICS.signals, IN),
            commit_interval_s=3600,
            clock_ms=lambda: NOW_MS,
        )
        self.breaker = CircuitBreaker()
        self.flow = FlowControl(
            consumer=self.consumer,
            restore=self.restore,
            owned=self.owned,
            max_pending=1000,
            max_pending_bytes=2**30,
            breaker=self.breaker,
            metrics=m,
        )
        client = CapiClient(
            "https://graph.example", "v24.0", transport=httpx.MockTransport(self._meta)
        )
        dispatcher = Dispatcher(
            client, m, retry_deadline_s=3600, retry_inline_s=3600, breaker=self.breaker
        )
        self.sender = Sender(dispatcher, Batcher(10, 0.0), 2)
        self.sender.start()
        self.restricted: list[str] = []
        ready = threading.Event()
        ready.set()
        self.monitor = Monitor(m, IN, ready)
        answers = Answers(sender=self.sender, checkpoint=self.checkpoint, triage=self)
        self.rebalance = Rebalance(
            ownership=self.owned,
            checkpoint=self.checkpoint,
            flow=self.flow,
            sender=self.sender,
            answers=answers,
            restore=self.restore,
            topics=TOPICS,
            drain_timeout_s=10,
            session_timeout_s=6,
            metrics=m,
            monitor=self.monitor,
            clock=lambda: self.now,
        )

    def remember_restricted(self, asset_id: str) -> None:
        self.restricted.append(asset_id)

    def _meta(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if "/ds-throttled/" in request.url.path:
            return httpx.Response(400, json={"error": {"code": 17, "message": "slow down"}})
        assert self.meta_may_answer.wait(10)
        events = orjson.loads(request.content)["data"]
        return httpx.Response(200, json={"events_received": len(events), "fbtrace_id": "F"})

    def assign(self, *partitions: int) -> None:
        self.rebalance.on_assign(self.consumer, [TopicPartition(IN, p) for p in partitions])

    def send(self, partition: int, offset: int, key: BatchKey = KEY) -> None:
        trigger = Trigger.from_avro(trigger_record(event_id=f"e{partition}-{offset}"))
        approved = Approved({"event_id": trigger.event_id}, "LeadSubmitted", ("em",))
        source = SourceRef(IN, partition, offset)
        self.checkpoint.consumed(source)
        self.dedup.begin(trigger.event_id)
        self.sender.add(key, OutgoingEvent(source, trigger, approved, RawMessage(b"k", b"v")))

    def results(self) -> list[tuple[int, int, str]]:
        out = []
        for txn in self.producer.committed:
            for topic, _, value in txn.records:
                if topic == TOPICS.results:
                    r = CODEC.decode(value, "ConversionResult")
                    out.append((r["source_partition"], r["source_offset"], r["status"]))
        return out


@pytest.fixture
def world(tmp_path: Path):
    w = World(tmp_path)
    yield w
    w.meta_may_answer.set()
    w.sender.close()


def test_an_assignment_starts_the_restore_from_the_committed_offsets(world):
    world.consumer.committed_offsets = {(IN, 1): 40}
    world.assign(0, 1)
    assert set(world.owned) == {(IN, 0), (IN, 1)}
    assert world.restore.started == [{0: 0, 1: 40}]  # no committed offset: from the start


def test_an_assignment_waits_for_a_broker_that_does_not_answer_its_committed_offsets(world):
    """A broker away while partitions arrive: the committed offsets are asked again (the wait
    is reported, so the liveness probe knows the loop waits), instead of a traceback."""
    world.consumer.committed_offsets = {(IN, 0): 7}
    world.consumer.fail_committed = [KafkaError(KafkaError._TIMED_OUT, "no answer")]
    world.assign(0)
    assert world.restore.started == [{0: 7}]
    assert world.monitor.ready_problems() == [
        "waiting for the broker's committed offsets of the partitions assigned: no answer"
    ]


def test_an_assignment_while_the_consumer_closes_asks_the_broker_nothing(world):
    """A rebalance that completes while the consumer leaves its group: a closing consumer no
    longer gets its committed offsets, so asking would wait for ever; the partitions are left
    to the next owner, and their revoke right after lets go of nothing."""
    world.assign(0)
    world.rebalance.drain()
    world.rebalance.closing()
    world.consumer.fail_committed = [KafkaError(KafkaError._TIMED_OUT, "closing")]
    world.assign(1)
    assert world.consumer.fail_committed  # not asked
    assert world.restore.started == [{0: 0}]
    assert set(world.owned) == {(IN, 0)}
    world.rebalance.on_revoke(world.consumer, [TopicPartition(IN, 0), TopicPartition(IN, 1)])
    assert set(world.owned) == set()
    assert world.rebalance.failure is None


def test_an_input_partition_without_a_results_partition_stops_the_service(world):
    with pytest.raises(FatalError, match="need at least as many partitions"):
        world.assign(0, 2)
    assert set(world.owned) == set()


def test_a_revoke_waits_for_the_answers_in_flight_and_commits_them(world):
    world.assign(0, 1)
    world.send(0, 0)
    world.send(1, 0)
    world.sender.step()
    world.sender.flush()  # both events are in one request to Meta, not answered yet
    threading.Timer(0.3, world.meta_may_answer.set).start()
    world.rebalance.on_revoke(world.consumer, [TopicPartition(IN, 0)])
    assert world.requests == 1
    # the answer went out with its offset before letting go (the commit takes what else is
    # released too)
    assert sorted(world.results()) == [(0, 0, "SENT"), (1, 0, "SENT")]
    assert sorted(world.producer.committed[0].offsets) == [(IN, 0, 1), (IN, 1, 1)]
    assert set(world.owned) == {(IN, 1)}
    assert world.restore.forgotten == [0]


def test_a_lost_partition_sends_nothing_more_and_its_events_are_not_duplicates(world):
    world.assign(0, 1)
    world.send(1, 0)
    world.send(1, 1)
    world.rebalance.on_lost(world.consumer, [TopicPartition(IN, 1)])
    world.meta_may_answer.set()
    world.sender.flush()
    assert world.sender.events() == 0
    assert world.requests == 0
    assert world.dedup.seen("e1-0") is None  # the new owner's copy will not be a duplicate
    world.checkpoint.commit(force=True)
    assert world.producer.transactions == []


def test_lost_partitions_ask_the_coordinator_whether_this_producer_was_replaced(world):
    """A process that stood still may have been replaced by one with its transactional id: with
    no transaction open, the lost partitions' committed offsets go to a transaction aborted at
    once; the coordinator refuses a fenced producer there, before anything more is sent."""
    from confluent_kafka import KafkaError

    from consumer.errors import FencedError

    world.assign(0, 1)
    world.consumer.committed_offsets = {(IN, 0): 7}  # partition 1: none committed yet
    world.rebalance.on_lost(world.consumer, [TopicPartition(IN, 0), TopicPartition(IN, 1)])
    assert world.rebalance.failure is None
    assert [(t.offsets, t.state) for t in world.producer.transactions] == [
        ([(IN, 0, 7)], "aborted")  # the offsets as committed, and nothing committed
    ]
    world.assign(0)
    world.producer.fail_offsets = [KafkaError(KafkaError.ILLEGAL_GENERATION, "stale")]
    world.rebalance.on_lost(world.consumer, [TopicPartition(IN, 0)])
    assert world.rebalance.failure is None  # not fenced: the group moved on, nothing more
    assert world.producer.transactions[-1].state == "aborted"
    world.assign(0)
    world.producer.fail_offsets = [
        KafkaError(KafkaError.PRODUCER_FENCED, "fenced", txn_requires_abort=True)
    ]
    world.rebalance.on_lost(world.consumer, [TopicPartition(IN, 0)])
    assert isinstance(world.rebalance.failure, FencedError)


def test_the_drain_sends_nothing_new_and_leaves_batched_events_to_the_next_owner(world):
    world.assign(0, 1)
    for offset in range(3):
        world.send(0, offset)
    world.send(1, 0)
    world.meta_may_answer.set()
    world.rebalance.drain()
    assert world.consumer.paused == {(IN, 0), (IN, 1)}
    assert world.requests == 0
    assert world.producer.transactions == []  # nothing answered: nothing to publish or commit
    assert world.dedup.seen("e0-0") is None  # the next owner's copy is not a duplicate


def test_answers_behind_an_unresolved_offset_are_published_ahead_of_it(world):
    world.assign(0)
    world.send(0, 0, key=THROTTLED)  # throttled: waits for a retry, left to the next owner
    world.send(0, 1)
    world.send(0, 2)
    world.sender.step()  # both batches go; 1 and 2 are on their way to Meta
    deadline = time.monotonic() + 5
    while world.sender.in_flight() != 2:  # the throttled answer came back, the other is out
        assert time.monotonic() < deadline
        world.sender.step()
    threading.Timer(0.3, world.meta_may_answer.set).start()
    world.rebalance.drain()
    assert world.requests == 2  # nothing was sent again or anew
    assert sorted(world.results()) == [(0, 1, "SENT"), (0, 2, "SENT")]
    assert world.producer.committed[0].offsets == []  # offset 0 is not resolved: not committed
    assert world.dedup.seen("e0-0") is None
    world.outbox.load(IN, 0, 0)
    assert not world.outbox.has(IN, 0, 1)  # published: nothing kept for a restart
    # the dedup table's position stays before them: a restart of this instance (same state)
    # reads them again when it restores the partition, and skips their input messages
    first_ahead = sum(len(t.records) for t in world.producer.transactions[:-1])
    assert world.dedup.stored_offsets()[0] == first_ahead


def test_a_fenced_producer_met_in_a_revoke_lets_the_revoke_complete_then_stops(world):
    from confluent_kafka import KafkaError

    from consumer.errors import FencedError
    from consumer.events.records import ResultStatus
    from consumer.events.results import ConversionResult, Reason

    world.assign(0)
    world.checkpoint.consumed(SourceRef(IN, 0, 0))
    world.checkpoint.resolve(
        ConversionResult(SourceRef(IN, 0, 0), ResultStatus.SKIPPED, NOW_MS, Reason.DUPLICATE), None
    )
    world.producer.fail_commits = [
        KafkaError(KafkaError._FENCED, "fenced", txn_requires_abort=True)
    ]
    world.rebalance.on_revoke(world.consumer, [TopicPartition(IN, 0)])  # returns: no exception
    assert isinstance(world.rebalance.failure, FencedError)
    assert set(world.owned) == set()  # released: the group can hand the partition on at once


def test_a_poll_frozen_past_the_session_timeout_lets_the_partitions_go(world, monkeypatch):
    from consumer.events.records import ResultStatus
    from consumer.events.results import ConversionResult, Reason

    world.assign(0, 1)
    world.checkpoint.consumed(SourceRef(IN, 0, 0))
    world.checkpoint.resolve(
        ConversionResult(SourceRef(IN, 0, 0), ResultStatus.SKIPPED, NOW_MS, Reason.DUPLICATE), None
    )

    def consume_taking(seconds, callback=None):
        def consume(num_messages=1, timeout=-1):
            world.now += seconds
            if callback is not None:  # a rebalance callback, run inside the poll
                callback(world.consumer, [])
            return []

        monkeypatch.setattr(world.consumer, "consume", consume)
        return world.rebalance.consume(world.consumer, 500, 0.05)

    consume_taking(5)  # within the session timeout: still ours
    assert set(world.owned) == {(IN, 0), (IN, 1)}
    consume_taking(60, callback=world.rebalance.on_assign)  # a callback may take long
    assert set(world.owned) == {(IN, 0), (IN, 1)}
    consume_taking(60)  # frozen (SIGSTOP) inside the poll: the group has moved on
    assert set(world.owned) == set()
    assert world.consumer.paused == {(IN, 0), (IN, 1)}  # nothing more is fetched for them
    world.checkpoint.commit(force=True)
    assert world.producer.transactions == []  # nothing of a partition not ours is published


def test_a_poll_returns_at_its_first_message_with_those_that_came_with_it(world, monkeypatch):
    """librdkafka's `consume` returns only when it holds the whole batch or the wait is over:
    the loop's poll waits for the first message only, and takes the rest without a wait."""
    fetched = [message(offset, b"trigger") for offset in range(3)]
    calls: list[tuple[object, ...]] = []

    def poll(timeout=-1):
        calls.append(("poll", timeout))
        return fetched.pop(0) if fetched else None

    def consume(num_messages=1, timeout=-1):
        calls.append(("consume", num_messages, timeout))
        taken = fetched[:num_messages]
        del fetched[:num_messages]
        return taken

    monkeypatch.setattr(world.consumer, "poll", poll)
    monkeypatch.setattr(world.consumer, "consume", consume)
    msgs = world.rebalance.consume(world.consumer, 500, 0.05)
    assert [m.offset() for m in msgs] == [0, 1, 2]
    assert calls == [("poll", 0.05), ("consume", 499, 0)]
    calls.clear()
    assert world.rebalance.consume(world.consumer, 500, 0.05) == []  # nothing came
    assert calls == [("poll", 0.05)]


def test_the_drain_reads_an_answer_queued_as_its_request_leaves_the_count(world):
    """A sender thread queues its answer just before its request leaves the in-flight count,
    so the drain can find nothing in flight with an answer still unread: here that moment is
    made certain, Meta answering while the drain counts."""
    world.assign(0)
    world.send(0, 0)
    world.sender.step()  # the batch goes out; Meta holds its answer
    counted = world.sender.in_flight

    def in_flight_as_meta_answers(partitions=None):
        if counted(partitions):
            world.meta_may_answer.set()
            deadline = time.monotonic() + 5
            while counted(partitions):  # the answer is queued, the request left the count
                assert time.monotonic() < deadline
                time.sleep(0.001)
        return 0

    world.sender.in_flight = in_flight_as_meta_answers
    world.rebalance.drain()
    assert world.requests == 1
    assert world.results() == [(0, 0, "SENT")]  # the answer went out with the last commit
