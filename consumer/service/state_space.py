"""Room for the local state: the dedup window kept while running, the store's bytes watched,
the parked events held to their budget.

Once a second the dedup table's sweep deletes a slice of expired ids, and the gauges say how
full the store is. The input waits (`input_waits`) while the store finds no room for a write
(the volume, or `CAPI_STATE_MAX_BYTES`) and while the parked events hold `CAPI_MAX_PARKED_BYTES`
or more (resumed below 90 % of it): the consumer lag is then the buffer, nothing is lost, and
the partitions stay this instance's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from consumer.ops.metrics import Metrics
from consumer.store.dedup import Dedup
from consumer.store.parked import ParkedTable
from consumer.store.sqlite import StateStore

__all__ = ["StateSpace"]

log = logging.getLogger(__name__)

_EVERY_S = 1.0
_RESUME_BELOW = 0.9  # of the parked budget


class StateSpace:
    """Keeps the dedup window and says whether the input must wait for room."""

    def __init__(
        self,
        *,
        store: StateStore,
        dedup: Dedup,
        parked: ParkedTable,
        max_parked_bytes: int,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._dedup = dedup
        self._parked = parked
        self._max_parked_bytes = max_parked_bytes
        self._metrics = metrics
        self._clock = clock
        self._next_turn = 0.0
        self._over_budget = False
        metrics.parked_budget_bytes.set(max_parked_bytes)

    def turn(self) -> None:
        """Once per loop turn: a slice of the sweep and the gauges, once a second."""
        now = self._clock()
        if now < self._next_turn:
            return
        self._next_turn = now + _EVERY_S
        purged = self._dedup.purge_step()
        if purged:
            self._metrics.dedup_purged.inc(purged)
        if self._dedup.ids is not None:
            self._metrics.dedup_ids.set(self._dedup.ids)
        parked_bytes = self._parked.stored_bytes()
        self._metrics.parked_bytes.set(parked_bytes)
        self._metrics.state_bytes.set(self._store.used_bytes())
        self._metrics.state_full.set(1 if self._store.full else 0)
        if not self._over_budget and parked_bytes >= self._max_parked_bytes:
            self._over_budget = True
            log.warning(
                "parked events hold %d bytes, their budget is %d: input paused until they leave",
                parked_bytes,
                self._max_parked_bytes,
            )
        elif self._over_budget and parked_bytes < self._max_parked_bytes * _RESUME_BELOW:
            self._over_budget = False
            log.info("parked events back under their budget bytes=%d: input resumed", parked_bytes)

    def input_waits(self) -> bool:
        """The store is full, or the parked events hold their budget."""
        return self._store.full or self._over_budget
