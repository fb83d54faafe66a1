"""Garbage collection for a streaming loop: on a timer, not on every 700 allocations.

Events die by reference counting; the cycle collector only finds the rare cycle. What a
collection costs is the objects it walks: every tracked object alive when it starts, which in a
streaming service means the events in flight (thousands of triggers, requests, held results).
Python starts one when the tracked objects allocated since the last one, less those freed,
pass a threshold; but frees do not count below zero, and a loop that allocates a batch, then
frees it after a commit, passes any threshold by allocating alone. Each collection walks the
events in flight again. Timed with `gc.callbacks`, in drains of 60,000 to 100,000 events:
5 to 8 µs an event with a threshold of 20,000; 6 µs with 100,000; about 2 µs on the timer
below, with the automatic threshold at 500,000 (and the same with no automatic collection).

Here:
- what start-up built lives as long as the process: it is frozen out of the collector's sight;
- the young generations are collected every `YOUNG_EVERY_S`, by a thread of their own, so an
  event in flight is walked about once in its life, whatever the throughput;
- the whole heap every `FULL_EVERY` young collections (what became garbage after it grew old);
- automatic collection stays on as a bound: an error path that built cycles for every event
  could not pile up more than `AUTOMATIC_AFTER` objects before the next collection.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable

__all__ = ["AUTOMATIC_AFTER", "FULL_EVERY", "YOUNG_EVERY_S", "collect_on_a_timer"]

YOUNG_EVERY_S = 5.0
FULL_EVERY = 120  # young collections: the whole heap every 10 minutes
AUTOMATIC_AFTER = 500_000  # tracked objects allocated since the last collection


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
