"""Parked events: what Meta could not take for a while waits in the retry topic, not in memory.

A batch that keeps failing for a temporary reason (5xx, timeouts, throttling) is retried in
place for `CAPI_RETRY_INLINE_S`; then each of its events is parked: a `ParkedEvent` record,
keyed by `event_id`, goes to the retry topic's partition numbered like its input's, in the
transaction that commits its input offset. The input partition moves on; the parked event is
tried again when due, after growing, jittered delays. Its parking ends with its one result
(Meta took it, refused it, or it grew too old), published with a tombstone for its key in one
transaction; or it is parked again, with the next delay.

The record holds the trigger as received and where it came from, never a token: the
credentials are looked up again when it is retried (a rotated token is used).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from consumer.events.results import RawMessage, SourceRef

__all__ = ["ParkedEvent", "next_delay_s"]

_JITTER = 0.2  # +-20 %: events parked together do not all come back in the same second


def next_delay_s(
    parkings: int,
    delays_s: tuple[float, ...],
    rng: random.Random | None = None,
) -> float:
    """The wait before the next try of an event parked `parkings` times (1 = the first)."""
    base = delays_s[min(parkings, len(delays_s)) - 1]
    return base * (1 + (rng or random).uniform(-_JITTER, _JITTER))


@dataclass(frozen=True, slots=True)
class ParkedEvent:
    """One parked event: the record of the retry topic (see `schemas/ParkedEvent.avsc`)."""

    event_id: str
    dataset_id: str
    source: SourceRef
    received: RawMessage
    attempts: int
    parkings: int
    first_parked_at: int
    parked_at: int
    due_at: int
    last_error: str | None = None

    @property
    def partition(self) -> int:
        """The retry (and results) partition: the input partition's number."""
        return self.source.partition

    def parked_again(
        self, attempts: int, now_ms: int, delay_s: float, error: str | None
    ) -> ParkedEvent:
        return replace(
            self,
            attempts=attempts,
            parkings=self.parkings + 1,
            parked_at=now_ms,
            due_at=now_ms + int(delay_s * 1000),
            last_error=error,
        )

    def to_avro(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "dataset_id": self.dataset_id,
            "source_topic": self.source.topic,
            "source_partition": self.source.partition,
            "source_offset": self.source.offset,
            "key": self.received.key,
            "value": self.received.value or b"",
            "attempts": self.attempts,
            "parkings": self.parkings,
            "first_parked_at": self.first_parked_at,
            "parked_at": self.parked_at,
            "due_at": self.due_at,
            "last_error": self.last_error,
        }

    @classmethod
    def from_avro(cls, data: dict[str, Any]) -> ParkedEvent:
        return cls(
            event_id=data["event_id"],
            dataset_id=data["dataset_id"],
            source=SourceRef(data["source_topic"], data["source_partition"], data["source_offset"]),
            received=RawMessage(data["key"], data["value"]),
            attempts=data["attempts"],
            parkings=data["parkings"],
            first_parked_at=data["first_parked_at"],
            parked_at=data["parked_at"],
            due_at=data["due_at"],
            last_error=data["last_error"],
        )
