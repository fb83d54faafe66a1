"""The commit protocol: results held until their offsets are released, then published with them.

A resolved message's result (and dead letter) is held until every earlier message of its
partition is resolved too; then it goes into the open Kafka transaction, which commits with the
input offsets every `CAPI_COMMIT_INTERVAL_MS`. A reader with `read_committed` therefore sees a
result exactly when its input offset is committed, and never twice. Meta's answers are also
kept in the outbox (local disk) until their transaction commits, so that a crash in between does
not mean sending the same events again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import replace

from confluent_kafka import KafkaError, Message, TopicPartition

from consumer.events.parking import ParkedEvent
from consumer.events.result_avro import ResultBodyWriter
from consumer.events.results import (
    DEAD_LETTER_REASONS,
    ConversionResult,
    Partition,
    RawMessage,
    SourceRef,
    partition_names,
)
from consumer.events.signals import tally_of, tally_of_result
from consumer.kafka.clients import InputConsumer
from consumer.kafka.codec import AvroCodec
from consumer.kafka.offsets import OffsetTracker
from consumer.kafka.publisher import OutRecord, Publisher
from consumer.meta.batching import OutgoingEvent
from consumer.meta.dispatch import Outcome, Parking
from consumer.ops.metrics import Metrics
from consumer.service.held import Held, HeldResults, UnresolvedBytes
from consumer.service.parking_outcomes import ParkingOutcomes
from consumer.service.retry_topic import RetryTopic
from consumer.settings import Topics
from consumer.store.dedup import Dedup
from consumer.store.outbox import Outbox
from consumer.store.signal_counts import SignalCounts

__all__ = ["Checkpoint"]

log = logging.getLogger(__name__)

# a commit is due earlier when this many records wait in the open transaction
_PENDING_RECORDS_LIMIT = 10_000


class Checkpoint:
    """Holds results behind unresolved offsets and commits them with the offsets they release.

    `owned` is the live set of input partitions this instance owns (kept by the rebalance).
    """

    def __init__(
        self,
        *,
        consumer: InputConsumer,
        publisher: Publisher,
        outbox: Outbox,
        dedup: Dedup,
        retry: RetryTopic,
        owned: Collection[Partition],
        topics: Topics,
        codec: AvroCodec,
        metrics: Metrics,
        signals: SignalCounts,
        commit_interval_s: float,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._consumer = consumer
        self._publisher = publisher
        self._outbox = outbox
        self._dedup = dedup
        self._owned = owned
        self._topics = topics
        self._codec = codec
        self._result_body = ResultBodyWriter()
        self._metrics = metrics
        self._signals = signals
        self._interval_s = commit_interval_s
        self._clock_ms = clock_ms
        self._tracker = OffsetTracker()
        self._held = HeldResults()
        self._unresolved = UnresolvedBytes()
        self._parkings = ParkingOutcomes(retry, metrics)
        self._last_commit = 0.0
        # what the open transaction publishes, whose outbox entries go once it commits: the
        # offsets released into it, the messages published ahead of their offsets
        self._in_transaction: dict[Partition, int] = {}
        self._ahead_in_transaction: list[SourceRef] = []

    def __len__(self) -> int:
        """What backpressure counts: messages consumed whose result is not resolved yet, and
        results held behind an unresolved offset (both stay in memory until a commit)."""
        return len(self._tracker) + len(self._held)

    @property
    def bytes(self) -> int:
        """The same in bytes: what unresolved messages were received as, what held results
        will be produced as."""
        return self._unresolved.bytes + self._held.bytes

    # -- what the loop hands over --------------------------------------------------------------

    def consumed(self, source: SourceRef, size: int = 0) -> None:
        """A message is being processed: its offset waits for its result; `size`: its bytes,
        while they stay in memory (an event on its way to Meta)."""
        self._tracker.track(source.topic, source.partition, source.offset)
        self._unresolved.add(source, size)
        self._metrics.tally(self._metrics.consumed, source.topic)

    def already_resolved(self, source: SourceRef) -> None:
        """A message whose result is visible already: nothing to publish, its offset may go."""
        self._tracker.track(source.topic, source.partition, source.offset)
        self._tracker.done(source.topic, source.partition, source.offset)
        self._metrics.already_resolved.inc()

    def recover(self, source: SourceRef) -> None:
        """Publish what the outbox kept for this message."""
        records, dedup = self._outbox.take(source.topic, source.partition, source.offset)
        records = [
            replace(r, on_delivery=self._result_delivered) if r.topic == self._topics.results else r
            for r in records
        ]
        results = [r.value for r in records if r.topic == self._topics.results and r.value]
        tally = tally_of(self._codec.decode(results[0], "ConversionResult")) if results else None
        self._tracker.track(source.topic, source.partition, source.offset)
        self._tracker.done(source.topic, source.partition, source.offset)
        if dedup is not None:
            self._dedup.begin(dedup.event_id)
        self._held.put(source, Held(records, dedup, tally=tally))
        self._metrics.outbox_recovered.inc()

    def answered(self, item: OutgoingEvent, outcome: Outcome | Parking) -> None:
        """Meta's outcome for an event: hold its result, and keep it in the outbox, even for a
        partition no longer ours: if it comes back to this instance (a rebalance after a
        stall), Meta's answer is published from there instead of the event being sent again.
        An event Meta did not take in time is parked instead; a parked event's outcome goes
        out with the next commit, with the end of its parking."""
        self._metrics.shift(self._metrics.in_flight, -1)
        now_ms = self._clock_ms()
        if isinstance(outcome, Parking):
            if item.source.topic_partition not in self._owned:
                # Meta took nothing: the next owner processes the message (or retries the
                # parked event) itself; a record from here could race with its own
                self._dedup.abandon(item.trigger.event_id)
                if item.parked is not None:
                    self._parkings.let_go(item.trigger.event_id)
                return
            held = self._parkings.park(item, outcome, now_ms)
            if held is not None:
                self._held.put(self._done(item.source), held)
            return
        result = outcome.result_for(item, now_ms)
        letter = item.received if outcome.reason in DEAD_LETTER_REASONS else None
        if item.parked is not None:
            self.resolve_parked(result, letter, item.parked)
            return
        held = self._result_held(result, letter)
        src = item.source
        self._outbox.add(src.topic, src.partition, src.offset, held.records, held.dedup)
        self._hold(result, held)

    def resolve_parked(
        self, result: ConversionResult, dead_letter: RawMessage | None, parked: ParkedEvent
    ) -> None:
        """The one result of a parked event (with its dead letter, if any): it goes out with
        the next commit, with the tombstone that ends the parking."""
        if parked.source.topic_partition not in self._owned:
            self._parkings.let_go(parked.event_id)  # its next owner resolves it
            self._dedup.abandon(parked.event_id)
            return
        held = self._result_held(result, dead_letter)
        self._parkings.resolved(held, result, parked, dead_lettered=dead_letter is not None)

    def end_parking(self, parked: ParkedEvent) -> None:
        """A parked event whose result is published already: only its parking ends (the
        tombstone goes out with the next commit), nothing more is published for it."""
        if parked.source.topic_partition not in self._owned:
            self._parkings.let_go(parked.event_id)
            return
        self._parkings.ended(parked)

    def resolve(self, result: ConversionResult, dead_letter: RawMessage | None) -> bool:
        """Hold the result (and its dead letter) until it can go out with its offset; False when
        its partition is no longer ours (the new owner processes the message again)."""
        return self._hold(result, self._result_held(result, dead_letter))

    def _result_held(self, result: ConversionResult, dead_letter: RawMessage | None) -> Held:
        """What a result publishes (it, and its dead letter), the dedup entry it makes and what
        it adds to the signal counts."""
        source = result.source
        key = (result.event_id or "").encode("utf-8")
        framing = self._codec.header("ConversionResult", self._topics.results)
        records = [
            OutRecord(
                self._topics.results,
                key,
                framing + self._result_body.body(result),
                source.topic_partition,
                partition=source.partition,
                on_delivery=self._result_delivered,
            )
        ]
        if dead_letter is not None:
            records.append(
                OutRecord(
                    self._topics.dlq,
                    dead_letter.key,
                    dead_letter.value,
                    source.topic_partition,
                    headers=result.dead_letter_headers(),
                )
            )
        return Held(records, result.dedup_entry, tally=tally_of_result(result))

    def _hold(self, result: ConversionResult, held: Held) -> bool:
        source = result.source
        dedup = held.dedup
        if source.topic_partition not in self._owned:
            log.debug(
                "result held back: partition %s[%d] is no longer ours offset=%d",
                source.topic,
                source.partition,
                source.offset,
            )
            if dedup is not None:
                self._dedup.abandon(dedup.event_id)
            return False
        reason = result.reason or ""
        records = held.records  # the result first; a dead letter, when there is one, after it
        if len(records) > 1 and any(r.topic == self._topics.dlq for r in records):
            self._metrics.tally(self._metrics.dead_letters, reason)
        self._held.put(self._done(source), held)
        self._metrics.tally(self._metrics.results, result.status, reason)
        return True

    def _done(self, source: SourceRef) -> SourceRef:
        """The message is resolved: its offset may be released, its bytes are no longer held
        as an unresolved message's."""
        self._tracker.done(source.topic, source.partition, source.offset)
        self._unresolved.resolved(source)
        return source

    def _result_delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self._dedup.delivered(msg.partition() or 0, msg.offset() or 0)

    def _result_delivered_ahead(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self._dedup.delivered_ahead(msg.partition() or 0, msg.offset() or 0)

    # -- the commit ------------------------------------------------------------------------------

    def next_commit_in(self) -> float | None:
        """Seconds until a commit is due, while results are held for one; None when none is.
        The loop's poll waits no longer, so that a result is not held past its commit."""
        if not self._held:
            return None
        return max(0.0, self._until_due(time.monotonic()))

    def _until_due(self, now: float) -> float:
        """Seconds from `now` until a commit interval has passed since the last commit; zero
        or less once it has."""
        return self._last_commit + self._interval_s - now

    def turn(self) -> None:
        """Once per loop turn: keep Meta's answers on disk, serve the producer, commit if due."""
        self._outbox.flush()
        self._publisher.poll()
        self.commit()

    def commit(self, force: bool = False, letting_go: Collection[Partition] = ()) -> None:
        """Commit what is released, when due (or now with `force`).

        `letting_go`: partitions this instance gives up after this commit. Their results held
        behind an unresolved offset go out too, past the committed offset: the next owner finds
        them when it restores its dedup entries and skips those messages, so no answer Meta
        gave is lost and no event is sent again.
        """
        now = time.monotonic()
        due = self._until_due(now) <= 0
        if not (force or due or self._publisher.pending >= _PENDING_RECORDS_LIMIT):
            return
        # 1. Meta's answers are on disk before anything else can go wrong
        self._outbox.flush()
        # 2. the offsets behind which every message is resolved leave the tracker
        released = self._tracker.release()
        offsets = []
        for (topic, partition), run in released.items():
            # 3. their results and dead letters go into the open transaction, and their
            #    dedup entries into the open transaction's view of the dedup table
            for offset in run:
                held = self._held.pop(topic, partition, offset)
                if held is not None:
                    self._publish(held, partition)
            if (topic, partition) in self._owned:
                offsets.append(TopicPartition(topic, partition, run[-1] + 1))
        # 3b. results of partitions let go of, held behind an unresolved offset, go too
        ahead = self._publish_ahead(set(letting_go))
        # 3c. parked events parked again or resolved: no offset waits for them
        for held in self._parkings.take():
            self._publish(held, held.records[0].partition or 0)
        # 3d. the signal counts the transaction changed, exact with its results
        for record in self._signals.records():
            self._publisher.produce(record)
        # 4. the transaction commits the records with the input offsets, atomically
        for key, run in released.items():
            self._in_transaction[key] = run[-1]
        self._ahead_in_transaction += ahead
        committed = self._publisher.commit(offsets, self._consumer, self._owned.__contains__)
        self._last_commit = now
        if not committed:
            return  # the group moved on: all of it waits until the consumer has rejoined
        # 5. now durable in Kafka: the dedup entries go to the local table, and the outbox
        #    entries of what it published are not needed any more
        self._dedup.committed(write=force)  # written at once when partitions go, or at the end
        self._parkings.committed()
        self._outbox.committed({p: [end] for p, end in self._in_transaction.items()})
        self._outbox.discard(self._ahead_in_transaction)
        self._in_transaction = {}
        self._ahead_in_transaction = []

    def _publish(self, held: Held, partition: int) -> None:
        """A held result's records into the open transaction, its dedup entry into the open
        transaction's view of the dedup table, its tally into the signal counts."""
        for record in held.records:
            self._publisher.produce(record)
        if held.tally is not None:
            self._signals.count(held.tally)
        if held.dedup is not None:
            self._dedup.record(held.dedup, partition)
        if held.parking is not None:
            self._parkings.published(held.parking)

    def _publish_ahead(self, partitions: set[Partition]) -> list[SourceRef]:
        """Produce the held results of `partitions` whatever their offsets; return which.

        Parkings are not published ahead: a parked message has no result to make the next owner
        skip it, and Meta took none of it; the next owner processes it again."""
        if not partitions:
            return []
        ahead = [(source, held) for source, held in self._held.of(partitions) if not held.parking]
        for source, held in ahead:
            self._held.pop(*source)
            records = [
                replace(r, on_delivery=self._result_delivered_ahead)
                if r.topic == self._topics.results
                else r
                for r in held.records
            ]
            self._publish(replace(held, records=records), source.partition)
        if ahead:
            log.info(
                "handing over %d answers of Meta with the partitions let go (%s): published "
                "now, their messages are skipped by the next owner",
                len(ahead),
                partition_names(sorted(partitions)),
            )
        return [source for source, _ in ahead]

    def abandon(self, items: list[OutgoingEvent]) -> None:
        """Events given up before Meta answered them: the next owner processes them."""
        for item in items:
            self._dedup.abandon(item.trigger.event_id)
            self._metrics.shift(self._metrics.in_flight, -1)
            if item.parked is not None:
                self._parkings.let_go(item.trigger.event_id)

    # -- partitions that arrive and leave ---------------------------------------------------------

    def assigned(self, committed: list[TopicPartition]) -> None:
        """Partitions arrived, with their committed input offsets: the outbox learns which of
        their messages Meta answered already."""
        for tp in committed:
            self._outbox.load(tp.topic, tp.partition, max(tp.offset, 0))

    def release(self, gone: set[Partition]) -> None:
        """Partitions no longer ours: drop what is held and tracked for them."""
        for source, held in list(self._held.of(gone)):
            self._held.pop(*source)
            if held.dedup is not None:
                self._dedup.abandon(held.dedup.event_id)
        self._unresolved.forget(gone)
        # not committed yet, their records are dropped from the transaction: the outbox keeps
        # Meta's answers for when the partitions come back
        for key in gone:
            self._in_transaction.pop(key, None)
        self._ahead_in_transaction = [
            s for s in self._ahead_in_transaction if s.topic_partition not in gone
        ]
        numbers = {p for _, p in gone}
        # their counts include this instance's uncommitted results: the next owner reads the
        # committed ones back
        self._signals.forget(numbers)
        # a parked event's outcome not committed yet: its next owner retries it
        self._parkings.release(numbers)
        for topic, partition in gone:
            self._tracker.forget(topic, partition)
            self._outbox.forget(topic, partition)

    def lost(self, gone: set[Partition]) -> None:
        """Partitions lost without a revoke: the open transaction may hold records of theirs."""
        numbers = {p for _, p in gone}
        self._dedup.drop_uncommitted(numbers)
        self._parkings.lost(numbers)
        lost = [TopicPartition(topic, partition) for topic, partition in sorted(gone)]
        self._publisher.redo(self._owned.__contains__, lost, self._consumer)
