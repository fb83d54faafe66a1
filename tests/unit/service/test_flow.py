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
