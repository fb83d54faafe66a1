"""Garbage collection for a streaming loop: on a timer, not on every 700 allocations.

Events die by reference counting; the cycle collector only finds the rare cycle. What a
collection costs is the objects it walks: every tracked object alive when it starts, which in a
streaming service means the events in flight (thousands of triggers, requests, held results).
Collected whenever tracked objects grew by a threshold, the young generation is collected many
times a second in a drain, and each event in flight is walked at each of them. Timed with
`gc.callbacks` in drains of 60,000 events: with a threshold of 20,000, 0.30 to 0.34 s of
collections (~40 of them, 5 to 6 µs an event); with the timer below, 0.17 to 0.25 s, most of
it the few automatic collections while the drain's working set grows.

Here:
- what start-up built lives as long as the process: it is frozen out of the collector's sight;
- the young generations are collected every `YOUNG_EVERY_S`, by a thread of their own, so an
  event in flight is walked about once in its life, whatever the throughput;
- the whole heap every `FULL_EVERY` young collections (what became garbage after it grew old);
- automatic collection stays on, with a high threshold, as a bound: a burst of cycles (an error
  path that builds them per event) is collected once it holds `AUTOMATIC_AFTER` objects more,
  without waiting for the timer.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable

__all__ = ["AUTOMATIC_AFTER", "FULL_EVERY", "YOUNG_EVERY_S", "collect_on_a_timer"]

YOUNG_EVERY_S = 5.0
FULL_EVERY = 120  # young collections: the whole heap every 10 minutes
AUTOMATIC_AFTER = 100_000  # tracked objects more than at the last collection


def collect_on_a_timer(stop: threading.Event | None = None) -> threading.Thread:
    """Freeze what start-up built, raise the automatic threshold, and start the timer's
    thread (a daemon: it lives as long as the process, or until `stop` is set)."""
    gc.freeze()
    gc.set_threshold(AUTOMATIC_AFTER, 10, 10)
    thread = threading.Thread(
        target=collect_until,
        args=((stop or threading.Event()).wait,),
        name="capi-gc",
        daemon=True,
    )
    thread.start()
    return thread


def collect_until(
    wait: Callable[[float], bool],
    *,
    every_s: float = YOUNG_EVERY_S,
    full_every: int = FULL_EVERY,
    collect: Callable[[int], int] = gc.collect,
) -> None:
    """Collect the young generations each time `wait(every_s)` returns False, the whole heap
    every `full_every`-th time; return when `wait` returns True."""
    count = 0
    while not wait(every_s):
        count += 1
        collect(2 if count % full_every == 0 else 1)
