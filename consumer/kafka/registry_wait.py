"""Partitions of a reader that wait for the Schema Registry: a message whose writer schema
could not be fetched is read again a few seconds later, and nothing after it in its partition
is applied meanwhile. The other partitions go on."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from confluent_kafka import TopicPartition

__all__ = ["REGISTRY_RETRY_S", "RegistryWait"]

log = logging.getLogger(__name__)

REGISTRY_RETRY_S = 5.0


class _Seekable(Protocol):
    def seek(self, partition: TopicPartition) -> None: ...

    def pause(self, partitions: list[TopicPartition]) -> None: ...

    def resume(self, partitions: list[TopicPartition]) -> None: ...


class RegistryWait:
    """Which partitions of one consumer wait for the registry, and until when."""

    def __init__(self, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._what = what
        self._clock = clock
        self._until: dict[tuple[str, int], float] = {}

    def __contains__(self, partition: tuple[str, int]) -> bool:
        return partition in self._until

    def wait(self, partition: tuple[str, int]) -> None:
        """`partition` waits `REGISTRY_RETRY_S` from now (its reader pauses and seeks it)."""
        self._until[partition] = self._clock() + REGISTRY_RETRY_S

    def due(self) -> list[tuple[str, int]]:
        """The partitions whose wait is over; they wait no more."""
        now = self._clock()
        over = [key for key, until in self._until.items() if until <= now]
        for key in over:
            del self._until[key]
        return over

    def hold(self, consumer: _Seekable, topic: str, partition: int, offset: int, why: str) -> None:
        """Read `topic[partition]` again from `offset` once the registry may answer."""
        if (topic, partition) not in self._until:
            log.warning(
                "%s waits for the schema registry topic=%s partition=%d offset=%d: %s",
                self._what,
                topic,
                partition,
                offset,
                why,
            )
        self.wait((topic, partition))
        tp = TopicPartition(topic, partition, offset)
        consumer.pause([tp])
        consumer.seek(tp)

    def release_due(self, consumer: _Seekable) -> None:
        """Resume the partitions whose wait is over (for a reader nothing else pauses)."""
        due = self.due()
        if due:
            consumer.resume([TopicPartition(t, p) for t, p in due])

    def forget(self, partitions: list[tuple[str, int]]) -> None:
        for key in partitions:
            self._until.pop(key, None)
