"""Per-partition offset tracking: an offset is committable only when the results of every
earlier message of its partition are durably published.
"""

from __future__ import annotations

from collections import deque

__all__ = ["OffsetTracker"]


class _PartitionState:
    __slots__ = ("done", "order")

    def __init__(self) -> None:
        self.order: deque[int] = deque()
        self.done: set[int] = set()


class OffsetTracker:
    """Tracks consumed offsets per (topic, partition) until their results are delivered."""

    def __init__(self) -> None:
        self._partitions: dict[tuple[str, int], _PartitionState] = {}

    def __len__(self) -> int:
        """Messages consumed whose result is not yet delivered."""
        return sum(len(s.order) - len(s.done) for s in self._partitions.values())

    def track(self, topic: str, partition: int, offset: int) -> None:
        state = self._partitions.get((topic, partition))
        if state is None:  # not setdefault: it would build a state for every message
            state = self._partitions[(topic, partition)] = _PartitionState()
        if state.order and offset <= state.order[-1]:
            raise ValueError(f"offset {offset} of {topic}[{partition}] went backwards")
        state.order.append(offset)

    def done(self, topic: str, partition: int, offset: int) -> None:
        state = self._partitions.get((topic, partition))
        if state is not None:
            state.done.add(offset)

    def release(self) -> dict[tuple[str, int], list[int]]:
        """For each partition that advanced: the offsets now behind it, in order.

        They leave the tracker; the next offset to consume is the last one + 1.
        """
        ready: dict[tuple[str, int], list[int]] = {}
        for key, state in self._partitions.items():
            released = []
            while state.order and state.order[0] in state.done:
                offset = state.order.popleft()
                state.done.discard(offset)
                released.append(offset)
            if released:
                ready[key] = released
        return ready

    def pending(self, topic: str, partition: int) -> int:
        state = self._partitions.get((topic, partition))
        return 0 if state is None else len(state.order) - len(state.done)

    def forget(self, topic: str, partition: int) -> None:
        """Stop tracking a partition that is no longer ours."""
        self._partitions.pop((topic, partition), None)
