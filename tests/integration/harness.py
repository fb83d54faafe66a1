"""Runs the real service in a thread against a real broker and the sandbox over HTTP."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from consumer.ops.metrics import Metrics
from consumer.service.loop import Service, build_service
from consumer.settings import Settings, Topics
from consumer.tools import samples

FAST_GROUP = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}


def write_credentials(directory: Path, credentials: dict[str, str]) -> Path:
    return samples.write_credentials(directory, credentials)


class RunningApp:
    """`with RunningApp(settings) as app:` the service runs in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.metrics = Metrics(CollectorRegistry())
        self.app: Service = build_service(settings, self.metrics)
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.app.run()
        except BaseException as exc:
            self.errors.append(exc)

    def __enter__(self) -> RunningApp:
        self._thread.start()
        if not self.app.ready.wait(60):
            raise RuntimeError(f"service did not start: {self.errors}")
        return self

    def stop(self) -> None:
        self.app.stop()
        self._thread.join(60)
        assert not self._thread.is_alive(), "service did not stop within 60 s"

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def settings_for(
    bootstrap: str, topics: Topics, graph_url: str, credentials_dir: Path, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "kafka": FAST_GROUP,
        "group_id": f"capi-test-{uuid.uuid4().hex[:8]}",
        "topics": topics,
        "graph_url": graph_url,
        "credentials_dir": credentials_dir,
        # a state folder of the test's own: tests run side by side, and the default ./state
        # would be one dedup table for all of them
        "state_dir": credentials_dir.parent / f"state-{uuid.uuid4().hex[:8]}",
        "metrics_port": 0,
        "batch_linger_ms": 50,
        "retry_deadline_s": 20.0,
    }
    values.update(overrides)
    return Settings(**values)


def service_env(
    bootstrap: str, topics: Topics, graph_url: str, creds: Path, group: str, **extra: str
) -> dict[str, str]:
    env = {
        **os.environ,
        "CAPI_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CAPI_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "CAPI_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        # also the group's rebalance timeout: Tansu 0.6 sometimes misses a member's LeaveGroup
        # and waits that long for it to rejoin (300 s by default); the drain on revoke needs 30
        "CAPI_KAFKA_MAX_POLL_INTERVAL_MS": "45000",
        "CAPI_GROUP_ID": group,
        **topics.as_env(),
        "CAPI_GRAPH_URL": graph_url,
        "CAPI_CREDENTIALS_DIR": str(creds),
        "CAPI_METRICS_PORT": "0",
        "CAPI_BATCH_SIZE": "100",
        "CAPI_BATCH_LINGER_MS": "50",
        "CAPI_LOG_LEVEL": "INFO",
    }
    env.update(extra)
    return env


def scrape_metrics(port: int) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """A running service's `/metrics`: the text, and each sample's value by name and labels."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            samples[key] = sample.value
    return text, samples
