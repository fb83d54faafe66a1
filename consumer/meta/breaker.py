"""The circuit breaker: when Meta fails for everyone, new input waits in Kafka.

One dataset failing is that dataset's problem: its events are parked and the others flow. When
temporary failures follow one another across datasets (or Meta cannot be reached at all), the
whole Graph API is away: parking the whole stream would copy it into the retry topic for
nothing, so the breaker opens, the input partitions pause (the consumer lag is the buffer), and
single parked events probe Meta at growing intervals. Any answer from Meta (an acceptance, a
throttle, a rejection) closes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["CircuitBreaker"]

log = logging.getLogger(__name__)


class CircuitBreaker:
    """Counts consecutive temporary failures; safe to use from the sender threads."""

    def __init__(
        self,
        *,
        failures_to_open: int = 8,
        probe_min_s: float = 5.0,
        probe_max_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] = lambda is_open: None,
    ) -> None:
        self._threshold = failures_to_open
        self._probe_min_s = probe_min_s
        self._probe_max_s = probe_max_s
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._streak = 0
        self._datasets: set[str] = set()
        self._unreachable = 0  # of the streak, failures to reach Meta at all
        self._open = False
        self._probe_every_s = probe_min_s
        self._next_probe = 0.0

    @property
    def is_open(self) -> bool:
        return self._open

    def answered(self) -> None:
        """Meta answered a request (whatever it said): it is there."""
        with self._lock:
            self._streak, self._unreachable = 0, 0
            self._datasets.clear()
            was_open, self._open = self._open, False
            self._probe_every_s = self._probe_min_s
        if was_open:
            log.warning("circuit breaker closed: Meta answers again; input resumes")
            self._on_change(False)

    def failed(self, dataset_id: str, *, unreachable: bool) -> None:
        """A temporary failure: 5xx, a timeout, or (`unreachable`) no connection at all."""
        with self._lock:
            self._streak += 1
            self._datasets.add(dataset_id)
            self._unreachable += int(unreachable)
            everyone = len(self._datasets) > 1 or self._unreachable == self._streak
            opens = not self._open and self._streak >= self._threshold and everyone
            if opens:
                self._open = True
                self._next_probe = self._clock() + self._probe_every_s
        if opens:
            log.error(
                "circuit breaker open: %d temporary failures in a row across %d datasets "
                "(%d without reaching Meta); input waits, parked events probe",
                self._streak,
                len(self._datasets),
                self._unreachable,
            )
            self._on_change(True)

    def probe_due(self) -> bool:
        """While open: whether a probe may go now (then the next one waits twice as long)."""
        with self._lock:
            if not self._open or self._clock() < self._next_probe:
                return False
            self._probe_every_s = min(self._probe_every_s * 2, self._probe_max_s)
            self._next_probe = self._clock() + self._probe_every_s
            return True
