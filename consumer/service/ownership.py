"""The input partitions this instance owns: one owner changes them, everyone else asks."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator

from consumer.events.results import Partition

__all__ = ["Ownership"]


class Ownership(Collection[Partition]):
    """The live set of owned input partitions. Only the rebalance changes it (`arrived`,
    `left`); checkpoint, flow control, triage and the retry scheduler read it, and the
    signal-health refresh asks it from its own thread whether partition 0 is here (a set's
    membership test and update are each one step under the GIL)."""

    def __init__(self) -> None:
        self._partitions: set[Partition] = set()

    def __contains__(self, partition: object) -> bool:
        return partition in self._partitions

    def __iter__(self) -> Iterator[Partition]:
        return iter(sorted(self._partitions))

    def __len__(self) -> int:
        return len(self._partitions)

    def numbers(self) -> set[int]:
        """The owned partitions' numbers (results and parked events use the same ones)."""
        return {p for _, p in self._partitions}

    def arrived(self, partitions: Iterable[Partition]) -> None:
        self._partitions.update(partitions)

    def left(self, partitions: Iterable[Partition]) -> None:
        self._partitions.difference_update(partitions)
