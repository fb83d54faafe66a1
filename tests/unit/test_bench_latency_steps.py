"""`bench/latency_steps.py`: each step of each event through the service, lined up."""

from __future__ import annotations

import atexit
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.latency_steps import STEPS, install, steps
from consumer.kafka.publisher import Publisher
from consumer.meta.dispatch import Dispatcher
from consumer.service.rebalance import Rebalance


def _trace(tmp_path: Path, **trace: object) -> Path:
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(trace))
    return path


def test_an_event_is_lined_up_step_by_step_with_the_commit_that_published_it(tmp_path):
    trace = _trace(
        tmp_path,
        consumed={"0:7": 1_040.0, "1:3": 1_050.0},
        sent={"0:7": 1_100.0},  # 1:3 was refused: never sent, left out
        answered={"0:7": 1_110.0},
        commits=[[1_000.0, 1_010.0], [1_130.0, 1_150.0], [1_180.0, 1_190.0]],
    )
    # produced at 1,000, built at 1,120, read at 1,170
    figures = steps(trace, [(0, 7, 1_000.0, 1_120.0, 1_170.0), (1, 3, 1_001.0, 1_060.0, 1_171.0)])
    took = {name: values["mean_ms"] for name, values in figures["steps"].items()}
    assert took == {
        "first hop": 40.0,
        "to the request": 60.0,
        "Meta's answer": 10.0,
        "to the result": 10.0,
        "to the commit": 10.0,  # the first commit that began after the result was built
        "the commit": 20.0,
        "second hop": 20.0,
        "in all": 170.0,
    }
    assert list(took) == [name for name, _ in STEPS]
    assert figures["events"] == 1
    assert figures["commits"] == 0  # none began between the first result read and the last


def test_the_share_of_time_committing_counts_the_commits_while_results_were_read(tmp_path):
    trace = _trace(
        tmp_path,
        consumed={f"0:{n}": 0.0 for n in range(3)},
        sent={f"0:{n}": 1.0 for n in range(3)},
        answered={f"0:{n}": 2.0 for n in range(3)},
        commits=[[10.0, 30.0], [110.0, 120.0], [500.0, 600.0]],
    )
    timeline = [(0, 0, 0.0, 5.0, 40.0), (0, 1, 0.0, 100.0, 125.0), (0, 2, 0.0, 105.0, 240.0)]
    figures = steps(trace, timeline)
    assert figures["commits"] == 1  # the one that began between 40 and 240 ms
    assert figures["share_of_time_committing"] == 0.05  # 10 ms of 200
    assert figures["commit_p50_ms"] == 10.0


@pytest.fixture
def unwrapped(monkeypatch):
    """The service's methods as they were, whatever a test wraps."""
    for cls, name in ((Rebalance, "consume"), (Dispatcher, "deliver"), (Publisher, "commit")):
        monkeypatch.setattr(cls, name, getattr(cls, name))


def test_install_wraps_the_services_methods_and_writes_what_they_saw(tmp_path, unwrapped):
    out = tmp_path / "trace.json"
    write = install(out)
    atexit.unregister(write)
    item = SimpleNamespace(source=SimpleNamespace(partition=2, offset=41))
    attempt = SimpleNamespace(batch=SimpleNamespace(items=[item]))
    dispatcher = SimpleNamespace(_try=lambda attempt, delivery: None)
    Dispatcher.deliver(dispatcher, attempt)  # type: ignore[arg-type]
    write()
    trace = json.loads(out.read_text())
    assert set(trace) == {"consumed", "sent", "answered", "commits"}
    assert trace["sent"]["2:41"] <= trace["answered"]["2:41"]
    assert trace["consumed"] == {} and trace["commits"] == []
