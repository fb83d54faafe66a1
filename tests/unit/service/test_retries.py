"""The retry scheduler: due parked events of restored partitions, a bounded number at a time,
none of a dataset Meta asked to wait; one probe at a time while the breaker is open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from consumer.events.parking import ParkedEvent
from consumer.events.results import RawMessage, SourceRef
from consumer.meta.breaker import CircuitBreaker
from consumer.service.ownership import Ownership
from consumer.service.retries import ParkedRetries
from consumer.service.retry_topic import RetryTopic
from consumer.store.parked import ParkedTable, encode_parked, parked_row
from consumer.store.sqlite import StateStore
from tests.factories import NOW_MS
from tests.unit.service.fakes import IN, FakeRestore, metrics


class _Dispatcher:
    def __init__(self, clock: Any) -> None:
        self.breaker = CircuitBreaker(failures_to_open=1, probe_min_s=10, clock=clock)
        self.throttled: list[str] = []

    def throttled_datasets(self) -> list[str]:
        return self.throttled


class _Triage:
    """Sends everything, but what it is told to leave for later."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.not_now: set[str] = set()

    def parked(self, parked: ParkedEvent) -> Any:
        self.seen.append(parked.event_id)
        return None if parked.event_id in self.not_now else parked.event_id


def _owning(*partitions: tuple[str, int]) -> Ownership:
    ownership = Ownership()
    ownership.arrived(partitions)
    return ownership


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.now = 100.0
        self.table = ParkedTable(StateStore(tmp_path).open(), "retry", clock_ms=lambda: NOW_MS)
        self.table.create_table()
        self.retry = RetryTopic(self.table, IN)
        self.triage = _Triage()
        self.restore = FakeRestore()
        self.dispatcher = _Dispatcher(lambda: self.now)
        self.metrics = metrics()
        self.retries = ParkedRetries(
            retry=self.retry,
            triage=self.triage,
            restore=self.restore,
            dispatcher=self.dispatcher,
            owned=_owning((IN, 0), (IN, 1)),
            metrics=self.metrics,
            max_taken=3,
            clock=lambda: self.now,
            clock_ms=lambda: NOW_MS,
        )

    def park(
        self, event_id: str, *, partition: int = 0, due_in_s: int = -1, dataset: str = "ds-1"
    ) -> None:
        parked = ParkedEvent(
            event_id,
            dataset,
            SourceRef(IN, partition, 0),
            RawMessage(None, b"v"),
            attempts=1,
            parkings=1,
            first_parked_at=NOW_MS - 90_000,
            parked_at=NOW_MS,
            due_at=NOW_MS + due_in_s * 1000,
        )
        self.table.apply([parked_row(parked, encode_parked(parked))], [])

    def turn(self) -> list[Any]:
        self.now += 1
        return self.retries.turn()


def test_due_events_come_back_a_bounded_number_at_a_time(tmp_path):
    w = World(tmp_path)
    for n in range(5):
        w.park(f"e{n}")
    w.park("later", due_in_s=60)
    assert w.turn() == ["e0", "e1", "e2"]  # three at a time
    assert w.turn() == []  # taken until their outcome commits
    w.retry.committed([])
    w.retry.untake("e0")  # its partition was let go: it waits again
    assert w.turn() == ["e0"]
    assert w.metrics.registry.get_sample_value("capi_parked_events_waiting") == 6
    assert w.metrics.registry.get_sample_value("capi_oldest_parked_event_age_seconds") == 90


def test_a_throttled_dataset_and_a_partition_being_restored_wait(tmp_path):
    w = World(tmp_path)
    w.park("throttled", dataset="ds-slow")
    w.park("restoring", partition=1)
    w.park("ready")
    w.dispatcher.throttled = ["ds-slow"]
    w.restore.restoring_partitions = {1}
    assert w.turn() == ["ready"]


def test_one_probe_at_a_time_while_the_breaker_is_open_due_or_not(tmp_path):
    w = World(tmp_path)
    w.park("a", due_in_s=600)
    w.park("b", due_in_s=900)
    w.dispatcher.breaker.failed("ds-1", unreachable=True)
    assert [w.turn() for _ in range(9)] == [[]] * 9  # the first probe after 10 s
    assert w.turn() == ["a"]
    assert [w.turn() for _ in range(19)] == [[]] * 19  # the next one after 20 s
    assert w.turn() == ["b"]


def test_an_event_triage_leaves_for_later_is_not_taken(tmp_path):
    w = World(tmp_path)
    w.park("e0")
    w.triage.not_now = {"e0"}
    assert w.turn() == []
    w.triage.not_now = set()
    assert w.turn() == ["e0"]


def test_when_the_breaker_closes_every_parked_event_is_due_at_once(tmp_path):
    w = World(tmp_path)
    w.park("a", due_in_s=600)
    w.park("b", due_in_s=3600)
    w.dispatcher.breaker.failed("ds-1", unreachable=True)
    assert w.turn() == []
    w.dispatcher.breaker.answered()  # Meta is back
    assert w.turn() == ["a", "b"]
