"""What becomes of parked events, and of events that get parked, until the next commit.

An event Meta did not take within its inline window is parked: a record in the retry topic, in
the transaction that also releases its input offset. A parked event tried again ends with its
one result and the tombstone that ends its parking, or is parked again; one whose result is
published already (by another owner of its partition) ends with the tombstone alone. No input
offset waits for a parked event's outcome: it goes out with the next commit, and the local
parked table takes the changes once that transaction has committed.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from consumer.events.parking import ParkedEvent
from consumer.events.results import ConversionResult, DedupEntry, DedupStatus
from consumer.meta.batching import OutgoingEvent
from consumer.meta.dispatch import Parking
from consumer.ops.metrics import Metrics
from consumer.service.held import Held
from consumer.service.retry_topic import ParkingChange, RetryTopic

__all__ = ["ParkingOutcomes"]


class ParkingOutcomes:
    """The parking records of the open transaction and the parked table's changes they make;
    used by the checkpoint, from the main loop only."""

    def __init__(self, retry: RetryTopic, metrics: Metrics) -> None:
        self._retry = retry
        self._metrics = metrics
        self._unparked: list[Held] = []  # parked events' outcomes, for the next commit
        self._changes: list[ParkingChange] = []  # of the open transaction

    def park(self, item: OutgoingEvent, parking: Parking, now_ms: int) -> Held | None:
        """The record parking `item` (again). For an event consumed now, what its input offset
        releases (returned, held behind it); a parked event's goes with the next commit."""
        record, change = self._retry.park(item, parking, now_ms)
        self._metrics.parked.inc()
        held = Held([record], DedupEntry(item.trigger.event_id, DedupStatus.PARKED), change)
        if item.parked is None:
            return held
        self._unparked.append(held)
        return None

    def resolved(
        self,
        held: Held,
        result: ConversionResult,
        parked: ParkedEvent,
        dead_lettered: bool,
    ) -> None:
        """A parked event's one result (`held`: with its dead letter when `dead_lettered`)
        and the tombstone that ends its parking, for the next commit."""
        tombstone, change = self._retry.end(parked)
        self._unparked.append(replace(held, records=[*held.records, tombstone], parking=change))
        reason = result.reason or ""
        self._metrics.tally(self._metrics.results, result.status, reason)
        if dead_lettered:
            self._metrics.tally(self._metrics.dead_letters, reason)
        self._metrics.unparked.labels(result.status).inc()

    def ended(self, parked: ParkedEvent) -> None:
        """A parked event whose result is published already: the tombstone alone."""
        tombstone, change = self._retry.end(parked)
        self._unparked.append(Held([tombstone], None, change))
        self._metrics.already_resolved.inc()

    def let_go(self, event_id: str) -> None:
        """A parked event taken to be tried again goes back to waiting (its partition left,
        or Meta never answered): its next owner, or a later turn, tries it."""
        self._retry.untake(event_id)

    def take(self) -> list[Held]:
        """The parked events' outcomes, into the transaction being committed."""
        taken, self._unparked = self._unparked, []
        return taken

    def published(self, change: ParkingChange) -> None:
        """A parking record went into the open transaction."""
        self._changes.append(change)

    def committed(self) -> None:
        """The transaction committed: the local parked table takes its changes."""
        self._retry.committed(self._changes)
        self._changes = []

    def release(self, partitions: Collection[int]) -> None:
        """Partitions no longer ours: their outcomes not committed yet are their next owner's
        to decide, and their rows leave the local table."""
        self._unparked = [h for h in self._unparked if h.records[0].partition not in partitions]
        self._retry.forget(set(partitions))

    def lost(self, partitions: Collection[int]) -> None:
        """The open transaction was lost for these partitions: its changes to them never
        happened."""
        self._changes = [c for c in self._changes if c.partition not in partitions]
