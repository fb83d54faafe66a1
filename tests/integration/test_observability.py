"""Metrics catalogue, health endpoints and logs, on the running service."""

import contextlib
import io
import logging
import re

import httpx
import pytest

from consumer.events.normalize import normalize_email, normalize_phone
from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.ops.endpoint import HealthServer
from consumer.ops.logs import JsonFormatter
from consumer.tools.demo import ResultReader, produce_sample_traffic
from consumer.tools.samples import SampleWorld, sandbox_config
from consumer.tools.sandbox.process import SandboxProcess
from tests.integration.harness import RunningApp, settings_for, write_credentials
from tests.readme import documented_metrics

pytestmark = pytest.mark.integration
CODEC = AvroCodec(SchemaStore())
WORLD = SampleWorld()


def test_metrics_logs_and_health(kafka_bootstrap, topics, tmp_path):
    triggers = WORLD.triggers(400, seed=31)
    creds = dict(WORLD.credentials)
    creds["token-2"] = "EAAB-token-meta-refuses"  # conn-2's events get META_AUTH_ERROR
    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with SandboxProcess(sandbox_config(WORLD)) as sandbox:
            settings = settings_for(
                kafka_bootstrap,
                topics,
                sandbox.url,
                write_credentials(tmp_path / "c", creds),
                state_dir=tmp_path / "s",
            )
            expected = produce_sample_traffic(
                kafka_bootstrap,
                topics,
                CODEC,
                triggers,
                WORLD.connections(),
                garbage=3,
                contacts=WORLD.contacts(),
                referrals=WORLD.referrals(),
            )
            reader = ResultReader(kafka_bootstrap, topics.results, CODEC)
            with RunningApp(settings) as running:
                health = HealthServer(
                    0,
                    running.metrics.registry,
                    running.app.monitor.alive_problems,
                    running.app.monitor.ready_problems,
                    host="127.0.0.1",
                )
                health.start()
                try:
                    assert reader.read_until(expected, 90)
                    base = f"http://127.0.0.1:{health.port}"
                    assert httpx.get(f"{base}/healthz").status_code == 200
                    ready = httpx.get(f"{base}/readyz")
                    assert (ready.status_code, ready.text.strip()) == (200, "ok")
                    exposition = httpx.get(f"{base}/metrics").text
                finally:
                    health.stop()
            reader.close()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)

    reasons = {r["reason"] for r in reader.results}
    assert "META_AUTH_ERROR" in reasons
    # every documented metric is exported, and every exported one is documented
    exported = set(re.findall(r"^# TYPE (capi_[a-z_]+) ", exposition, re.MULTILINE))
    exported = {re.sub(r"_total$", "", n) for n in exported if not n.endswith("_created")}
    documented = {re.sub(r"_total$", "", name) for name in documented_metrics()}
    assert documented == exported
    # logs: JSON lines with context fields, and no customer information or secret
    text = logs.getvalue()
    assert '"event_id"' in text or '"dataset"' in text
    secrets = set(creds.values())
    for trigger in triggers:
        info = trigger["customer_info"]
        if info["email"]:
            secrets |= {info["email"].strip(), normalize_email(info["email"])}
            secrets.add(info["phone"])
            with contextlib.suppress(ValueError):  # one in fifty sample phones is a typo
                secrets.add(normalize_phone(info["phone"], info["country"]))
    for contact in WORLD.contacts():
        secrets.add(contact["email"])
    leaked = sorted(s for s in secrets if s and s in text)
    assert leaked == []
