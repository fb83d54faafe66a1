"""Metrics counted locally and applied once per loop turn export what one update per event
exports."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Gauge, Histogram

from consumer.ops.metrics import Metrics

BUCKETS = (0, 1, 5, 30, 60, 120, 300)


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, tuple[Any, ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        if metric.name == name
        for s in metric.samples
        if not s.name.endswith("_created")
    }


values = st.floats(-10, 10_000, allow_nan=False) | st.sampled_from(BUCKETS)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(values, st.integers(1, 5)), max_size=30), max_size=4))
def test_observations_applied_per_turn_export_what_one_observe_each_exports(turns):
    one_by_one = CollectorRegistry()
    direct = Histogram("h_seconds", "h", buckets=BUCKETS, registry=one_by_one)
    metrics = Metrics()
    batched = Histogram("h_seconds", "h", buckets=BUCKETS, registry=metrics.registry)
    for observed in turns:
        for value, times in observed:  # a value observed `times` times, in one call here
            for _ in range(times):
                direct.observe(value)
            metrics.observe(batched, value, times)
        metrics.flush()
        ours = samples(metrics.registry, "h_seconds")
        theirs = samples(one_by_one, "h_seconds")
        assert ours.keys() == theirs.keys()
        for key, value in theirs.items():
            assert abs(ours[key] - value) <= 1e-6 * max(1.0, abs(value)), key


def test_a_gauge_shifted_per_event_is_moved_once_per_turn():
    metrics = Metrics()
    gauge = Gauge("g_events", "g", registry=metrics.registry)
    for delta in (1, 1, 1, -1):
        metrics.shift(gauge, delta)
    assert metrics.registry.get_sample_value("g_events") == 0  # not applied before the turn ends
    metrics.flush()
    assert metrics.registry.get_sample_value("g_events") == 2
    metrics.shift(gauge, -2)
    metrics.flush()
    assert metrics.registry.get_sample_value("g_events") == 0
