"""`capi-consumer run` as an operator starts it: environment only, /metrics, SIGTERM drains."""

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.tools.demo import ResultReader, produce_sample_traffic
from consumer.tools.embedded_broker import free_port
from consumer.tools.samples import SampleWorld, sandbox_config
from consumer.tools.sandbox.process import SandboxProcess
from tests.cli import run_cli, start_cli
from tests.integration.harness import scrape_metrics, service_env, write_credentials

pytestmark = pytest.mark.integration
CODEC = AvroCodec(SchemaStore())


def test_run_exposes_metrics_and_drains_on_sigterm(kafka_bootstrap, topics, tmp_path):
    world = SampleWorld()
    port = free_port()
    with SandboxProcess(sandbox_config(world)) as sandbox:
        creds = write_credentials(tmp_path / "creds", world.credentials)
        expected = produce_sample_traffic(
            kafka_bootstrap, topics, CODEC, world.triggers(200, seed=21), world.connections()
        )
        env = service_env(
            kafka_bootstrap,
            topics,
            sandbox.url,
            creds,
            f"cli-{topics.triggered}",
            CAPI_METRICS_PORT=str(port),
            CAPI_STATE_DIR=str(tmp_path / "state"),
        )
        proc = start_cli(env, "run", stderr=subprocess.PIPE, text=True)
        try:
            reader = ResultReader(kafka_bootstrap, topics.results, CODEC)
            assert reader.read_until(expected, 90)
            reader.close()
            text, samples = scrape_metrics(port)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                _, stderr = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
        accepted = sandbox.stats()["accepted_events"]

    assert proc.returncode == 0, stderr[-2000:]
    # each phase of the shutdown says itself, the last line says what the run did, and no
    # partition is written as a Python tuple
    lines = [line for line in stderr.splitlines() if not line.startswith("%")]  # not librdkafka's
    phases = ["signal SIGTERM: draining", "draining: no more input", "closing: the consumer"]
    said = [next(i for i, line in enumerate(lines) if phase in line) for phase in phases]
    assert said == sorted(said), lines[-10:]
    assert "stopped after" in lines[-1] and f"consumed={expected}" in lines[-1], lines[-3:]
    assert "('" not in stderr
    consumed = samples[("capi_messages_consumed_total", (("topic", topics.triggered),))]
    assert consumed == expected
    results = {k: v for k, v in samples.items() if k[0] == "capi_results_total"}
    assert sum(results.values()) == expected
    sent = samples[("capi_results_total", (("reason", ""), ("status", "SENT")))]
    assert sent == accepted
    assert any(k[0] == "capi_requests_total" and ("outcome", "success") in k[1] for k in samples)
    assert samples[("capi_request_duration_seconds_count", ())] >= 1
    for secret in world.credentials.values():
        assert secret not in text
        assert secret not in stderr


def test_check_reports_what_is_missing_one_line_each(kafka_bootstrap, topics, tmp_path):
    env = {
        **os.environ,
        "CAPI_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        **topics.as_env(),
        "CAPI_CREDENTIALS_DIR": str(tmp_path),
    }
    ok = run_cli(env, "check", timeout=60)
    assert (ok.returncode, ok.stdout.strip()) == (0, "capi-consumer check: ok"), ok.stderr
    env.update(CAPI_TOPIC_DLQ="no-such-topic")
    missing_topic = run_cli(env, "check", timeout=60)
    assert missing_topic.returncode == 1
    assert missing_topic.stderr.strip().splitlines() == [
        "capi-consumer check: topic no-such-topic: does not exist"
    ]
    env.update(CAPI_KAFKA_SECURITY_PROTOCOL="SASL_SSL", CAPI_KAFKA_SASL_MECHANISM="PLAIN")
    bad = run_cli(env, "check", timeout=60)
    assert bad.returncode == 1
    # the settings' problems, and no misleading line about the broker they keep from answering
    assert bad.stderr.strip().splitlines() == [
        "capi-consumer check: CAPI_KAFKA_SASL_USERNAME: required with SASL PLAIN",
        "capi-consumer check: CAPI_KAFKA_SASL_PASSWORD: required with SASL PLAIN",
    ]
    env.update(CAPI_CREDENTIALS_DIR=str(tmp_path / "missing"), CAPI_TOPIC_DLQ=topics.dlq)
    env.pop("CAPI_KAFKA_SECURITY_PROTOCOL")
    env.pop("CAPI_KAFKA_SASL_MECHANISM")
    missing = run_cli(env, "check", timeout=60)  # one problem among others, not an exit 2
    assert missing.returncode == 1, missing.stderr
    assert missing.stderr.strip().splitlines() == [
        f"capi-consumer check: CAPI_CREDENTIALS_DIR: {tmp_path / 'missing'} is not a directory"
    ]
    deleting = f"{topics.retry}-deleting"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    config = {"cleanup.policy": "delete", "retention.ms": "86400000"}
    [created] = admin.create_topics([NewTopic(deleting, 3, 1, config=config)]).values()
    created.result(timeout=30)
    env.update(CAPI_CREDENTIALS_DIR=str(tmp_path), CAPI_TOPIC_RETRY=deleting)
    retry = run_cli(env, "check", timeout=60)
    assert retry.returncode == 1, retry.stderr
    assert [line.split(";")[0] for line in retry.stderr.strip().splitlines()] == [
        f"capi-consumer check: topic {deleting}: cleanup.policy=delete",
        f"capi-consumer check: topic {deleting}: retention.ms=86400000 deletes parked events "
        "before Meta's 7 days (604800000)",
    ]


def test_a_busy_metrics_port_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            **os.environ,
            "CAPI_METRICS_PORT": str(port),
            "CAPI_CREDENTIALS_DIR": str(tmp_path),
            "CAPI_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        }
        out = run_cli(env, "run", timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"capi-consumer: configuration error: CAPI_METRICS_PORT: {port}: cannot listen: "
        "Address already in use"
    ]


def _worker_pids(pid, count, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        if len(children) == count:
            return children
        time.sleep(0.1)
    raise AssertionError(f"{count} workers did not start")


def _two_workers(kafka_bootstrap, topics, graph_url, creds, port, tmp_path):
    env = service_env(
        kafka_bootstrap,
        topics,
        graph_url,
        creds,
        f"workers-{topics.triggered}",
        CAPI_METRICS_PORT=str(port),
        CAPI_STATE_DIR=str(tmp_path / "state"),
        CAPI_WORKERS="2",
    )
    return start_cli(env, "run", stderr=subprocess.PIPE, text=True)


def _wait_healthy(port, timeout=60):
    deadline = time.monotonic() + timeout
    answer = "no answer"
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            if response.status_code == 200:
                return
            answer = response.text
        time.sleep(0.5)
    raise AssertionError(f"the service did not become ready: {answer}")


def test_two_workers_share_the_partitions_and_answer_as_one_service(
    kafka_bootstrap, topics, tmp_path
):
    world = SampleWorld()
    port = free_port()
    with SandboxProcess(sandbox_config(world)) as sandbox:
        creds = write_credentials(tmp_path / "creds", world.credentials)
        proc = _two_workers(kafka_bootstrap, topics, sandbox.url, creds, port, tmp_path)
        try:
            workers = _worker_pids(proc.pid, 2)
            _wait_healthy(port)
            expected = produce_sample_traffic(
                kafka_bootstrap, topics, CODEC, world.triggers(300, seed=23), world.connections()
            )
            reader = ResultReader(kafka_bootstrap, topics.results, CODEC)
            assert reader.read_until(expected, 120)
            time.sleep(1)  # every worker's metrics are applied at its next loop turn
            _, samples = scrape_metrics(port)
            os.kill(workers[1], signal.SIGKILL)  # a worker dies: the service stops whole
            _, stderr = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
        reader.read_until(expected + 1, 3)
        reader.close()
        accepted = sandbox.stats()["accepted_events"]

    assert proc.returncode == 1, stderr[-2000:]
    assert "worker 1 exited" in stderr
    assert not Path(f"/proc/{workers[0]}").exists()  # the other one drained and exited
    consumed = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "capi_messages_consumed_total"
    }
    assert {dict(labels)["worker"] for labels in consumed} == {"0", "1"}  # both got partitions
    assert sum(consumed.values()) == expected
    assert len(reader.results) == expected  # one result per input, none twice
    sent = sum(
        v
        for (name, labels), v in samples.items()
        if name == "capi_results_total" and ("status", "SENT") in labels
    )
    assert sent == accepted
    assert {(tmp_path / "state" / f"worker-{i}").is_dir() for i in (0, 1)} == {True}


def test_sigterm_drains_every_worker(kafka_bootstrap, topics, tmp_path):
    world = SampleWorld()
    port = free_port()
    creds = write_credentials(tmp_path / "creds", world.credentials)
    with contextlib.ExitStack() as taken:  # the ports after the service's are busy: no matter
        for neighbour in (port + 1, port + 2):
            with contextlib.suppress(OSError):
                taken.enter_context(socket.create_server(("127.0.0.1", neighbour)))
        proc = _two_workers(kafka_bootstrap, topics, "http://127.0.0.1:9", creds, port, tmp_path)
        try:
            workers = _worker_pids(proc.pid, 2)
            _wait_healthy(port)
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).text.strip() == "ok"
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    assert stderr.count("draining: no more input") == 2  # each worker drained
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_an_unreachable_broker_is_named_within_seconds_and_sigterm_stops_the_wait(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "CAPI_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "CAPI_CREDENTIALS_DIR": str(tmp_path),
        "CAPI_METRICS_PORT": str(port),
        "CAPI_STATE_DIR": str(tmp_path / "state"),
    }
    proc = start_cli(env, "run", stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stderr.readline(), proc.stderr.readline()]  # the endpoint, then the broker
        assert "waiting: Kafka broker 127.0.0.1:1 does not answer" in lines[1], lines
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 503
        assert "starting: Kafka broker 127.0.0.1:1 does not answer" in ready.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        rest = proc.stderr.read()
        assert "Traceback" not in rest
        assert len(rest.splitlines()) < 10  # no flood of librdkafka lines
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.long
def test_sigterm_while_meta_answers_slowly_and_batches_are_split(kafka_bootstrap, topics, tmp_path):
    """The drain collects the answers that came back (split halves included) before deciding
    what is left; it says "timed out" only past its deadline; nothing is sent twice after."""
    world = SampleWorld()
    config = {**sandbox_config(world), "faults": {"*": {"latency_ms": 1500}}}
    with SandboxProcess(config) as sandbox:
        creds = write_credentials(tmp_path / "creds", world.credentials)
        # about one in a hundred is a page only Meta knows is restricted: its batch is split
        expected = produce_sample_traffic(
            kafka_bootstrap,
            topics,
            CODEC,
            world.triggers(1_000, seed=23),
            world.connections(),
            contacts=world.contacts(),
            referrals=world.referrals(),
        )
        env = service_env(
            kafka_bootstrap,
            topics,
            sandbox.url,
            creds,
            f"slow-{topics.triggered}",
            CAPI_STATE_DIR=str(tmp_path / "state"),
        )
        proc = start_cli(env, "run", stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while _answered(sandbox) < 3:  # then SIGTERM, with more requests on their way
            assert time.monotonic() < deadline, "no request reached the sandbox"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=90)
        assert proc.returncode == 0, stderr[-2000:]
        assert "drain timed out" not in stderr
        again = start_cli(env, "run", stderr=subprocess.PIPE, text=True)  # the next owner
        try:
            reader = ResultReader(kafka_bootstrap, topics.results, CODEC)
            assert reader.read_until(expected, 120)
            reader.read(3.0)  # a second result would come right behind
            reader.close()
        finally:
            again.send_signal(signal.SIGTERM)
            again.communicate(timeout=90)
        sent = [e["event"]["event_id"] for e in sandbox.events()]
    assert len(sent) == len(set(sent))  # no event accepted twice across the restart
    # results the drain published ahead of an unresolved offset are skipped by the restart
    # (same state folder), not answered a second time as duplicates
    sources = [(r["source_partition"], r["source_offset"]) for r in reader.results]
    assert len(sources) == len(set(sources)) == expected


def _answered(sandbox):
    stats = sandbox.stats()
    return stats["accepted_requests"] + stats["rejected_requests"]
