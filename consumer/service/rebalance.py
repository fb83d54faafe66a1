"""Rebalances and shutdown: partitions that arrive, leave in order, or are lost.

- Assigned: the committed offsets say where the outbox's entries start and from where the dedup
  entries are restored; the partitions wait (flow control) until that is done.
- Revoked, and at shutdown (drain): what is batched is sent, Meta's answers are awaited (up to
  `CAPI_DRAIN_TIMEOUT_S`) and committed with their offsets before the partitions go.
- Lost (the group moved on without us): nothing of theirs may be committed any more; their
  messages will be processed again by the new owner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import TopicPartition

from consumer.errors import FatalError
from consumer.kafka.clients import InputConsumer
from consumer.meta.senders import Sender
from consumer.ops.metrics import Metrics
from consumer.service.checkpoint import Checkpoint, Partition
from consumer.service.flow import FlowControl
from consumer.settings import Topics
from consumer.store.dedup import Dedup
from consumer.store.dedup_restore import DedupRestore
from consumer.store.outbox import Outbox

__all__ = ["Rebalance"]

log = logging.getLogger(__name__)


class Rebalance:
    """The consumer's rebalance callbacks and the drain at shutdown. Keeps `owned`, the live set
    of input partitions that checkpoint and flow control read."""

    def __init__(
        self,
        *,
        owned: set[Partition],
        checkpoint: Checkpoint,
        flow: FlowControl,
        sender: Sender,
        dedup: Dedup,
        restore: DedupRestore,
        outbox: Outbox,
        topics: Topics,
        drain_timeout_s: float,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._owned = owned
        self._checkpoint = checkpoint
        self._flow = flow
        self._sender = sender
        self._dedup = dedup
        self._restore = restore
        self._outbox = outbox
        self._topics = topics
        self._drain_timeout_s = drain_timeout_s
        self._metrics = metrics
        self._clock = clock
        self._closing = False

    def on_assign(self, consumer: InputConsumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", _names(partitions))
        self._metrics.rebalances.labels("assign").inc()
        too_high = [tp.partition for tp in partitions if tp.partition >= self._restore.partitions]
        if too_high:
            raise FatalError(
                f"{self._topics.results} has {self._restore.partitions} partitions; it needs "
                f"at least as many as {self._topics.triggered} (partition {too_high[0]})"
            )
        self._owned |= {(tp.topic, tp.partition) for tp in partitions}
        committed = consumer.committed(partitions, timeout=30) if partitions else []
        log.info("committed input offsets %s", _offsets(committed))
        for tp in committed:
            self._outbox.load(tp.topic, tp.partition, max(tp.offset, 0))
        self._restore.start({tp.partition: max(tp.offset, 0) for tp in committed})
        self._flow.assigned()

    def on_revoke(self, consumer: InputConsumer, partitions: list[TopicPartition]) -> None:
        log.info("revoked %s", _names(partitions))
        self._metrics.rebalances.labels("revoke").inc()
        if not self._closing:
            self._finish({(tp.topic, tp.partition) for tp in partitions})
            self._checkpoint.commit(force=True)
        self._release(partitions)

    def on_lost(self, consumer: InputConsumer, partitions: list[TopicPartition]) -> None:
        log.warning("lost %s; their uncommitted messages will be processed again",
                    _names(partitions))  # fmt: skip
        self._metrics.rebalances.labels("lost").inc()
        gone = self._release(partitions)
        self._checkpoint.lost(gone)

    def drain(self) -> None:
        """At shutdown: stop reading, finish what is under way, commit."""
        log.info("draining pending=%d", len(self._checkpoint))
        self._flow.pause_all()
        self._finish(None)
        self._checkpoint.commit(force=True)

    def closing(self) -> None:
        """The consumer is closing: a revoke now only lets go (the drain has run)."""
        self._closing = True

    def _finish(self, partitions: set[Partition] | None) -> None:
        """Send what is batched and wait for outcomes (of `partitions`, or all), committing."""
        self._sender.flush()
        deadline = self._clock() + self._drain_timeout_s
        while self._sender.events(partitions) and self._clock() < deadline:
            for item, outcome in self._sender.step():
                self._checkpoint.answered(item, outcome)
            self._checkpoint.turn()
            time.sleep(0.01)
        for item, outcome in self._sender.step():
            self._checkpoint.answered(item, outcome)
        left = self._sender.events(partitions)
        if left:
            log.warning(
                "drain timed out: %d events left unresolved; their input will be processed again",
                left,
            )

    def _release(self, partitions: list[TopicPartition]) -> set[Partition]:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        for item in self._sender.drop(gone):
            self._dedup.abandon(item.trigger.event_id)
            self._metrics.in_flight.dec()
        self._owned -= gone
        self._checkpoint.release(gone)
        self._flow.forget(gone)
        self._restore.forget([p for _, p in gone])
        return gone


def _offsets(partitions: list[TopicPartition]) -> str:
    return " ".join(f"{tp.topic}[{tp.partition}]={tp.offset}" for tp in partitions) or "-"


def _names(partitions: list[TopicPartition]) -> str:
    return ",".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "-"
