"""Parked events back into the pipeline: those that are due, a bounded number at a time.

Every half second the loop asks for the parked events of its restored partitions that are due,
leaving out the datasets Meta asked to wait (its usage headers). At most `max_taken` are out at
once, so memory stays bounded whatever the retry topic holds. While the circuit breaker is open,
one parked event at a time goes as a probe, at the breaker's growing intervals, due or not;
when it closes, every parked event is due at once (what waited for the outage to end goes
first, not after the longer delay its failed probes earned).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from consumer.events.parking import ParkedEvent
from consumer.meta.breaker import CircuitBreaker
from consumer.ops.metrics import Metrics
from consumer.service.ownership import Ownership
from consumer.service.retry_topic import RetryTopic
from consumer.service.triage import Resolved, Send, Unpark
from consumer.store.recovery import PartitionRecovery

__all__ = ["ParkedRetries", "ParkedTriage", "SendingState"]

_EVERY_S = 0.5
_REPORT_EVERY_S = 5.0
_FAR_FUTURE_MS = 2**62


class ParkedTriage(Protocol):
    """Decides a due parked event again (`Triage`)."""

    def parked(self, parked: ParkedEvent) -> Resolved | Send | Unpark | None: ...


class SendingState(Protocol):
    """What the scheduler asks of the dispatcher: the breaker, the datasets Meta asked to
    wait."""

    @property
    def breaker(self) -> CircuitBreaker: ...

    def throttled_datasets(self) -> list[str]: ...


class ParkedRetries:
    """Takes due parked events and triages them again (today's tables and credentials)."""

    def __init__(
        self,
        *,
        retry: RetryTopic,
        triage: ParkedTriage,
        restore: PartitionRecovery,
        dispatcher: SendingState,
        owned: Ownership,
        metrics: Metrics,
        max_taken: int,
        clock: Callable[[], float] = time.monotonic,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._retry = retry
        self._triage = triage
        self._restore = restore
        self._dispatcher = dispatcher
        self._owned = owned
        self._metrics = metrics
        self._max_taken = max_taken
        self._clock = clock
        self._clock_ms = clock_ms
        self._next_turn = 0.0
        self._next_report = 0.0
        self._breaker_was_open = False

    def turn(self) -> list[Resolved | Send | Unpark]:
        """The parked events to resolve or send now."""
        now = self._clock()
        if now < self._next_turn:
            return []
        self._next_turn = now + _EVERY_S
        partitions = self._owned.numbers() - self._restore.restoring()
        self._report(now, partitions)
        breaker = self._dispatcher.breaker
        if self._breaker_was_open and not breaker.is_open:
            self._retry.table.due_now(partitions)
        self._breaker_was_open = breaker.is_open
        if breaker.is_open:
            if not breaker.probe_due():
                return []
            due = self._retry.take_due(
                partitions, self._retry.taken() + 1, due_by_ms=_FAR_FUTURE_MS
            )
        else:
            due = self._retry.take_due(
                partitions, self._max_taken, self._dispatcher.throttled_datasets()
            )
        verdicts: list[Resolved | Send | Unpark] = []
        for parked in due:
            verdict = self._triage.parked(parked)
            if verdict is None:
                self._retry.untake(parked.event_id)
            else:
                verdicts.append(verdict)
        return verdicts

    def _report(self, now: float, partitions: set[int]) -> None:
        if now < self._next_report:
            return
        self._next_report = now + _REPORT_EVERY_S
        count, oldest = self._retry.table.summary(partitions)
        self._metrics.parked_now.set(count)
        age_s = 0.0 if oldest is None else max(0.0, (self._clock_ms() - oldest) / 1000)
        self._metrics.oldest_parked_age.set(age_s)
