"""The signal-health gauges answer with the last health shown: the series of dataset events no
longer shown are gone, and an instance that does not compute them has no sample at all."""

import re

from prometheus_client import CollectorRegistry, generate_latest

from consumer.events.signal_health import SignalHealth, WeeklySent
from consumer.ops.metrics import Metrics

FAMILIES = {
    "capi_signal_events",
    "capi_signal_events_below_minimum",
    "capi_signal_events_fell_below_minimum",
    "capi_signal_weekly_sent",
    "capi_signal_fell_below_minimum",
    "capi_signal_match_key_coverage",
    "capi_signal_health_refreshed_timestamp_seconds",
}


def _samples(metrics):
    """Every signal-health sample: (name, labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in metrics.registry.collect()
        if family.name in FAMILIES
        for sample in family.samples
    }


def _exposed_families(metrics):
    text = generate_latest(metrics.registry).decode()
    return set(re.findall(r"^# TYPE (capi_signal_\w+) gauge$", text, re.MULTILINE))


def _health(*shown, coverage=None):
    return SignalHealth(
        events=9,
        below_minimum=4,
        fell_below=sum(week.fell_below for week in shown) + 10,
        shown=shown,
        coverage=coverage or {},
    )


def test_the_health_shown_is_every_sample():
    metrics = Metrics(CollectorRegistry())
    health = _health(
        WeeklySent("ds-1", "Lead", 12, True),
        WeeklySent("ds-2", "Purchase", 3, False),
        coverage={"em": 0.75, "ph": 0.5},
    )
    metrics.signal_health.show(health, 1_700_000_000.0)
    assert _samples(metrics) == {
        ("capi_signal_events", ()): 9,
        ("capi_signal_events_below_minimum", ()): 4,
        ("capi_signal_events_fell_below_minimum", ()): 11,
        ("capi_signal_weekly_sent", (("dataset", "ds-1"), ("event_name", "Lead"))): 12,
        ("capi_signal_weekly_sent", (("dataset", "ds-2"), ("event_name", "Purchase"))): 3,
        ("capi_signal_fell_below_minimum", (("dataset", "ds-1"), ("event_name", "Lead"))): 1,
        ("capi_signal_match_key_coverage", (("key", "em"),)): 0.75,
        ("capi_signal_match_key_coverage", (("key", "ph"),)): 0.5,
        ("capi_signal_health_refreshed_timestamp_seconds", ()): 1_700_000_000.0,
    }


def test_a_dataset_event_no_longer_shown_loses_its_series():
    metrics = Metrics(CollectorRegistry())
    metrics.signal_health.show(
        _health(WeeklySent("ds-1", "Lead", 12, True), WeeklySent("ds-2", "Lead", 3, False)), 1.0
    )
    metrics.signal_health.show(_health(WeeklySent("ds-3", "Lead", 0, False)), 2.0)
    labelled = {key for key in _samples(metrics) if key[1]}
    assert labelled == {("capi_signal_weekly_sent", (("dataset", "ds-3"), ("event_name", "Lead")))}


def test_an_instance_that_does_not_compute_them_exports_the_families_without_samples():
    metrics = Metrics(CollectorRegistry())
    assert _samples(metrics) == {}
    assert _exposed_families(metrics) == FAMILIES
    metrics.signal_health.show(_health(WeeklySent("ds-1", "Lead", 12, True)), 1.0)
    metrics.signal_health.clear()
    assert _samples(metrics) == {}
    assert _exposed_families(metrics) == FAMILIES
