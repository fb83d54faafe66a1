"""What the checkpoint keeps in memory until a commit, counted as backpressure counts it: by
message and by bytes.

- Results (with dead letters, parkings and dedup entries) held until every earlier message of
  their partition is resolved: `HeldResults`.
- Messages consumed and not resolved yet (batched, on their way to Meta, waiting for a retry):
  their received bytes, `UnresolvedBytes` (the tracker counts them).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass

from consumer.events.results import DedupEntry, Partition, SourceRef
from consumer.events.signals import Tally
from consumer.kafka.publisher import OutRecord
from consumer.service.retry_topic import ParkingChange

__all__ = ["Held", "HeldResults", "UnresolvedBytes"]


@dataclass(slots=True)
class Held:
    """What a resolved message publishes, the dedup entry it makes, what it changes in the
    parked table and adds to the signal counts, once released."""

    records: list[OutRecord]
    dedup: DedupEntry | None
    parking: ParkingChange | None = None
    tally: Tally | None = None  # what its result adds to the signal counts

    def size(self) -> int:
        size = 0
        for r in self.records:  # one record, or two: no generator for so few
            size += len(r.key or b"") + len(r.value or b"")
        return size


class HeldResults:
    """Held results by their input message, found by its topic, partition and offset: the
    commit pops them by offset, and a plain tuple is a tenth of a `SourceRef` to build."""

    def __init__(self) -> None:
        # (topic, partition, offset) -> the held result, with its size, measured once
        self._by_source: dict[tuple[str, int, int], tuple[Held, int]] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._by_source)

    def put(self, source: SourceRef, held: Held) -> None:
        if source in self._by_source:  # held again for the same message: it replaces the first
            self.pop(*source)
        size = held.size()
        self._by_source[source] = (held, size)
        self.bytes += size

    def pop(self, topic: str, partition: int, offset: int) -> Held | None:
        found = self._by_source.pop((topic, partition, offset), None)
        if found is None:
            return None
        self.bytes -= found[1]
        return found[0]

    def of(self, partitions: Collection[Partition]) -> Iterator[tuple[SourceRef, Held]]:
        """The held results of `partitions`, in offset order."""
        for key in sorted(k for k in self._by_source if k[:2] in partitions):
            yield SourceRef(*key), self._by_source[key][0]


class UnresolvedBytes:
    """The received size of each message consumed and not resolved yet."""

    def __init__(self) -> None:
        self._sizes: dict[SourceRef, int] = {}
        self.bytes = 0

    def add(self, source: SourceRef, size: int) -> None:
        if size:
            self._sizes[source] = size
            self.bytes += size

    def resolved(self, source: SourceRef) -> None:
        self.bytes -= self._sizes.pop(source, 0)

    def forget(self, partitions: Collection[Partition]) -> None:
        for source in [s for s in self._sizes if s.topic_partition in partitions]:
            self.resolved(source)
