"""The signal-health gauges: what the last refresh found (`consumer/events/signal_health.py`),
on the one instance that computes them.

A collector rather than gauges set one series at a time: each scrape answers with the last
`SignalHealth` shown, so the series of a dataset event no longer shown are gone with it, and an
instance that does not compute them (`clear`) answers every family without a sample. Taking
`max()` over the instances gives the one answer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from consumer.events.signal_health import SignalHealth

__all__ = ["SignalHealthGauges"]


class SignalHealthGauges:
    """A Prometheus collector of the last `SignalHealth` shown; `show` and `clear` may be
    called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shown: tuple[SignalHealth, float] | None = None

    def show(self, health: SignalHealth, refreshed_at: float) -> None:
        """Answer with `health`, refreshed at `refreshed_at` (Unix seconds), from now on."""
        with self._lock:
            self._shown = (health, refreshed_at)

    def clear(self) -> None:
        """This instance no longer computes the signal health: no sample at all."""
        with self._lock:
            self._shown = None

    def describe(self) -> Iterator[Metric]:
        return iter(_families(None))

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            shown = self._shown
        return iter(_families(shown))


def _families(shown: tuple[SignalHealth, float] | None) -> list[Metric]:
    events = GaugeMetricFamily(
        "capi_signal_events",
        "Dataset events with a result in the last 14 complete UTC days or today.",
    )
    below = GaugeMetricFamily(
        "capi_signal_events_below_minimum",
        "Of those, the ones with fewer SENT events over the last 7 complete UTC days than "
        "Meta's weekly minimum (50).",
    )
    fell = GaugeMetricFamily(
        "capi_signal_events_fell_below_minimum",
        "Of those, the ones whose previous 7 days reached the minimum and the last 7 did not.",
    )
    weekly_sent = GaugeMetricFamily(
        "capi_signal_weekly_sent",
        "SENT events over the last 7 complete UTC days, for the dataset events that fell below "
        "the minimum and then the lowest others (at most CAPI_SIGNAL_HEALTH_SERIES).",
        labels=["dataset", "event_name"],
    )
    fell_series = GaugeMetricFamily(
        "capi_signal_fell_below_minimum",
        "1 for a dataset event that fell below the minimum (at most CAPI_SIGNAL_HEALTH_SERIES).",
        labels=["dataset", "event_name"],
    )
    coverage = GaugeMetricFamily(
        "capi_signal_match_key_coverage",
        "Share of the SENT events of the last 7 complete UTC days, all datasets together, "
        "carrying each match key.",
        labels=["key"],
    )
    refreshed = GaugeMetricFamily(
        "capi_signal_health_refreshed_timestamp_seconds",
        "When the signal-health gauges were last computed (Unix seconds).",
    )
    if shown is not None:
        health, refreshed_at = shown
        events.add_metric([], health.events)
        below.add_metric([], health.below_minimum)
        fell.add_metric([], health.fell_below)
        for week in health.shown:
            weekly_sent.add_metric([week.dataset_id, week.event_name], week.sent)
            if week.fell_below:
                fell_series.add_metric([week.dataset_id, week.event_name], 1)
        for key, share in health.coverage.items():
            coverage.add_metric([key], share)
        refreshed.add_metric([], refreshed_at)
    return [events, below, fell, weekly_sent, fell_series, coverage, refreshed]
