"""Prometheus metrics: names in base units, `_total` counters, low-cardinality labels only.

Labels never carry event ids, contact ids, hashes or tokens. The signal-health gauges are the
one family labelled by dataset, and they show a bounded number of datasets
(`signal_gauges.py`).
"""

from __future__ import annotations

import bisect
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from consumer.errors import LostAnswer
from consumer.ops.signal_gauges import SignalHealthGauges

__all__ = ["Metrics"]

_DURATION_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 750, 1000)
# 0: not ahead (the usual case); 300: the allowed skew (Rules.future_skew_s), past it refused
_AHEAD_BUCKETS = (0, 1, 5, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400)


class Metrics:
    """Every metric of the service, registered in `registry` (a fresh one per test)."""

    def counter(self, metric: Counter, *labels: str) -> Any:
        """`metric.labels(*labels)`, looked up once: the hot path counts every event."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def tally(self, metric: Counter, *labels: str) -> None:
        """Count one, applied at the next `flush`: a dict update per event, one increment per
        series and loop turn."""
        key = (metric, labels)
        self._tallies[key] = self._tallies.get(key, 0) + 1

    def shift(self, gauge: Gauge, delta: int) -> None:
        """Move `gauge` by `delta`, applied at the next `flush`."""
        self._shifts[gauge] = self._shifts.get(gauge, 0) + delta

    def observe(self, histogram: Histogram, value: float, times: int = 1) -> None:
        """Observe `value` (`times` times), applied at the next `flush`: its bucket found here,
        the series of the histogram updated once per loop turn."""
        pending = self._observations.get(histogram)
        if pending is None:
            pending = self._observations[histogram] = _Observations(histogram)
        pending.add(value, times)

    def flush(self) -> None:
        """Apply the tallies, shifts and observations (the loop calls this every turn, and
        before it stops)."""
        for (metric, labels), count in self._tallies.items():
            self.counter(metric, *labels).inc(count)
        self._tallies.clear()
        for gauge, delta in self._shifts.items():
            if delta:
                gauge.inc(delta)
        self._shifts.clear()
        for pending in self._observations.values():
            pending.apply()

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._tallies: dict[tuple[Counter, tuple[str, ...]], int] = {}
        self._shifts: dict[Gauge, int] = {}
        self._observations: dict[Histogram, _Observations] = {}
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "capi_messages_consumed", "Input messages consumed.", ["topic"], registry=r
        )
        self.results = Counter(
            "capi_results",
            "Result records published, by status and reason.",
            ["status", "reason"],
            registry=r,
        )
        self.requests = Counter(
            "capi_requests",
            "Conversions API requests, by outcome and Meta error code.",
            ["outcome", "code"],
            registry=r,
        )
        self.request_duration = Histogram(
            "capi_request_duration_seconds",
            "Conversions API request duration.",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.events_sent = Counter(
            "capi_events_sent", "Events Meta accepted.", ["test"], registry=r
        )
        self.batch_size = Histogram(
            "capi_batch_size_events",
            "Events per Conversions API request.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "capi_in_flight_events",
            "Events handed to the senders and not yet answered by Meta.",
            registry=r,
        )
        self.retries = Counter(
            "capi_request_retries", "Requests retried after a retryable error.", registry=r
        )
        self.outcome_unknown = Counter(
            "capi_requests_outcome_unknown",
            "Requests sent whose answer was lost (Meta may have taken their events), to be sent "
            "again; by cause (timeout, connection, server_error, no_events_received).",
            ["cause"],
            registry=r,
        )
        for cause in LostAnswer:  # at 0 from the start, so that increase() sees the first one
            self.outcome_unknown.labels(cause.value)
        self.already_resolved = Counter(
            "capi_inputs_already_resolved",
            "Inputs found resolved by an instance that died before committing them.",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "capi_consumer_lag_messages",
            "Input messages not yet consumed, per assigned partition (librdkafka statistics).",
            ["topic", "partition"],
            registry=r,
        )
        self.rebalances = Counter(
            "capi_rebalances",
            "Partition assignment changes, by kind (assign, revoke, lost).",
            ["kind"],
            registry=r,
        )
        self.paused_partitions = Gauge(
            "capi_paused_partitions",
            "Assigned input partitions paused (backpressure, restore, schema registry).",
            registry=r,
        )
        self.transactions = Counter(
            "capi_transactions",
            "Kafka transactions of results and offsets, by outcome (committed, aborted).",
            ["outcome"],
            registry=r,
        )
        self.outbox_recovered = Counter(
            "capi_outbox_recovered",
            "Inputs whose Meta answer was found in the outbox after a restart (not sent again).",
            registry=r,
        )
        self.dead_letters = Counter(
            "capi_dead_letters",
            "Input messages copied to the dead-letter topic.",
            ["reason"],
            registry=r,
        )
        self.fields_dropped = Counter(
            "capi_customer_fields_dropped",
            "Customer-information fields left out, by key and reason.",
            ["key", "reason"],
            registry=r,
        )
        self.table_keys = Gauge(
            "capi_table_keys", "Keys held per reference table.", ["table"], registry=r
        )
        self.table_lag = Gauge(
            "capi_table_lag_records",
            "Records of a table's topic not yet applied.",
            ["table"],
            registry=r,
        )
        self.table_bootstrap_seconds = Gauge(
            "capi_table_bootstrap_seconds",
            "How long the tables took to catch up at start.",
            ["table"],
            registry=r,
        )
        self.event_ahead_of_clock = Histogram(
            "capi_event_ahead_of_clock_seconds",
            "How far a consumed trigger's occurred_at is ahead of this consumer's clock (0 when it "
            "is not); past 300 s it is refused as INVALID_EVENT and dead-lettered.",
            buckets=_AHEAD_BUCKETS,
            registry=r,
        )
        self.enrichment = Counter(
            "capi_enrichment_lookups",
            "Table lookups while enriching triggers: hit (used), unused (found, not used), miss.",
            ["source", "result"],
            registry=r,
        )
        self.schema_registry_up = Gauge(
            "capi_schema_registry_up",
            "1 when the Schema Registry answered last (or none is used), 0 while it does not",
            registry=r,
        )
        self.parked = Counter(
            "capi_parked_events",
            "Events parked in the retry topic (each parking, first or again).",
            registry=r,
        )
        self.unparked = Counter(
            "capi_unparked_events",
            "Parked events resolved, by the status of their result.",
            ["status"],
            registry=r,
        )
        self.parked_now = Gauge(
            "capi_parked_events_waiting",
            "Events of the owned partitions waiting in the retry topic.",
            registry=r,
        )
        self.oldest_parked_age = Gauge(
            "capi_oldest_parked_event_age_seconds",
            "How long the oldest waiting parked event has been parked (0 when none is).",
            registry=r,
        )
        self.parked_bytes = Gauge(
            "capi_parked_bytes",
            "Bytes of the parked events kept in the local state (their records as received).",
            registry=r,
        )
        self.parked_budget_bytes = Gauge(
            "capi_parked_budget_bytes",
            "CAPI_MAX_PARKED_BYTES: past it the input pauses until parked events leave.",
            registry=r,
        )
        self.state_full = Gauge(
            "capi_state_full",
            "1 while the state store finds no room (volume or CAPI_STATE_MAX_BYTES): input paused.",
            registry=r,
        )
        self.state_bytes = Gauge(
            "capi_state_bytes",
            "Bytes the state store's pages hold (free pages left out).",
            registry=r,
        )
        self.dedup_ids = Gauge(
            "capi_dedup_ids",
            "Event ids in the dedup window, as counted by the last sweep of the table.",
            registry=r,
        )
        self.dedup_purged = Counter(
            "capi_dedup_ids_purged",
            "Event ids deleted from the dedup table once past the window.",
            registry=r,
        )
        self.breaker_open = Gauge(
            "capi_circuit_breaker_open",
            "1 while Meta fails for every dataset and new input waits (the breaker is open).",
            registry=r,
        )
        self.last_success = Gauge(
            "capi_last_successful_send_timestamp_seconds",
            "When Meta last accepted a request (Unix seconds).",
            registry=r,
        )
        # computed from the whole signals topic, by one instance (`service/signal_refresh.py`)
        self.signal_health = SignalHealthGauges()
        r.register(self.signal_health)


class _Observations:
    """Observations of an unlabelled histogram not applied yet: a count per bucket and their
    sum, added to the histogram's series as `Histogram.observe` adds one observation (the
    sum, then the one bucket whose upper bound is the first at or above the value; the
    exposition makes the buckets cumulative). `tests/unit/ops/test_metrics.py` holds the
    exported samples equal to those of one `observe` per value."""

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._bounds: list[float] = list(histogram._upper_bounds)  # noqa: SLF001
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def add(self, value: float, times: int = 1) -> None:
        self._counts[bisect.bisect_left(self._bounds, value)] += times
        self._sum += value * times

    def apply(self) -> None:
        if not any(self._counts):
            return
        h = self._histogram
        h._sum.inc(self._sum)  # noqa: SLF001
        for bucket, count in zip(h._buckets, self._counts, strict=True):  # noqa: SLF001
            if count:
                bucket.inc(count)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
