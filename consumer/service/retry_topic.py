"""The retry topic as the checkpoint writes it: the records that park an event and end its
parking (see `events/parking.py`), and the local parked table's changes once they commit."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Collection
from dataclasses import dataclass

from consumer.errors import StateFullError
from consumer.events.parking import ParkedEvent, next_delay_s
from consumer.kafka.publisher import OutRecord
from consumer.meta.batching import OutgoingEvent
from consumer.meta.dispatch import Parking
from consumer.settings import PARKING_DELAYS_S
from consumer.store.parked import (
    ParkedRow,
    ParkedTable,
    decode_parked,
    encode_parked,
    parked_row,
)

__all__ = ["ParkingChange", "RetryTopic"]


@dataclass(frozen=True, slots=True)
class ParkingChange:
    """What a committed transaction changes in the local parked table for one event: parked
    (again) with `row`, or its parking ended (`row` None)."""

    event_id: str
    partition: int
    row: ParkedRow | None


class RetryTopic:
    """Builds the retry topic's records (keyed by `event_id`, in the input's partition number)
    and applies what committed to the local `table`."""

    def __init__(
        self,
        table: ParkedTable,
        input_topic: str,
        delays_s: tuple[float, ...] = PARKING_DELAYS_S,
        rng: random.Random | None = None,
    ) -> None:
        self.table = table
        self._topic = table.topic
        self._input = input_topic
        self._delays_s = delays_s
        # parked events taken to be tried again: their rows stay until the outcome commits
        self._taken: dict[str, int] = {}  # event_id -> partition
        # changes committed to Kafka that the table could not take yet (its store was full)
        self._unapplied: list[ParkingChange] = []
        self._rng = rng or random.Random()

    def park(
        self, item: OutgoingEvent, parking: Parking, now_ms: int
    ) -> tuple[OutRecord, ParkingChange]:
        """The record parking `item` (again), due after the next delay or what Meta asked."""
        parkings = 1 if item.parked is None else item.parked.parkings + 1
        delay_s = max(next_delay_s(parkings, self._delays_s, self._rng), parking.retry_after_s)
        attempts = item.attempts_before + parking.attempts
        if item.parked is None:
            parked = ParkedEvent(
                event_id=item.trigger.event_id,
                dataset_id=item.trigger.dataset_id,
                source=item.source,
                received=item.received,
                attempts=attempts,
                parkings=1,
                first_parked_at=now_ms,
                parked_at=now_ms,
                due_at=now_ms + int(delay_s * 1000),
                last_error=parking.error,
            )
        else:
            parked = item.parked.parked_again(attempts, now_ms, delay_s, parking.error)
        value = encode_parked(parked)
        row = parked_row(parked, value)
        return self._record(parked, value), ParkingChange(parked.event_id, parked.partition, row)

    def end(self, parked: ParkedEvent) -> tuple[OutRecord, ParkingChange]:
        """The tombstone ending the parking of `parked` (its result goes in the same
        transaction)."""
        return self._record(parked, None), ParkingChange(parked.event_id, parked.partition, None)

    def committed(self, changes: list[ParkingChange]) -> None:
        """The transaction holding `changes` committed: the local table takes them. While its
        store is full they wait here, and their events stay taken (a parking that ended is not
        tried again from a row the table still holds)."""
        self._unapplied += changes
        if not self._unapplied or not self.table.may_write():
            return
        try:
            self.table.apply(
                [c.row for c in self._unapplied if c.row is not None],
                [c.event_id for c in self._unapplied if c.row is None],
            )
        except StateFullError:
            return
        for change in self._unapplied:
            self._taken.pop(change.event_id, None)
        self._unapplied = []

    def take_due(
        self,
        partitions: set[int],
        limit: int,
        skip_datasets: Collection[str] = (),
        due_by_ms: int | None = None,
    ) -> list[ParkedEvent]:
        """Parked events of `partitions` that are due and not taken yet (at most `limit` taken
        at a time), now taken."""
        room = limit - len(self._taken)
        records = self.table.due(
            partitions,
            limit=room,
            skip_ids=self._taken.keys(),
            skip_datasets=skip_datasets,
            due_by_ms=due_by_ms,
        )
        due = [decode_parked(record) for record in records]
        for parked in due:
            self._taken[parked.event_id] = parked.partition
        return due

    def taken(self) -> int:
        return len(self._taken)

    def untake(self, event_id: str) -> None:
        """A taken event goes back to waiting (its outcome will not come: let go of)."""
        self._taken.pop(event_id, None)

    def forget(self, partitions: set[int]) -> None:
        """Partitions no longer ours: their taken events are their next owner's, and their
        rows leave the local table (rebuilt from the retry topic if they come back)."""
        self._taken = {e: p for e, p in self._taken.items() if p not in partitions}
        self._unapplied = [c for c in self._unapplied if c.partition not in partitions]
        # on a full volume, dropped when the partition is assigned again (`due` never asks)
        with contextlib.suppress(StateFullError):
            self.table.drop_partitions(partitions)

    def _record(self, parked: ParkedEvent, value: bytes | None) -> OutRecord:
        return OutRecord(
            self._topic,
            parked.event_id.encode("utf-8"),
            value,
            (self._input, parked.partition),
            partition=parked.partition,
        )
