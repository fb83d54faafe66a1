"""Flow control: which of the owned input partitions are paused, and why.

A partition waits while its dedup entries are being restored, for a few seconds after the
Schema Registry did not answer, and, with every other one, while too many messages are
unresolved or held (backpressure: paused at `CAPI_MAX_PENDING_EVENTS` messages unresolved or
whose results wait behind an unresolved one, or at `CAPI_MAX_PENDING_BYTES` of them, resumed
when both are down to half), and
while the circuit breaker is open (Meta fails for everyone: the lag is the buffer), and while
the local state has no room (`state_space.py`). A paused partition is still polled, so the
consumer stays in its group.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from confluent_kafka import TopicPartition

from consumer.events.results import Partition, SourceRef
from consumer.kafka.clients import InputConsumer
from consumer.kafka.registry_wait import RegistryWait
from consumer.meta.breaker import CircuitBreaker
from consumer.ops.metrics import Metrics
from consumer.service.state_space import StateSpace
from consumer.store.recovery import PartitionRecovery

__all__ = ["FlowControl"]


class FlowControl:
    """Pauses and resumes the consumer's partitions; `owned` is the live set of partitions."""

    def __init__(
        self,
        *,
        consumer: InputConsumer,
        restore: PartitionRecovery,
        owned: Collection[Partition],
        max_pending: int,
        max_pending_bytes: int,
        breaker: CircuitBreaker,
        metrics: Metrics,
        space: StateSpace | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consumer = consumer
        self._restore = restore
        self._owned = owned
        self._max_pending = max_pending
        self._max_bytes = max_pending_bytes
        self._breaker = breaker
        self._breaker_open = False
        self._space = space
        self._no_room = False
        self._metrics = metrics
        self._backpressure = False
        self._schema_wait = RegistryWait("input", clock)
        self._apply_due = False

    def turn(self, pending: int, pending_bytes: int = 0) -> None:
        """Once per loop turn: restore a slice of dedup entries, apply backpressure for
        `pending` messages held (`pending_bytes` in bytes), end schema waits that are over."""
        changed = bool(self._restore.step()) or self._apply_due
        if self._breaker.is_open is not self._breaker_open:
            self._breaker_open = self._breaker.is_open
            changed = True
        no_room = self._space is not None and self._space.input_waits()
        if no_room is not self._no_room:
            self._no_room = no_room
            changed = True
        full = pending >= self._max_pending or pending_bytes >= self._max_bytes
        half = pending <= self._max_pending // 2 and pending_bytes <= self._max_bytes // 2
        if not self._backpressure and full:
            self._backpressure = changed = True
        elif self._backpressure and half:
            self._backpressure = False
            changed = True
        if changed or self._schema_wait.due():
            self.apply()

    def rewind(self, source: SourceRef, schema_unavailable: bool = False) -> None:
        """Read the partition again from this message once it may go on (it stays paused)."""
        if schema_unavailable:
            self._schema_wait.wait(source.topic_partition)
        self.apply()
        self._consumer.seek(TopicPartition(source.topic, source.partition, source.offset))

    def assigned(self) -> None:
        """The assignment takes effect after the rebalance callback: pause on the next turn (a
        message fetched before that is rewound by triage)."""
        self._apply_due = True

    def forget(self, gone: set[Partition]) -> None:
        self._schema_wait.forget(list(gone))

    def pause_all(self) -> None:
        self._consumer.pause([TopicPartition(t, p) for t, p in self._owned])

    def apply(self) -> None:
        """Pause what must wait, resume the rest."""
        self._apply_due = False
        restoring = self._restore.restoring()
        pause: list[TopicPartition] = []
        resume: list[TopicPartition] = []
        for topic, partition in self._owned:
            waiting = (
                self._backpressure
                or self._breaker_open
                or self._no_room
                or partition in restoring
                or (topic, partition) in self._schema_wait
            )
            (pause if waiting else resume).append(TopicPartition(topic, partition))
        self._metrics.paused_partitions.set(len(pause))
        if pause:
            self._consumer.pause(pause)
        if resume:
            self._consumer.resume(resume)
