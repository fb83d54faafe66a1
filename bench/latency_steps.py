"""Where an event's latency goes: each step of each event through the service, timed.

The `latency_steps` part of `bench/bench.py` runs the service with `bench/latency_trace` on its
`PYTHONPATH`: its `sitecustomize` calls `install` when `TRACE_ENV` names a file, and `install`
wraps three public methods of the running service to note when each message was consumed
(`Rebalance.consume`), when each event's request went out and its answer came back
(`Dispatcher.deliver`, in the sender threads) and when each transaction began and ended
(`Publisher.commit`). The file is written when the service exits. The results carry when the
trigger was produced and when its result was built, and the benchmark's reader notes when each
became readable: `steps` lines these up, event by event, into the steps below.

Wrapping adds a little work per message and per event sent (a dictionary entry each): the steps,
not the run's own latency, are what this part is for.
"""

from __future__ import annotations

import atexit
import json
import statistics
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["STEPS", "TRACE_ENV", "Timeline", "install", "p99", "steps"]

TRACE_ENV = "BENCH_LATENCY_TRACE"

# step -> what it covers (in the order an event goes through them)
STEPS = (
    ("first hop", "the trigger produced to consumed by the service"),
    ("to the request", "consumed to its request sent: triage, then the batch's linger"),
    ("Meta's answer", "the request sent to its answer read (the sandbox, a sender thread)"),
    ("to the result", "the answer read to its result built by the loop"),
    ("to the commit", "the result built to the start of the transaction that publishes it"),
    ("the commit", "the transaction: the offsets sent, the records flushed, the commit"),
    ("second hop", "the transaction committed to the result read"),
    ("in all", "the trigger produced to its result read"),
)

# one result read: its input partition and offset, when its trigger was produced, when the
# result was built, when it was read (ms)
Timeline = tuple[int, int, float, float, float]


def install(out: Path) -> Callable[[], None]:
    """Time the running service's steps; write them to `out` when the process exits (and when
    the function returned is called)."""
    from consumer.kafka.publisher import Publisher
    from consumer.meta.dispatch import Dispatcher
    from consumer.service.rebalance import Rebalance

    consumed: dict[str, float] = {}
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}
    commits: list[tuple[float, float]] = []
    lock = threading.Lock()

    consume = Rebalance.consume
    deliver = Dispatcher.deliver
    commit = Publisher.commit

    def timed_consume(self: Any, *args: Any, **kwargs: Any) -> Any:
        messages = consume(self, *args, **kwargs)
        now = time.time() * 1000
        for message in messages:
            consumed.setdefault(f"{message.partition()}:{message.offset()}", now)
        return messages

    def timed_deliver(self: Any, attempt: Any) -> Any:
        started = time.time() * 1000
        delivery = deliver(self, attempt)
        ended = time.time() * 1000
        keys = [f"{i.source.partition}:{i.source.offset}" for i in attempt.batch.items]
        with lock:
            for key in keys:
                sent.setdefault(key, started)
                answered[key] = ended
        return delivery

    def timed_commit(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.time() * 1000
        try:
            return commit(self, *args, **kwargs)
        finally:
            commits.append((started, time.time() * 1000))

    def write() -> None:
        with lock:
            trace = {
                "consumed": consumed,
                "sent": sent,
                "answered": answered,
                "commits": commits,
            }
            out.write_text(json.dumps(trace))

    Rebalance.consume = timed_consume  # type: ignore[method-assign]
    Dispatcher.deliver = timed_deliver  # type: ignore[method-assign]
    Publisher.commit = timed_commit  # type: ignore[method-assign]
    atexit.register(write)
    return write


def steps(trace_file: Path, timeline: Iterable[Timeline]) -> dict[str, Any]:
    """Each step's mean and p99 (ms) over the events sent to Meta, and how much of the run's
    time the loop spent in commits."""
    trace = json.loads(trace_file.read_text())
    commits = sorted(trace["commits"])
    starts = [start for start, _ in commits]
    durations: dict[str, list[float]] = {name: [] for name, _ in STEPS}
    first_read, last_read = float("inf"), 0.0
    for partition, offset, produced, built, read in timeline:
        first_read, last_read = min(first_read, read), max(last_read, read)
        key = f"{partition}:{offset}"
        at = bisect_left(starts, built)
        if key not in trace["sent"] or key not in trace["consumed"] or at == len(commits):
            continue  # not sent to Meta (refused, a duplicate), or its commit not traced
        commit_start, commit_end = commits[at]
        marks = (
            produced,
            trace["consumed"][key],
            trace["sent"][key],
            trace["answered"][key],
            built,
            commit_start,
            commit_end,
            read,
        )
        for (name, _), begin, end in zip(STEPS, marks, marks[1:], strict=False):
            durations[name].append(end - begin)
        durations["in all"].append(read - produced)
    during = [(s, e) for s, e in commits if first_read <= s <= last_read]
    committing = sum(e - s for s, e in during)
    commit_ms = sorted(e - s for s, e in during) or [0.0]
    return {
        "events": len(durations["in all"]),
        "steps": {
            name: {"mean_ms": round(statistics.fmean(values), 1), "p99_ms": round(p99(values), 1)}
            for name, values in durations.items()
            if values
        },
        "commits": len(during),
        "commit_p50_ms": round(statistics.median(commit_ms), 1),
        "commit_p90_ms": round(commit_ms[int(len(commit_ms) * 0.9)], 1),
        "share_of_time_committing": round(committing / max(1.0, last_read - first_read), 3),
    }


def p99(values: list[float]) -> float:
    """The 99th percentile of `values`, by nearest rank."""
    return sorted(values)[int(len(values) * 0.99) - 1]
