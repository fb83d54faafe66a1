"""`CAPI_WORKERS` > 1: one service, several processes, every core used.

The loop of one consumer is Python and bound to one core (~65 µs of it per event), so a
service on an N-core machine runs N worker processes. Each is a whole consumer: its own member
of the consumer group and share of the partitions, transactional id (`CAPI_INSTANCE_ID-<i>`)
and state folder (`CAPI_STATE_DIR/worker-<i>`), so the guarantees are those of N instances,
which the chaos tests hold. This process only supervises:

- on `CAPI_METRICS_PORT` it serves `/metrics`, the workers' metrics merged, each sample
  labelled `worker`; and `/healthz`, `/readyz`, which pass when every worker's pass (a
  problem line names its worker). Each worker serves its own on a socket of 127.0.0.1 this
  process binds to a port the system picks, and hands down: no port can be taken already.
- SIGTERM and SIGINT go to every worker, which drains and exits; the exit code is the worst
  of theirs.
- a worker that dies stops the others and the service exits 1, for the orchestrator to
  restart it whole (the transactions make that safe). Workers get SIGTERM if this process
  dies (Linux), so none is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from consumer.ops.endpoint import HealthServer
from consumer.settings import Settings

__all__ = ["Supervisor", "merge_metrics"]

log = logging.getLogger(__name__)

_FENCED_EXIT = 3  # a worker's producer was fenced (FencedError, `capi-consumer run`)
_POLL_S = 0.2
_SCRAPE_TIMEOUT_S = 2.0


class Supervisor:
    """Runs `CAPI_WORKERS` worker processes, merges their metrics and health answers,
    forwards SIGTERM, and stops the service when one dies."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._procs: list[subprocess.Popen[bytes]] = []
        self._ports: list[int] = []
        self._stopping = threading.Event()

    def worker_port(self, index: int) -> int:
        return self._ports[index]

    def worker_env(self, index: int, port: int) -> dict[str, str]:
        s = self._settings
        return {
            **os.environ,
            "CAPI_WORKERS": "1",
            "CAPI_INSTANCE_ID": f"{s.instance_id}-{index}",
            "CAPI_STATE_DIR": str(s.state_dir / f"worker-{index}"),
            "CAPI_METRICS_PORT": str(port),
        }

    def stop(self) -> None:
        """Ask every worker to drain and exit."""
        self._stopping.set()
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def run(self) -> int:
        """Start the workers and watch them; the exit code of the service."""
        s = self._settings
        for index in range(s.workers):
            self._procs.append(self._start_worker(index))
        log.info("started %d workers pids=%s", s.workers, [p.pid for p in self._procs])
        server = None
        if s.metrics_port:
            registry = CollectorRegistry()
            registry.register(_WorkerMetrics(self))
            server = HealthServer(
                s.metrics_port, registry, self.alive_problems, self.ready_problems
            )
            server.start()
        failed = False
        try:
            while any(p.poll() is None for p in self._procs):
                if not self._stopping.is_set():
                    for index, proc in enumerate(self._procs):
                        if proc.poll() is not None:
                            log.error(
                                "worker %d exited with code %s: stopping the others",
                                index,
                                proc.returncode,
                            )
                            failed = True
                            self.stop()
                            break
                time.sleep(_POLL_S)
        finally:
            if server is not None:
                server.stop()
        codes = [p.returncode for p in self._procs]
        log.info("workers exited codes=%s", codes)
        if any(c == _FENCED_EXIT for c in codes):
            return _FENCED_EXIT  # another instance runs with a worker's instance id
        return 1 if failed else max(abs(c) for c in codes)

    # -- health and metrics ------------------------------------------------------------------

    def scrape(self) -> Iterator[tuple[str, str]]:
        """(worker index, /metrics text) of each worker that answers."""
        for index in range(len(self._procs)):
            try:
                response = httpx.get(self._url(index, "/metrics"), timeout=_SCRAPE_TIMEOUT_S)
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                yield str(index), response.text

    def alive_problems(self) -> list[str]:
        return self._problems("/healthz")

    def ready_problems(self) -> list[str]:
        return self._problems("/readyz")

    def _problems(self, path: str) -> list[str]:
        problems = []
        for index, proc in enumerate(self._procs):
            if proc.poll() is not None:
                problems.append(f"worker {index}: exited with code {proc.returncode}")
                continue
            try:
                response = httpx.get(self._url(index, path), timeout=_SCRAPE_TIMEOUT_S)
            except httpx.HTTPError as exc:
                problems.append(f"worker {index}: not answering ({type(exc).__name__})")
                continue
            if response.status_code != 200:
                problems += [f"worker {index}: {line}" for line in response.text.splitlines()]
        return problems

    def _start_worker(self, index: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "consumer.tools.cli", "run", "--worker", str(index)]
        port = 0  # no health socket: the worker serves none
        fds: tuple[int, ...] = ()
        with contextlib.ExitStack() as stack:  # the socket is the worker's once it started
            if self._settings.metrics_port:
                listening = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
                port, fds = listening.getsockname()[1], (listening.fileno(),)
                command += ["--metrics-fd", str(listening.fileno())]
            self._ports.append(port)
            return subprocess.Popen(
                command,
                env=self.worker_env(index, port),
                pass_fds=fds,
                preexec_fn=_die_with_parent,  # no other thread runs yet: fork is safe
            )

    def _url(self, index: int, path: str) -> str:
        return f"http://127.0.0.1:{self.worker_port(index)}{path}"


class _WorkerMetrics:
    """A collector answering with the workers' metrics, scraped when Prometheus scrapes."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        return iter(merge_metrics(self._supervisor.scrape()))


def merge_metrics(expositions: Iterable[tuple[str, str]]) -> list[Metric]:
    """Metric families of several workers' expositions as one, each sample labelled `worker`."""
    merged: dict[str, Metric] = {}
    for worker, text in expositions:
        for family in text_string_to_metric_families(text):
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            for sample in family.samples:
                into.add_sample(
                    sample.name,
                    {**sample.labels, "worker": worker},
                    sample.value,
                    sample.timestamp,
                    sample.exemplar,
                )
    return list(merged.values())


def _die_with_parent() -> None:
    """In the worker, before exec: SIGTERM when the supervisor dies (Linux prctl)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        libc: Any = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
