"""Every dashboard query and alert expression, evaluated by a real Prometheus server scraping a
running service: each returns series, and every alert rule evaluates without error."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from confluent_kafka import Producer

from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.tools.demo import ResultReader, produce_sample_traffic
from consumer.tools.embedded_broker import free_port
from consumer.tools.samples import SampleWorld, sandbox_config
from consumer.tools.sandbox.process import SandboxProcess
from tests.cli import start_cli
from tests.integration.harness import service_env, write_credentials
from tests.signal_records import record

pytestmark = pytest.mark.integration
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CODEC = AvroCodec(SchemaStore())
_COMPARISON = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*[0-9.e+-]+\s*$")


class PrometheusServer:
    """Debian's `prometheus`, scraping one target every second, with the alert rules loaded."""

    def __init__(self, workdir: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(DEPLOY / "prometheus" / "alerts.yaml")],
            "scrape_configs": [
                {"job_name": "capi-consumer", "static_configs": [{"targets": [target]}]}
            ],
        }
        self._config = workdir / "prometheus.yml"
        self._config.write_text(yaml.safe_dump(config))
        self._data = workdir / "prometheus-data"
        self._log = workdir / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrometheusServer:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: `make test` installs Debian's package"
        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self._config}",
                    f"--storage.tsdb.path={self._data}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, self._log.read_text(errors="replace")[-2000:]
            time.sleep(0.5)

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGTERM)
            self._proc.wait(30)

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = answer.json()
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def rules(self) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/rules", timeout=10).json()
        return [rule for group in body["data"]["groups"] for rule in group["rules"]]


def _dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def _alert_operands() -> list[str]:
    """Each side of an alert's `and`, without its threshold: what must return series for the
    alert to be able to fire."""
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    operands = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            for part in re.split(r"\n\s*and\s+", rule["expr"].strip()):
                operands.append(_COMPARISON.sub("", part.strip()))
    return operands


def _last_weeks_signals(bootstrap: str, topic: str) -> None:
    """A week of history in the signals topic (the sample traffic is all today's): the
    signal-health panels' weekly SENT and match-key coverage have something to show."""
    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    key, value = record(0, "ds-1", "Purchase", yesterday, sent=60, match_keys={"em": 60})
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=key, value=value, partition=0)
    assert producer.flush(15) == 0


@pytest.mark.long
def test_every_dashboard_query_and_alert_expression_returns_series(
    kafka_bootstrap, topics, tmp_path
):
    world = SampleWorld()
    # auth errors and throttling (parked, then taken) on top of the sample world's own mix
    faults = {"ds-1": {"errors": {"190": 0.05}}, "ds-3": {"errors": {"17": 0.5}}}
    with SandboxProcess({**sandbox_config(world), "faults": faults}) as sandbox:
        expected = produce_sample_traffic(
            kafka_bootstrap,
            topics,
            CODEC,
            world.triggers(3_000, seed=71),
            world.connections(),
            garbage=5,
            contacts=world.contacts(),
            referrals=world.referrals(),
        )
        _last_weeks_signals(kafka_bootstrap, topics.signals)
        port = free_port()
        creds = write_credentials(tmp_path / "creds", world.credentials)
        env = service_env(
            kafka_bootstrap,
            topics,
            sandbox.url,
            creds,
            f"prom-{topics.triggered}",
            CAPI_METRICS_PORT=str(port),
            CAPI_STATE_DIR=str(tmp_path / "state"),
            CAPI_RETRY_INLINE_S="1",
            CAPI_THROTTLE_BACKOFF_S="1",
            CAPI_PARK_DELAYS_S="2",
            CAPI_SIGNAL_HEALTH_INTERVAL_S="2",
        )
        service = start_cli(env, "run", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with PrometheusServer(tmp_path, f"127.0.0.1:{port}") as prometheus:
                reader = ResultReader(kafka_bootstrap, topics.results, CODEC)
                assert reader.read_until(expected, 180)
                reader.close()
                queries = _dashboard_queries() + _alert_operands()
                empty = queries
                # librdkafka's statistics come every 5 s; the lag alert's subquery takes a
                # point a minute, on the minute: two of them within two minutes
                deadline = time.monotonic() + 150
                while empty and time.monotonic() < deadline:
                    time.sleep(2)
                    empty = [q for q in queries if not prometheus.query(q)]
                assert empty == [], f"{len(empty)} of {len(queries)} return no series"
                rules = prometheus.rules()
                assert len(rules) == len(
                    yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())["groups"][
                        0
                    ]["rules"]
                )
                assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
        finally:
            service.send_signal(signal.SIGTERM)
            service.wait(90)
