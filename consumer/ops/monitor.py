"""What the service tells its operators: the gauges fed from librdkafka statistics and the
tables, and the answers of `/healthz` and `/readyz`."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Collection

from consumer.ops.metrics import Metrics
from consumer.store.table_reader import TablesFeed

__all__ = ["Monitor"]


class Monitor:
    """Feeds the gauges the loop does not own (librdkafka statistics, table lag and size)
    and answers the health checks from when the loop last turned."""

    def __init__(
        self,
        metrics: Metrics,
        input_topic: str,
        ready: threading.Event,
        registry_problem: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._metrics = metrics
        self._topic = input_topic
        self._ready = ready
        self._registry_problem = registry_problem
        self._registry_up: bool | None = None
        self._starting = "starting"
        self._last_turn = time.monotonic()
        # the loop waits inside a turn for a dependency it names (a broker that does not
        # answer a commit): when it last said so, and what
        self._last_wait = 0.0
        self._waiting_for = ""
        self._brokers_up: int | None = None  # from librdkafka statistics; None before any
        self._due = 0.0  # when to look at the tables (lag, key counts) again
        self._breaker_open = False

    def turned(self) -> None:
        """The main loop turned once more."""
        self._last_turn = time.monotonic()
        up = self._registry_problem() is None
        if up is not self._registry_up:
            self._registry_up = up
            self._metrics.schema_registry_up.set(1 if up else 0)

    def waiting(self, what: str) -> None:
        """The loop waits inside a turn for `what` (said again at each pause): it is alive."""
        self._last_wait = time.monotonic()
        self._waiting_for = what

    def starting(self, step: str) -> None:
        """What the instance is doing before it takes traffic (said by `/readyz`)."""
        self._starting = step

    def on_stats(self, stats_json: str, owned: Collection[tuple[str, int]]) -> None:
        """librdkafka statistics (every 5 s): consumer lag per partition, brokers up."""
        try:
            stats = json.loads(stats_json)
        except ValueError:
            return
        brokers = stats.get("brokers", {}).values()
        self._brokers_up = sum(1 for b in brokers if b.get("state") == "UP")
        partitions = stats.get("topics", {}).get(self._topic, {}).get("partitions", {})
        for number, data in partitions.items():
            partition = int(number)
            lag = _lag(data)
            if partition >= 0 and (self._topic, partition) in owned and lag is not None:
                self._metrics.consumer_lag.labels(self._topic, str(partition)).set(lag)

    def breaker(self, is_open: bool) -> None:
        """The circuit breaker opened or closed (called from a sender thread)."""
        self._breaker_open = is_open
        self._metrics.breaker_open.set(1 if is_open else 0)

    def released(self, topic: str, partition: int) -> None:
        with contextlib.suppress(KeyError):
            self._metrics.consumer_lag.remove(topic, str(partition))

    def tables(self, reader: TablesFeed) -> None:
        """Lag and key counts (kept by the tables, no scan) every few seconds."""
        now = time.monotonic()
        if now < self._due:
            return
        for name, lag in reader.lag().items():
            self._metrics.table_lag.labels(name).set(lag)
        for table in reader.tables:
            self._metrics.table_keys.labels(table.name).set(len(table))
        self._due = now + 5

    def alive_problems(self, stuck_after_s: float = 120.0) -> list[str]:
        """What makes this process unhealthy (an empty list when it is fine): a loop that
        neither turned nor said what it waits for in `stuck_after_s`."""
        idle = time.monotonic() - max(self._last_turn, self._last_wait)
        if self._ready.is_set() and idle > stuck_after_s:
            return [f"main loop has not turned for {idle:.0f} s"]
        return []

    def ready_problems(self, stuck_after_s: float = 30.0) -> list[str]:
        """What keeps this instance from taking traffic (an empty list when ready)."""
        if not self._ready.is_set():
            return [f"starting: {self._starting}"]
        problems = []
        registry = self._registry_problem()
        if registry is not None:
            problems.append(f"schema registry does not answer: {registry}")
        if self._brokers_up == 0:
            problems.append("no Kafka broker is reachable")
        if self._breaker_open:
            problems.append("circuit breaker open: Meta fails for every dataset; input waits")
        if self._last_wait > self._last_turn:
            problems.append(f"waiting for {self._waiting_for}")
        idle = time.monotonic() - max(self._last_turn, self._last_wait)
        if idle > stuck_after_s:
            problems.append(f"main loop has not turned for {idle:.0f} s")
        return problems


def _lag(partition: dict[str, int]) -> int | None:
    """Messages of a partition not yet consumed: from the consumer's position (`app_offset`) to
    the last stable offset (what `read_committed` may read). librdkafka's own `consumer_lag`
    counts from the offset the consumer committed itself, which a transactional producer's
    commits never update: it stays -1."""
    end = partition.get("ls_offset", -1)
    if end < 0:
        end = partition.get("hi_offset", -1)
    position = partition.get("app_offset", -1)
    if end < 0 or position < 0:
        return None
    return max(0, end - position)
