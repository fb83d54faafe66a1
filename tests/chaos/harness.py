"""Running the real service as processes, breaking things, and checking the invariants."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition

from consumer.events.signals import DayCounts, SignalKey, tally_of
from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.tools.demo import ResultReader, produce_sample_traffic
from consumer.tools.samples import SampleWorld
from tests.cli import start_cli
from tests.integration.harness import service_env, write_credentials

_CODEC = AvroCodec(SchemaStore())
_WORLD = SampleWorld()

_started: list[Service] = []


def kill_leftovers() -> list[str]:
    """Kill the services a test left running (a failed assertion skips its own stops)."""
    killed = []
    while _started:
        service = _started.pop()
        if service.alive():
            service.kill()
            killed.append(service.name)
    return killed


class Service:
    """One `capi-consumer run` process with its own instance id and state folder."""

    def __init__(
        self,
        env: dict[str, str],
        workdir: Path,
        name: str,
        state: str | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.name = name
        self._env = {
            **env,
            "CAPI_INSTANCE_ID": name,
            "CAPI_STATE_DIR": str(state_dir or workdir / (state or name)),
        }
        self._log = workdir / f"{state or name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Service:
        log = self._log.open("ab")
        self.proc = start_cli(self._env, "run", stdout=log, stderr=log)
        self.starts += 1
        _started.append(self)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout: float = 90) -> int:
        """SIGTERM, and the exit code; a process still there after `timeout` seconds fails the
        test with its log's end (and is killed)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} still running {timeout:.0f} s after SIGTERM:\n{self.log_tail()}"
            ) from None

    def peak_rss_mb(self) -> float:
        """The process's peak resident memory so far (Linux), 0 when unknown."""
        assert self.proc is not None
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return 0.0
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assignments(self) -> int:
        """Rebalances this service has completed (each logs its assignment, even an empty one)."""
        if not self._log.exists():
            return 0
        return self._log.read_text(errors="replace").count(" consumer.service.rebalance assigned ")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])


def input_offsets(
    bootstrap: str, topic: str, expected: int, timeout: float = 60
) -> set[tuple[int, int]]:
    """(partition, offset) of every input message."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex})
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
    seen: set[tuple[int, int]] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < expected and time.monotonic() < deadline:
        for msg in consumer.consume(10_000, 0.5):
            partition, offset = msg.partition(), msg.offset()
            if msg.error() is None and partition is not None and offset is not None:
                seen.add((partition, offset))
    consumer.close()
    return seen


@dataclass
class Verdict:
    inputs: int
    results: int
    missing: int
    duplicate_results: int
    sent: int
    sent_ids: int
    accepted_ids: int
    accepted_events: int
    duplicate_sends: int

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.__dict__.items())


def verdict(
    inputs: set[tuple[int, int]], results: list[dict[str, Any]], accepted: list[dict[str, Any]]
) -> Verdict:
    sources = Counter((r["source_partition"], r["source_offset"]) for r in results)
    sends = Counter(e["event"]["event_id"] for e in accepted)
    return Verdict(
        inputs=len(inputs),
        results=len(results),
        missing=len(inputs - set(sources)),
        duplicate_results=sum(n - 1 for n in sources.values() if n > 1),
        sent=sum(1 for r in results if r["status"] == "SENT"),
        sent_ids=len({r["event_id"] for r in results if r["status"] == "SENT"}),
        accepted_ids=len(sends),
        accepted_events=len(accepted),
        duplicate_sends=sum(n - 1 for n in sends.values() if n > 1),
    )


def check_delivery(v: Verdict, duplicate_send_bound: int = 0) -> None:
    """No input without a result or with two; no event accepted twice beyond the bound."""
    assert v.missing == 0, v
    assert v.duplicate_results == 0, v
    assert v.duplicate_sends <= duplicate_send_bound, v
    # every event with a SENT result was accepted; every accepted event has a SENT result but
    # for those sent by an instance killed before it could publish (within the same bound)
    assert v.sent_ids <= v.accepted_ids, v
    assert v.accepted_ids - v.sent_ids <= duplicate_send_bound, v
    if not duplicate_send_bound:
        assert v.sent == v.sent_ids == v.accepted_ids == v.accepted_events, v


def wait_for_all(reader: Any, inputs: set[tuple[int, int]], timeout: float) -> bool:
    """Read results until every input has one (counting alone would hide duplicates)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reader.read(0.2)
        sources = {(r["source_partition"], r["source_offset"]) for r in reader.results}
        if inputs <= sources:
            return True
    return False


def settle(reader: Any, inputs: set[tuple[int, int]], sandbox: Any, services: list[Service]) -> Any:
    """The end of a chaos run: a result for every input, the services still meant to run
    alive and stopping cleanly, then the verdict on what was published and accepted."""
    tails = "\n".join(s.log_tail() for s in services)
    assert wait_for_all(reader, inputs, 300), tails
    for service in services:
        assert service.alive(), service.log_tail()
        assert service.terminate() == 0, service.log_tail()
    reader.read(2.0)
    reader.close()
    return verdict(inputs, reader.results, sandbox.events())


class Run:
    """A sandbox, the tables, a reader, and triggers trickled in while the test operates."""

    def __init__(self, bootstrap, topics, tmp_path, sandbox, **env):
        self.bootstrap, self.topics, self.sandbox = bootstrap, topics, sandbox
        produce_sample_traffic(
            bootstrap,
            topics,
            _CODEC,
            [],
            _WORLD.connections(),
            contacts=_WORLD.contacts(),
            referrals=_WORLD.referrals(),
        )
        creds = write_credentials(tmp_path / "creds", _WORLD.credentials)
        self.env = service_env(
            bootstrap, topics, sandbox.url, creds, f"g-{topics.triggered}", **env
        )
        self.tmp_path = tmp_path
        self.reader = ResultReader(bootstrap, topics.results, _CODEC)
        self.produced = 0

    def service(self, name, state=None, state_dir=None):
        return Service(self.env, self.tmp_path, name, state=state, state_dir=state_dir)

    def produce(self, triggers):
        """Produce `triggers` now, all at once."""
        produce_sample_traffic(self.bootstrap, self.topics, _CODEC, triggers, [])
        self.produced += len(triggers)

    def trickle(self, total, per_second, seed, only_valid=False):
        triggers = _WORLD.triggers(total, seed=seed, only_valid=only_valid)

        def run():
            started, sent = time.monotonic(), 0
            while sent < total:  # what is due by now, whatever producing costs
                due = min(total, int((time.monotonic() - started) * per_second) + 1)
                if due > sent:
                    produce_sample_traffic(
                        self.bootstrap, self.topics, _CODEC, triggers[sent:due], []
                    )
                    sent = due
                time.sleep(0.25)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.produced += total
        return thread

    def read_for(self, seconds):
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.reader.read(0.2)

    def joined(self, service, timeout=90):
        """Start `service` and read until it completed its first assignment."""
        service.start()
        deadline = time.monotonic() + timeout
        while service.assignments() == 0:
            assert time.monotonic() < deadline, service.log_tail()
            self.reader.read(0.2)
        return service

    def settle(self, services):
        inputs = input_offsets(self.bootstrap, self.topics.triggered, self.produced)
        return settle(self.reader, inputs, self.sandbox, services)


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, str]:
    """The status and body of a service's operations endpoint; 0 when it does not answer."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=timeout)
    except httpx.HTTPError as exc:
        return 0, str(exc)
    return response.status_code, response.text


def signal_totals(counts: Iterable[tuple[SignalKey, DayCounts]]) -> dict[tuple[str, ...], int]:
    """Counts summed over input partitions, flat: (dataset, event, day, what, which) -> n."""
    totals: Counter[tuple[str, ...]] = Counter()
    for key, day in counts:
        at = (key.dataset_id, key.event_name, key.day)
        totals[(*at, "SENT", "")] += day.sent
        for reason, n in day.skipped.items():
            totals[(*at, "SKIPPED", reason)] += n
        for reason, n in day.failed.items():
            totals[(*at, "FAILED", reason)] += n
        for match_key, n in day.match_keys.items():
            totals[(*at, "match_key", match_key)] += n
    return {k: n for k, n in totals.items() if n}


def signals_of_results(results: Iterable[dict[str, Any]]) -> dict[tuple[str, ...], int]:
    """What the signals topic should hold, counted from the results themselves."""
    counts: dict[SignalKey, DayCounts] = {}
    for result in results:
        tally = tally_of(result)
        if tally is not None:
            counts.setdefault(tally.key, DayCounts()).add(tally)
    return signal_totals(counts.items())
