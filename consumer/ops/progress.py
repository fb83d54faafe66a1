"""What the service says it is doing: one line at most every 30 s while it works, and the last
line when it stops.

The figures are the service's own counters (the ones `/metrics` exports), summed over their
labels: triggers consumed, results published, events Meta accepted, events parked, and the
input lag. Nothing is said while nothing moves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from consumer.ops.metrics import Metrics

__all__ = ["ProgressLog"]

log = logging.getLogger("consumer.progress")


@dataclass(frozen=True, slots=True)
class _Totals:
    consumed: int
    results: int
    sent: int
    parked: int

    def __sub__(self, other: _Totals) -> _Totals:
        return _Totals(
            self.consumed - other.consumed,
            self.results - other.results,
            self.sent - other.sent,
            self.parked - other.parked,
        )


def _total(metric: Counter | Gauge) -> int:
    """A metric summed over its labels (its `_total` samples for a counter)."""
    return int(
        sum(
            sample.value
            for family in metric.collect()
            for sample in family.samples
            if not sample.name.endswith("_created")
        )
    )


class ProgressLog:
    """Says every `every_s`, when something moved, what moved since the last line."""

    def __init__(
        self,
        metrics: Metrics,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._every_s = every_s
        self._clock = clock
        self._started = clock()
        self._due = self._started + every_s
        self._said = self._at_start = self._totals()
        self._said_at = self._started

    def _totals(self) -> _Totals:
        m = self._metrics
        return _Totals(
            _total(m.consumed), _total(m.results), _total(m.events_sent), _total(m.parked)
        )

    def turn(self) -> None:
        """Called every loop turn (after the metrics are flushed); cheap until a line is due."""
        now = self._clock()
        if now < self._due:
            return
        self._due = now + self._every_s
        totals = self._totals()
        moved = totals - self._said
        if moved == _Totals(0, 0, 0, 0):
            return
        log.info(
            "working: in the last %.0f s consumed=%d results=%d sent=%d parked=%d lag=%d",
            now - self._said_at,
            moved.consumed,
            moved.results,
            moved.sent,
            moved.parked,
            _total(self._metrics.consumer_lag),
        )
        self._said, self._said_at = totals, now

    def stopped(self) -> None:
        """The last line: what this run did, from its start."""
        done = self._totals() - self._at_start
        log.info(
            "stopped after %.0f s: consumed=%d results=%d sent=%d parked=%d",
            self._clock() - self._started,
            done.consumed,
            done.results,
            done.sent,
            done.parked,
        )
