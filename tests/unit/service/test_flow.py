"""Flow control: which owned partitions are paused, with a fake consumer and clock."""

from __future__ import annotations

import pytest

from consumer.events.results import SourceRef
from consumer.kafka.registry_wait import REGISTRY_RETRY_S as SCHEMA_RETRY_S
from consumer.meta.breaker import CircuitBreaker
from consumer.service.flow import FlowControl
from tests.unit.service.fakes import IN, FakeConsumer, FakeRestore, metrics

P0, P1 = (IN, 0), (IN, 1)


class World:
    def __init__(self) -> None:
        self.now = 100.0
        self.consumer = FakeConsumer()
        self.restore = FakeRestore()
        self.owned = {P0, P1}
        self.breaker = CircuitBreaker(failures_to_open=2, clock=lambda: self.now)
        self.flow = FlowControl(
            consumer=self.consumer,
            restore=self.restore,
            owned=self.owned,
            max_pending=10,
            max_pending_bytes=1000,
            breaker=self.breaker,
            metrics=metrics(),
            clock=lambda: self.now,
        )


@pytest.fixture
def world() -> World:
    return World()


# pending messages turn after turn -> partitions paused after each turn
BACKPRESSURE = [
    ([0], [set()]),
    ([10], [{P0, P1}]),
    ([10, 9, 6], [{P0, P1}, {P0, P1}, {P0, P1}]),  # paused until half of the limit
    ([10, 5], [{P0, P1}, set()]),
    ([10, 5, 9], [{P0, P1}, set(), set()]),  # and not again before the limit
]


@pytest.mark.parametrize(("pending", "paused"), BACKPRESSURE)
def test_backpressure_pauses_at_the_limit_and_resumes_at_half(world, pending, paused):
    seen = []
    for count in pending:
        world.flow.turn(count)
        seen.append(set(world.consumer.paused))
    assert seen == paused


def test_a_partition_restoring_its_dedup_entries_waits_until_restored(world):
    world.restore.restoring_partitions = {1}
    world.flow.assigned()
    world.flow.turn(0)
    assert world.consumer.paused == {P1}
    world.restore.finished_next_step = [1]
    world.flow.turn(0)
    assert world.consumer.paused == set()


def test_a_rewind_seeks_back_and_a_schema_wait_lasts_its_delay(world):
    world.flow.rewind(SourceRef(IN, 0, 42), schema_unavailable=True)
    assert world.consumer.seeks == [(IN, 0, 42)]
    assert world.consumer.paused == {P0}
    world.now += SCHEMA_RETRY_S - 0.1
    world.flow.turn(0)
    assert world.consumer.paused == {P0}
    world.now += 0.2
    world.flow.turn(0)
    assert world.consumer.paused == set()


def test_a_forgotten_partition_leaves_its_schema_wait(world):
    world.flow.rewind(SourceRef(IN, 1, 3), schema_unavailable=True)
    world.owned.discard(P1)
    world.flow.forget({P1})
    world.owned.add(P1)  # assigned again later: no stale wait
    world.flow.apply()
    assert world.consumer.paused == set()


def test_every_partition_waits_while_the_breaker_is_open(world):
    world.flow.turn(0)
    world.breaker.failed("ds-1", unreachable=True)
    world.breaker.failed("ds-2", unreachable=True)
    world.flow.turn(0)
    assert world.consumer.paused == {P0, P1}  # the consumer lag is the buffer
    world.breaker.answered()
    world.flow.turn(0)
    assert world.consumer.paused == set()


def test_backpressure_counts_bytes_too(world):
    world.flow.turn(1, 1000)  # a few large messages
    assert world.consumer.paused == {P0, P1}
    world.flow.turn(1, 600)
    assert world.consumer.paused == {P0, P1}  # until both are down to half
    world.flow.turn(1, 500)
    assert world.consumer.paused == set()


def test_every_partition_waits_while_the_local_state_has_no_room(tmp_path):
    """A real state space: the store full (SQLite's own limit), then the parked budget."""
    from consumer.service.state_space import StateSpace
    from consumer.store.dedup import Dedup
    from consumer.store.parked import ParkedTable
    from consumer.store.sqlite import StateStore
    from tests.unit.store.test_parked import _row
    from tests.unit.store.test_state_full import LIMIT, _filler, _room

    clock = [100.0]
    store = StateStore(tmp_path, max_bytes=LIMIT, clock=lambda: clock[0]).open()
    dedup = Dedup(store, "results")
    dedup.create_table()
    parked = ParkedTable(store, "retry")
    parked.create_table()
    rows = [_row(f"p{i}", 0) for i in range(10)]
    budget = sum(len(r.record) for r in rows)
    m = metrics()
    space = StateSpace(
        store=store,
        dedup=dedup,
        parked=parked,
        max_parked_bytes=budget,
        metrics=m,
        clock=lambda: clock[0],
    )
    consumer = FakeConsumer()
    flow = FlowControl(
        consumer=consumer,
        restore=FakeRestore(),
        owned={P0, P1},
        max_pending=10,
        max_pending_bytes=1000,
        breaker=CircuitBreaker(),
        metrics=m,
        space=space,
    )

    def turn() -> set[tuple[str, int]]:
        clock[0] += 1
        space.turn()
        flow.turn(0)
        return set(consumer.paused)

    assert turn() == set()
    _filler(store)
    assert turn() == {P0, P1}
    assert m.state_full._value.get() == 1
    _room(store)
    parked.apply(rows[:9], [])  # a write that adds rows finds room again
    assert turn() == set()
    assert m.state_full._value.get() == 0
    parked.apply(rows[9:], [])  # the budget reached
    assert turn() == {P0, P1}
    assert m.parked_bytes._value.get() == budget
    parked.apply([], ["p0"])  # 90 % of it: still waiting
    assert turn() == {P0, P1}
    parked.apply([], ["p1", "p2"])
    assert turn() == set()
