"""The service's progress line: at most one every 30 s, only when something moved, and the last
line with what the run did."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from consumer.ops.metrics import Metrics
from consumer.ops.progress import ProgressLog


class World:
    def __init__(self) -> None:
        self.now = 1000.0
        self.metrics = Metrics(CollectorRegistry())
        self.progress = ProgressLog(self.metrics, every_s=30, clock=lambda: self.now)


@pytest.fixture
def world() -> World:
    return World()


def _lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "consumer.progress"]


def test_a_line_every_30_s_while_events_move_and_none_while_idle(world, caplog):
    caplog.set_level(logging.INFO, logger="consumer.progress")
    m = world.metrics
    for _ in range(5):
        m.tally(m.consumed, "in")
        m.tally(m.results, "SENT", "")
    m.flush()
    m.events_sent.labels("false").inc(5)
    world.now += 10
    world.progress.turn()
    assert _lines(caplog) == []  # not due yet
    world.now += 25
    world.progress.turn()
    world.now += 31
    world.progress.turn()  # due, but nothing moved since the last line
    assert _lines(caplog) == [
        "working: in the last 35 s consumed=5 results=5 sent=5 parked=0 lag=0"
    ]
    m.consumer_lag.labels("in", "0").set(7)
    m.parked.inc(2)
    world.now += 31
    world.progress.turn()
    assert _lines(caplog)[-1] == (
        "working: in the last 62 s consumed=0 results=0 sent=0 parked=2 lag=7"
    )


def test_the_last_line_says_what_the_run_did(world, caplog):
    caplog.set_level(logging.INFO, logger="consumer.progress")
    m = world.metrics
    m.tally(m.consumed, "in")
    m.flush()
    world.now += 12
    world.progress.stopped()
    assert _lines(caplog) == ["stopped after 12 s: consumed=1 results=0 sent=0 parked=0"]
