"""Batching: approved events grouped per (dataset, credentials, test event code).

A batch closes when it holds `max_size` events or its first event has waited `linger_s`.
Test events never share a request with live ones, nor with another test code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from consumer.events.parking import ParkedEvent
from consumer.events.policy import Approved
from consumer.events.records import Trigger
from consumer.events.results import RawMessage, SourceRef
from consumer.meta.client import Credentials

__all__ = ["Batch", "BatchKey", "Batcher", "OutgoingEvent"]


@dataclass(slots=True)
class OutgoingEvent:
    """An approved event waiting to be sent, with what its result needs; `parked` when it
    comes from the retry topic (its `source` is then its input's, long committed)."""

    source: SourceRef
    trigger: Trigger
    approved: Approved
    received: RawMessage  # the input message as received, for a dead letter
    parked: ParkedEvent | None = None

    @property
    def event(self) -> dict[str, Any]:
        return self.approved.event

    @property
    def attempts_before(self) -> int:
        """Requests that carried the event before it was parked."""
        return 0 if self.parked is None else self.parked.attempts

    def parked_for_s(self) -> float:
        """Seconds since the event was first parked (0 for one never parked)."""
        if self.parked is None:
            return 0.0
        return max(0.0, time.time() - self.parked.first_parked_at / 1000)


class BatchKey(NamedTuple):
    """What events must share to go in one request. A named tuple: built and looked up for
    every event, hashed and compared in C (its credentials by identity)."""

    dataset_id: str
    credentials: Credentials
    test_event_code: str | None


@dataclass(slots=True)
class Batch:
    """Events collected for one request."""

    key: BatchKey
    opened_at: float
    items: list[OutgoingEvent] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def take(self, partitions: Collection[tuple[str, int]]) -> list[OutgoingEvent]:
        """Take the events of `partitions` out of the batch; return them."""
        mine = [i for i in self.items if i.source.topic_partition in partitions]
        if mine:
            self.items = [i for i in self.items if i.source.topic_partition not in partitions]
        return mine


class Batcher:
    """Open batches by key: `add` returns a batch that became full, `due` those past linger."""

    def __init__(
        self, max_size: int, linger_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not 1 <= max_size <= 1000:
            raise ValueError("max_size must be between 1 and 1000")
        self._max_size = max_size
        self._linger_s = linger_s
        self._clock = clock
        self._open: dict[BatchKey, Batch] = {}

    def __len__(self) -> int:
        """Events waiting in open batches."""
        return sum(len(b) for b in self._open.values())

    def add(self, key: BatchKey, item: OutgoingEvent) -> Batch | None:
        batch = self._open.get(key)
        if batch is None:
            batch = self._open[key] = Batch(key, self._clock())
        batch.items.append(item)
        if len(batch.items) >= self._max_size:
            del self._open[key]
            return batch
        return None

    def due(self, limit: int | None = None, linger_s: float | None = None) -> list[Batch]:
        """Batches whose oldest event has lingered long enough (the `limit` oldest of them),
        removed from the batcher. `linger_s` overrides the batcher's linger."""
        now = self._clock()
        linger = self._linger_s if linger_s is None else linger_s
        ready = [b for b in self._open.values() if now - b.opened_at >= linger]
        if limit is not None:
            ready = sorted(ready, key=lambda b: b.opened_at)[:limit]
        for batch in ready:
            del self._open[batch.key]
        return ready

    def next_due_in(self) -> float | None:
        """Seconds until the next batch is due, None when nothing is open."""
        if not self._open:
            return None
        oldest = min(b.opened_at for b in self._open.values())
        return max(0.0, oldest + self._linger_s - self._clock())

    def flush(self) -> list[Batch]:
        """Every open batch, removed from the batcher."""
        batches = list(self._open.values())
        self._open.clear()
        return batches

    def drop(self, partitions: set[tuple[str, int]]) -> list[OutgoingEvent]:
        """Remove the events of `partitions` (no longer ours); return what was removed."""
        dropped: list[OutgoingEvent] = []
        for key, batch in list(self._open.items()):
            dropped += batch.take(partitions)
            if not batch.items:
                del self._open[key]
        return dropped
