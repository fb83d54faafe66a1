"""`garbage.py`: garbage collected on a timer, start-up frozen out of the collector's sight."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Callable, Iterator

import pytest

from consumer.service.garbage import AUTOMATIC_AFTER, collect_on_a_timer, collect_until


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def _waits(times: int, record: list[float]) -> Callable[[float], bool]:
    """A `wait` that returns False `times` times (the timer ran out), then True (stop)."""
    answers = iter([False] * times + [True])

    def wait(timeout: float) -> bool:
        record.append(timeout)
        return next(answers)

    return wait


def test_the_young_generations_each_time_the_whole_heap_every_nth():
    collected: list[int] = []
    waited: list[float] = []

    def collect(generation: int) -> int:
        collected.append(generation)
        return 0

    collect_until(_waits(7, waited), every_s=5.0, full_every=3, collect=collect)
    assert collected == [1, 1, 2, 1, 1, 2, 1]
    assert waited == [5.0] * 8


def test_a_cycle_made_between_two_collections_is_collected_by_the_next():
    saved = gc.get_threshold()
    gc.set_threshold(0)  # no automatic collection: only the timer's
    try:
        cycle = _Cycle()
        gone = weakref.ref(cycle)
        del cycle
        assert gone() is not None  # a cycle: reference counting does not free it
        collect_until(_waits(1, []))
        assert gone() is None
    finally:
        gc.set_threshold(*saved)


@pytest.fixture
def gc_state() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*saved)


def test_start_up_is_frozen_and_the_automatic_threshold_is_a_bound(gc_state: None):
    stop = threading.Event()
    thread = collect_on_a_timer(stop)
    try:
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == AUTOMATIC_AFTER
        assert thread.name == "capi-gc" and thread.daemon and thread.is_alive()
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
