"""Rebalances and shutdown: partitions that arrive, leave in order, or are lost.

- Assigned: the committed offsets say where the outbox's entries start and from where the dedup
  entries are restored; the partitions wait (flow control) until that is done.
- Revoked, and at shutdown (drain): nothing more is sent for the partitions; events not sent
  yet (batched, or waiting for a retry) are left to the next owner; the answers of requests in
  flight are awaited (up to `CAPI_DRAIN_TIMEOUT_S`, never a backoff); then every answer Meta
  gave is published in the last transaction, those behind an unresolved offset past the
  committed offset, where the next owner finds them and skips their messages.
- Lost (the group moved on without us): nothing of theirs may be committed or sent any more;
  their messages will be processed again by the new owner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import Message, TopicPartition

from consumer.errors import FatalError
from consumer.events.results import Partition, partition_names
from consumer.kafka.broker_wait import until_answered
from consumer.kafka.clients import InputConsumer
from consumer.meta.senders import Sender
from consumer.ops.metrics import Metrics
from consumer.ops.monitor import Monitor
from consumer.service.answers import Answers
from consumer.service.checkpoint import Checkpoint
from consumer.service.flow import FlowControl
from consumer.service.ownership import Ownership
from consumer.settings import Topics
from consumer.store.recovery import PartitionRecovery

__all__ = ["Rebalance"]

log = logging.getLogger(__name__)


class Rebalance:
    """The consumer's rebalance callbacks and the drain at shutdown; the one owner that
    changes `ownership`, the input partitions everyone else reads."""

    def __init__(
        self,
        *,
        ownership: Ownership,
        checkpoint: Checkpoint,
        flow: FlowControl,
        sender: Sender,
        answers: Answers,
        restore: PartitionRecovery,
        topics: Topics,
        drain_timeout_s: float,
        session_timeout_s: float,
        metrics: Metrics,
        monitor: Monitor,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._owned = ownership
        self._checkpoint = checkpoint
        self._flow = flow
        self._sender = sender
        self._answers = answers
        self._restore = restore
        self._topics = topics
        self._drain_timeout_s = drain_timeout_s
        self._session_timeout_s = session_timeout_s
        self._callbacks_done = clock()  # when a rebalance callback last returned
        self._metrics = metrics
        self._monitor = monitor  # told what a callback waits for; forgets a partition's gauges
        self._clock = clock
        self._closing = False
        # an error that stops the service, met inside a callback (librdkafka's rebalance must
        # complete); `consume` raises it once the callback has returned
        self.failure: FatalError | None = None

    def on_assign(self, consumer: InputConsumer, partitions: list[TopicPartition]) -> None:
        try:
            self._assign(consumer, partitions)
        finally:
            self._callbacks_done = self._clock()

    def _assign(self, consumer: InputConsumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", _names(partitions))
        self._metrics.rebalances.labels("assign").inc()
        if self._closing:
            # a rebalance that completes while the consumer leaves its group: the partitions
            # are revoked again before the close returns, and a closing consumer no longer
            # gets its committed offsets from the broker; the next owner takes them
            log.info("closing: %s left to the next owner", _names(partitions))
            return
        too_high = [tp.partition for tp in partitions if tp.partition >= self._restore.partitions]
        if too_high:
            t = self._topics
            raise FatalError(
                f"{t.results}, {t.retry} and {t.signals} need at least as many partitions as "
                f"{t.triggered} (partition {too_high[0]}); the smaller has "
                f"{self._restore.partitions}"
            )
        arrived = {(tp.topic, tp.partition) for tp in partitions}
        self._owned.arrived(arrived)
        self._sender.join(arrived)
        committed = (
            until_answered(
                lambda: consumer.committed(partitions, timeout=30),
                "the broker's committed offsets of the partitions assigned",
                self._monitor.waiting,
            )
            if partitions
            else []
        )
        log.info("committed input offsets %s", _offsets(committed))
        self._checkpoint.assigned(committed)
        self._restore.start({tp.partition: max(tp.offset, 0) for tp in committed})
        self._flow.assigned()

    def on_revoke(self, consumer: InputConsumer, partitions: list[TopicPartition]) -> None:
        log.info("revoked %s", _names(partitions))
        self._metrics.rebalances.labels("revoke").inc()
        try:
            if not self._closing:
                self._finish({(tp.topic, tp.partition) for tp in partitions})
        except FatalError as exc:
            # the callback completes (the group gets the partitions back at once); the loop
            # raises the error right after
            self.failure = exc
        finally:
            self._release(partitions)
            self._callbacks_done = self._clock()

    def on_lost(self, consumer: InputConsumer, partitions: list[TopicPartition]) -> None:
        log.warning(
            "lost %s; their uncommitted messages will be processed again", _names(partitions)
        )
        self._metrics.rebalances.labels("lost").inc()
        gone = self._release(partitions)
        try:
            self._checkpoint.lost(gone)
        except FatalError as exc:  # raised by `consume` once the callback has returned
            self.failure = exc
        finally:
            self._callbacks_done = self._clock()

    def consume(self, consumer: InputConsumer, num_messages: int, timeout: float) -> list[Message]:
        """Poll (the rebalance callbacks run in here): up to `num_messages`, the wait over at the
        first message; then raise an error a callback met. A poll that took longer than the
        group's session timeout outside the callbacks means the process was frozen (a stopped
        process, a suspended machine) and the group has moved on, whatever librdkafka knows
        yet: the partitions are paused and let go as lost before anything more is sent or
        published for them."""
        started = self._clock()
        msgs = _consume_from_first(consumer, num_messages, timeout)
        stalled = self._clock() - max(started, self._callbacks_done)
        if stalled > self._session_timeout_s and self._owned:
            log.warning("the process stood still for %.0f s, past the session timeout", stalled)
            partitions = [TopicPartition(t, p) for t, p in self._owned]
            consumer.pause(partitions)
            self.on_lost(consumer, partitions)
        if self.failure is not None:
            raise self.failure
        return msgs

    def drain(self) -> None:
        """At shutdown: stop reading, finish what is under way, commit."""
        log.info(
            "draining: no more input; waiting for the answers of %d events in flight "
            "(at most %.0f s), then the last commit",
            self._sender.in_flight(),
            self._drain_timeout_s,
        )
        self._flow.pause_all()
        self._finish(set(self._owned))

    def closing(self) -> None:
        """The consumer is closing: an assignment is left to the next owner and a revoke only
        lets go (the drain has run)."""
        self._closing = True

    def _finish(self, partitions: set[Partition]) -> None:
        """Let `partitions` go: send nothing more for them, wait for the answers in flight,
        publish every answer and commit."""
        self._checkpoint.abandon(self._sender.leave(partitions))
        deadline = self._clock() + self._drain_timeout_s
        while True:
            # counted before collecting: a sender thread queues its answer before its request
            # leaves the count, so once the count is 0 the collection below has every answer
            left = self._sender.in_flight(partitions)
            self._answers.collect()
            if not left or self._clock() >= deadline:
                break
            self._checkpoint.turn()
            time.sleep(0.01)
        if left:
            log.warning(
                "drain timed out after %.0f s: %d events in flight without an answer; "
                "the next owner sends them again",
                self._drain_timeout_s,
                left,
            )
        self._checkpoint.commit(force=True, letting_go=partitions)

    def _release(self, partitions: list[TopicPartition]) -> set[Partition]:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._checkpoint.abandon(self._sender.leave(gone))
        self._owned.left(gone)
        self._checkpoint.release(gone)
        self._flow.forget(gone)
        self._restore.forget([p for _, p in gone])
        for topic, partition in gone:
            self._monitor.released(topic, partition)
        return gone


def _offsets(partitions: list[TopicPartition]) -> str:
    """`topic[p]=offset`, `none` where the group has committed nothing yet (librdkafka's
    negative sentinel)."""
    return (
        " ".join(
            f"{tp.topic}[{tp.partition}]={tp.offset if tp.offset >= 0 else 'none'}"
            for tp in partitions
        )
        or "-"
    )


def _consume_from_first(
    consumer: InputConsumer, num_messages: int, timeout: float
) -> list[Message]:
    """Up to `num_messages`, waiting at most `timeout` for the first: librdkafka's `consume`
    returns only when it holds them all or the wait is over, so a message arriving during the
    wait would sit out the rest of it (triaged, and its batch's linger started, that much
    later). `poll` returns at the first message; what came with it is taken without a wait."""
    first = consumer.poll(timeout)
    if first is None:
        return []
    if num_messages == 1:
        return [first]
    return [first, *consumer.consume(num_messages=num_messages - 1, timeout=0)]


def _names(partitions: list[TopicPartition]) -> str:
    return partition_names((tp.topic, tp.partition) for tp in partitions)
