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
        state = self._partitions.setdefault((topic, partition), _PartitionState())
        if state.order and offset <= state.order[-1]:
            raise ValueError(f"offset {offset} of {topic}[{partition}] went backwards")
        state.order.append(offset)

    def done(self, topic: str, partition: int, offset: int) -> None:
        state = self._partitions.get((topic, partition))
        if state is not None:
            state.done.add(offset)

    def committable(self) -> dict[tuple[str, int], int]:
        """For each partition that advanced: the next offset to consume (last done + 1)."""
        ready: dict[tuple[str, int], int] = {}
        for key, state in self._partitions.items():
            last = None
            while state.order and state.order[0] in state.done:
                last = state.order.popleft()
                state.done.discard(last)
            if last is not None:
                ready[key] = last + 1
        return ready

    def pending(self, topic: str, partition: int) -> int:
        state = self._partitions.get((topic, partition))
        return 0 if state is None else len(state.order) - len(state.done)

    def forget(self, topic: str, partition: int) -> None:
        """Stop tracking a partition that is no longer ours."""
        self._partitions.pop((topic, partition), None)
