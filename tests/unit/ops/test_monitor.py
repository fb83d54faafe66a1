"""The gauges fed from librdkafka's statistics."""

import json
import threading

from prometheus_client import CollectorRegistry

from consumer.ops.metrics import Metrics
from consumer.ops.monitor import Monitor


def _stats(partitions):
    return json.dumps({"brokers": {}, "topics": {"in": {"partitions": partitions}}})


def test_consumer_lag_counts_from_the_position_to_the_last_stable_offset():
    metrics = Metrics(CollectorRegistry())
    monitor = Monitor(metrics, "in", threading.Event())
    # offsets committed by transactions: librdkafka's own consumer_lag stays -1
    committed_elsewhere = {"consumer_lag": -1, "committed_offset": -1001}
    monitor.on_stats(
        _stats(
            {
                "0": {**committed_elsewhere, "hi_offset": 120, "ls_offset": 100, "app_offset": 40},
                "1": {**committed_elsewhere, "hi_offset": 50, "ls_offset": 50, "app_offset": -1001},
                "2": {**committed_elsewhere, "hi_offset": 9, "ls_offset": 9, "app_offset": 9},
                "-1": {
                    **committed_elsewhere,
                    "hi_offset": -1001,
                    "ls_offset": -1001,
                    "app_offset": -1001,
                },
            }
        ),
        owned={("in", 0), ("in", 1)},
    )

    def lag(partition):
        return metrics.registry.get_sample_value(
            "capi_consumer_lag_messages", {"topic": "in", "partition": partition}
        )

    assert lag("0") == 60  # read_committed stops at the last stable offset
    assert lag("1") is None  # nothing consumed yet: unknown, not guessed
    assert lag("2") is None  # not ours


def test_a_loop_that_says_what_it_waits_for_is_alive_but_not_ready(monkeypatch):
    """A broker away in the middle of a commit: the loop does not turn for minutes, but it
    says at each pause what it waits for; the liveness probe must not restart it, the
    readiness probe says why it takes no traffic. A loop silent that long is stuck."""
    now = [1000.0]
    monkeypatch.setattr("consumer.ops.monitor.time.monotonic", lambda: now[0])
    ready = threading.Event()
    monitor = Monitor(Metrics(CollectorRegistry()), "in", ready)
    ready.set()
    monitor.turned()
    for _ in range(60):  # three minutes of pauses of 5 s
        now[0] += 5
        monitor.waiting("the broker to commit the transaction (Local: Timed out)")
    assert monitor.alive_problems(stuck_after_s=120) == []
    assert "waiting for the broker to commit the transaction" in monitor.ready_problems()[0]
    now[0] += 121
    assert monitor.alive_problems(stuck_after_s=120) == ["main loop has not turned for 121 s"]
    monitor.turned()
    assert monitor.ready_problems() == []
