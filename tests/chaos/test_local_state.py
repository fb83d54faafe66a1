"""The local state's lifecycle under faults: parked rows that follow their partition, a drain
that reads every answer, and a state volume that fills up. Each prints its figures."""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from consumer.tools.samples import SampleWorld, sandbox_config
from consumer.tools.sandbox.process import SandboxProcess
from tests.chaos.harness import Run, check_delivery

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(900)]
WORLD = SampleWorld()
THROTTLED = "ds-3"  # the WhatsApp account of the second connection: a quarter of the events


def _report(capsys, name, figures):
    with capsys.disabled():
        print(f"\n[chaos] {name}: {figures}")


def _high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"hw-{topic}"})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    highs = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in partitions
    }
    consumer.close()
    return highs


def _parked_rows(state: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{state}?mode=ro", uri=True)) as db:
        try:
            (rows,) = db.execute("SELECT COUNT(*) FROM parked").fetchone()
        except sqlite3.OperationalError:  # not created yet, or locked a moment
            return -1
    return int(rows)


def _wait_for(condition, timeout: float, run: Run, what: str) -> float:
    """Read results until `condition()`; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, what
        run.reader.read(0.2)
    return time.monotonic() - started


def test_parked_rows_left_behind_by_a_partition_are_not_sent_when_it_comes_back(
    kafka_bootstrap, topics, tmp_path, capsys
):
    """Instance a parks a throttled dataset's events and dies (SIGKILL: its partitions move
    without a release, so its local table keeps the rows); b sends them. The retry records
    that parked them and their tombstones are then gone from a's view, as compaction leaves
    them (the embedded broker does not compact: a's stored retry-topic positions are moved to
    the end, which is what a reader of a compacted partition finds about those events:
    nothing). The partitions come back to a, whose local table still has the rows."""
    config = {**sandbox_config(WORLD), "faults": {THROTTLED: {"errors": {"17": 1.0}}}}
    with SandboxProcess(config) as sandbox:
        # parked for 30 s: b, which takes them over, finds them due soon after it starts
        run = Run(
            kafka_bootstrap,
            topics,
            tmp_path,
            sandbox,
            CAPI_PARK_DELAYS_S="30",
            CAPI_THROTTLE_BACKOFF_S="5",
        )
        triggers = WORLD.triggers(2_000, seed=701, only_valid=True)
        throttled = sum(1 for t in triggers if t["dataset_id"] == THROTTLED)
        run.produce(triggers)
        a = run.service("a").start()
        _wait_for(lambda: len(run.reader.results) >= 2_000 - throttled, 120, run, a.log_tail())
        state = tmp_path / "a" / "tables.sqlite3"
        _wait_for(lambda: _parked_rows(state) == throttled, 120, run, a.log_tail())
        parked_by_a = a.log_tail(100_000).count(" parked dataset=")
        a.kill()
        rows_left = _parked_rows(state)
        with contextlib.closing(sqlite3.connect(state)) as db:
            (last_due_ms,) = db.execute("SELECT MAX(due_at) FROM parked").fetchone()
        sandbox.set_faults({})
        b = run.service("b").start()
        moved_after = _wait_for(lambda: len(run.reader.results) >= 2_000, 180, run, b.log_tail())
        assert b.terminate() == 0, b.log_tail()
        # compaction, as a sees it: nothing more about those events in the retry topic
        highs = _high_watermarks(kafka_bootstrap, topics.retry)
        with contextlib.closing(sqlite3.connect(state)) as db, db:
            db.executemany(
                "INSERT OR REPLACE INTO offsets (topic, partition, next_offset) VALUES (?, ?, ?)",
                [(topics.retry, p, high) for p, high in highs.items()],
            )
        a.start()
        fresh = WORLD.triggers(200, seed=702, only_valid=True)
        run.produce(fresh)
        _wait_for(lambda: len(run.reader.results) >= 2_200, 180, run, a.log_tail())
        # until every row a kept is due, and 15 s more: time for a stale row to be sent
        run.read_for(max(0.0, last_due_ms / 1000 - time.time()) + 15)
        accepted_before_settle = len(sandbox.events())
        v = run.settle([a])
    _report(
        capsys,
        "a partition's parked rows after it moved, was sent elsewhere, compacted, came back",
        f"throttled={throttled} parkings logged by a={parked_by_a} rows a kept={rows_left}; "
        f"b sent them within {moved_after:.0f} s; accepted by Meta={accepted_before_settle}; {v}",
    )
    assert rows_left == throttled  # the scenario: a left rows behind
    assert v.results == 2_200  # no extra result
    check_delivery(v)  # 0 sent twice


def test_sigterm_while_answers_arrive_repeated(kafka_bootstrap, topics, tmp_path, capsys):
    """Meta answers each request after 400 ms, so every SIGTERM finds requests whose answers
    arrive while the drain waits; the drain must read each before its last commit."""
    config = {**sandbox_config(WORLD), "faults": {"*": {"latency_ms": 400}}}
    with SandboxProcess(config) as sandbox:
        run = Run(kafka_bootstrap, topics, tmp_path, sandbox, CAPI_MAX_IN_FLIGHT_REQUESTS="8")
        service = run.joined(run.service("a"))
        producer = run.trickle(6_000, 150, seed=703, only_valid=True)
        rng = random.Random(13)
        stops = 0
        while stops < 8:
            run.read_for(rng.uniform(2, 5))  # requests go out and answers come back
            assert service.terminate() == 0, service.log_tail()
            stops += 1
            joins = service.assignments()
            service.start()
            _wait_for(lambda n=joins: service.assignments() > n, 120, run, service.log_tail())
        producer.join()
        log = service.log_tail(1_000_000)
        timed_out = log.count("drain timed out")
        drains = log.count("draining: no more input")
        v = run.settle([service])
    _report(
        capsys,
        "SIGTERM while Meta's answers arrive, 8 times",
        f"stops={stops} drains={drains} drains timed out={timed_out}; {v}",
    )
    assert timed_out == 0
    check_delivery(v)  # 0 sent twice


@contextlib.contextmanager
def _small_volume(path: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of `size_mb` at `path` (root only: the CI runs as root)."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"a small volume needs mount (root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(ballast: Path) -> None:
    """Fill what is left of the volume with `ballast`, a file made before the volume had to
    hold anything else (opening a new file on a full tmpfs can fail already)."""
    chunk = b"\0" * (64 * 1024)
    with ballast.open("ab") as out, contextlib.suppress(OSError):
        while True:
            out.write(chunk)
            out.flush()


def test_the_state_volume_fills_while_meta_throttles_one_dataset(
    kafka_bootstrap, topics, tmp_path, capsys
):
    config = {**sandbox_config(WORLD), "faults": {THROTTLED: {"errors": {"17": 1.0}}}}
    with (
        _small_volume(tmp_path / "volume", 32) as volume,
        SandboxProcess(config) as sandbox,
    ):
        ballast = volume / "ballast"
        ballast.touch()
        run = Run(kafka_bootstrap, topics, tmp_path, sandbox, CAPI_PARK_DELAYS_S="20,40")
        service = run.joined(run.service("a", state_dir=volume / "state"))
        producer = run.trickle(6_000, 100, seed=704, only_valid=True)
        run.read_for(10)
        _fill(ballast)
        state_mb = sum(f.stat().st_size for f in (volume / "state").iterdir()) / 1e6
        full_at = time.monotonic()
        _wait_for(lambda: "state store full" in service.log_tail(100_000), 60, run, "no full")
        seen_full_after = time.monotonic() - full_at
        results_when_full = len(run.reader.results)
        run.read_for(30)  # the volume stays full for 30 s while input keeps coming
        assert service.alive(), service.log_tail()
        results_while_full = len(run.reader.results) - results_when_full
        producer.join()
        os.unlink(ballast)  # room again
        sandbox.set_faults({})
        freed = time.monotonic()
        _wait_for(lambda: len(run.reader.results) >= 6_000, 300, run, service.log_tail())
        all_after = time.monotonic() - freed
        log = service.log_tail(1_000_000)
        v = run.settle([service])
    _report(
        capsys,
        "the state volume fills while one dataset is throttled",
        f"state {state_mb:.1f} MB of 32 MB when filled; "
        f"full seen after {seen_full_after:.1f} s; "
        f"results in 30 s on a full volume={results_while_full}; "
        f"room again -> all 6,000 results {all_after:.0f} s later; "
        f"exits=0 starts={service.starts}; room-again lines={log.count('has room again')}; {v}",
    )
    assert service.starts == 1  # never exited
    assert "Traceback" not in log
    check_delivery(v)  # 0 lost, 0 sent twice
