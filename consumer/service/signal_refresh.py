"""The signal-health gauges kept fresh: every `CAPI_SIGNAL_HEALTH_INTERVAL_S`, the instance that
owns input partition 0 reads the whole signals topic and shows its health
(`consumer/events/signal_health.py`, `consumer/ops/signal_gauges.py`).

One instance computes them, so that the instances' `/metrics` taken together give one answer:
the owner of input partition 0, which every input topic has. The others answer the families
without a sample. An instance that lets partition 0 go clears its gauges within a second; the
one that takes it computes them at once.

The read runs on a thread of its own, with a consumer of its own outside the group, and never
holds the main loop up. A read that fails (a broker that does not answer, a read that stalls)
is logged once and tried again at the next interval; meanwhile the gauges keep their values and
`capi_signal_health_refreshed_timestamp_seconds` tells how old they are.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from confluent_kafka import KafkaException

from consumer.errors import CapiConsumerError
from consumer.events.signal_health import first_day_read, signal_health
from consumer.events.signals import utc_day
from consumer.ops.signal_gauges import SignalHealthGauges
from consumer.store.signals_topic import SignalRecords

__all__ = ["SignalHealthRefresh", "SignalsRead"]

log = logging.getLogger(__name__)

_LOOK_EVERY_S = 1.0  # how soon a change of the owner of partition 0 is seen
_JOIN_S = 10.0


class SignalsRead(Protocol):
    """The signals topic read to its end, keeping the days from `since`; cut short once
    `stopped()` (`consumer/store/signals_topic.py`)."""

    def __call__(self, *, since: dt.date, stopped: Callable[[], bool]) -> SignalRecords: ...


class SignalHealthRefresh:
    """Reads the signals topic with `read` every `interval_s` while `owns_partition_0()`, and
    shows what it finds in `gauges`."""

    def __init__(
        self,
        read: SignalsRead,
        owns_partition_0: Callable[[], bool],
        gauges: SignalHealthGauges,
        *,
        interval_s: float,
        series: int,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._owns = owns_partition_0
        self._gauges = gauges
        self._interval_s = interval_s
        self._series = series
        self._clock_ms = clock_ms
        self._monotonic = monotonic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._due: float | None = None  # when to read again; None: at once
        self._shown = False
        self._failing = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="signal-health", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread (a read in progress stops within a second)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(_JOIN_S)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.turn()
            except Exception:  # the gauges go stale and say so; the service goes on
                log.exception("signal health: refresh failed")
            self._stop.wait(_LOOK_EVERY_S)

    def turn(self) -> None:
        """One look: the gauges cleared when partition 0 is not this instance's, refreshed
        when they are due."""
        if not self._owns():
            if self._shown:
                self._gauges.clear()
                self._shown = False
                log.info("signal health: input partition 0 left, its gauges with it")
            self._due = None
            return
        now = self._monotonic()
        if self._due is not None and now < self._due:
            return
        self._due = now + self._interval_s
        today = self._today()
        try:
            records = self._read(since=first_day_read(today), stopped=self._stop.is_set)
        except (CapiConsumerError, KafkaException) as exc:
            if not self._failing:
                log.warning(
                    "signal health: the signals topic could not be read (%s); trying again "
                    "every %.0f s",
                    exc,
                    self._interval_s,
                )
                self._failing = True
            return
        if self._stop.is_set() or not self._owns():
            return  # cut short, or no longer ours: nothing to show
        health = signal_health(records.latest, today, self._series)
        self._gauges.show(health, self._clock_ms() / 1000)
        self._shown = True
        if self._failing:
            log.info("signal health: the signals topic is read again")
            self._failing = False
        log.debug(
            "signal health refreshed records=%d seconds=%.2f events=%d below_minimum=%d "
            "fell_below=%d",
            records.records,
            self._monotonic() - now,
            health.events,
            health.below_minimum,
            health.fell_below,
        )

    def _today(self) -> dt.date:
        return utc_day(self._clock_ms())
