"""The chaos suite: the real service as processes, on the real broker, against the sandbox,
with things broken on purpose. Each test reads the results with read_committed and the
sandbox's record of accepted events, and asserts the delivery invariants:

- no input without a result, no input with two results;
- no event accepted twice by the Graph API, except, after a SIGKILL, events that were in flight
  at the kill (requests on the wire, answers not yet in the outbox); the bound per kill is
  (CAPI_MAX_IN_FLIGHT_REQUESTS + 1) x CAPI_BATCH_SIZE;
- and except the events of a request Meta stored whose answer was lost: sent again, as many
  as the lost answers carried, each such request counted in capi_requests_outcome_unknown_total.

Run with `make test-chaos`; each test prints its figures.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from consumer.events.signals import DayCounts
from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.kafka.topics import ensure_topics, topic_plan
from consumer.settings import Settings, Topics
from consumer.tools.demo import ResultReader, produce_sample_traffic
from consumer.tools.embedded_broker import EmbeddedBroker, free_port
from consumer.tools.samples import SampleWorld, sandbox_config
from consumer.tools.sandbox.process import SandboxProcess
from consumer.tools.signals.reader import read_signals
from tests.chaos.harness import (
    Run,
    Service,
    check_delivery,
    input_offsets,
    settle,
    signal_totals,
    signals_of_results,
    wait_for_all,
)
from tests.integration.harness import scrape_metrics, service_env, write_credentials

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(900)]
CODEC = AvroCodec(SchemaStore())
WORLD = SampleWorld()
BATCH_SIZE = 100
IN_FLIGHT = 4


def _report(capsys, name, figures):
    with capsys.disabled():
        print(f"\n[chaos] {name}: {figures}")


def _produce(bootstrap, topics, count, seed, garbage=0, tables=True):
    return produce_sample_traffic(
        bootstrap,
        topics,
        CODEC,
        WORLD.triggers(count, seed=seed),
        WORLD.connections(),
        garbage=garbage,
        contacts=WORLD.contacts() if tables else (),
        referrals=WORLD.referrals() if tables else (),
    )


def test_sigkill_repeatedly_while_events_flow(kafka_bootstrap, topics, tmp_path, capsys):
    expected = _produce(kafka_bootstrap, topics, 20_000, seed=101, garbage=25)
    config = {**sandbox_config(WORLD), "faults": {"*": {"latency_ms": 20}}}
    with SandboxProcess(config) as sandbox:
        creds = write_credentials(tmp_path / "creds", WORLD.credentials)
        env = service_env(
            kafka_bootstrap,
            topics,
            sandbox.url,
            creds,
            f"g-{topics.triggered}",
            CAPI_MAX_IN_FLIGHT_REQUESTS=str(IN_FLIGHT),
        )
        service = Service(env, tmp_path, "killed").start()
        reader = ResultReader(kafka_bootstrap, topics.results, CODEC)
        rng = random.Random(7)
        kills = 0
        while kills < 6:
            until = time.monotonic() + rng.uniform(4, 7)
            while time.monotonic() < until:
                reader.read(0.2)
            if len(reader.results) >= expected:
                break
            service.kill()
            kills += 1
            service.start()
        inputs = input_offsets(kafka_bootstrap, topics.triggered, expected)
        v = settle(reader, inputs, sandbox, [service])
        settings = Settings(bootstrap_servers=kafka_bootstrap, topics=topics)
        latest = read_signals(settings).latest
        aggregate = signal_totals((key, DayCounts.decode(v)) for key, v in latest.items())
    counted = signals_of_results(reader.results)
    bound = kills * (IN_FLIGHT + 1) * BATCH_SIZE
    _report(capsys, "sigkill", f"kills={kills} bound={bound} {v}")
    _report(
        capsys,
        "sigkill: signal counts",
        f"from the signals topic {sum(aggregate.values())} over {len(aggregate)} keys; "
        f"counted from the results {sum(counted.values())} over {len(counted)} keys; "
        f"differing keys {sorted(set(aggregate.items()) ^ set(counted.items()))[:5]}",
    )
    assert kills >= 3
    check_delivery(v, duplicate_send_bound=bound)
    assert aggregate == counted  # exact, across 6 kills


def test_broker_frozen_for_30_seconds(tmp_path, capsys):
    # a broker of its own: it is frozen, and a session longer than the freeze keeps the group
    topics = Topics()
    with EmbeddedBroker() as broker:
        ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, topic_plan(topics, 3))
        expected = _produce(broker.bootstrap_servers, topics, 8_000, seed=202, garbage=5)
        with SandboxProcess(sandbox_config(WORLD)) as sandbox:
            creds = write_credentials(tmp_path / "creds", WORLD.credentials)
            env = service_env(
                broker.bootstrap_servers,
                topics,
                sandbox.url,
                creds,
                "g-freeze",
                CAPI_KAFKA_SESSION_TIMEOUT_MS="45000",
                CAPI_KAFKA_HEARTBEAT_INTERVAL_MS="3000",
                CAPI_BATCH_LINGER_MS="200",
            )
            service = Service(env, tmp_path, "frozen").start()
            reader = ResultReader(broker.bootstrap_servers, topics.results, CODEC)
            deadline = time.monotonic() + 120
            while not reader.results and time.monotonic() < deadline:
                reader.read(0.2)
            assert reader.results, service.log_tail()
            broker.freeze()
            time.sleep(30)
            broker.thaw()
            inputs = input_offsets(broker.bootstrap_servers, topics.triggered, expected)
            v = settle(reader, inputs, sandbox, [service])
    _report(capsys, "broker frozen 30 s", str(v))
    check_delivery(v)


def test_three_consumers_joining_and_leaving(kafka_bootstrap, topics, tmp_path, capsys):
    total = 24_000
    with SandboxProcess(sandbox_config(WORLD)) as sandbox:
        creds = write_credentials(tmp_path / "creds", WORLD.credentials)
        _produce(kafka_bootstrap, topics, 0, seed=0)  # the tables
        env = service_env(kafka_bootstrap, topics, sandbox.url, creds, f"g-{topics.triggered}")
        services = {name: Service(env, tmp_path, name) for name in ("a", "b", "c")}
        triggers = WORLD.triggers(total, seed=303)

        def trickle():  # a steady flow while members come and go
            for start in range(0, total, 1000):
                produce_sample_traffic(
                    kafka_bootstrap, topics, CODEC, triggers[start : start + 1000], []
                )
                time.sleep(1.0)

        producer = threading.Thread(target=trickle)
        reader = ResultReader(kafka_bootstrap, topics.results, CODEC)

        def run_for(seconds):
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                reader.read(0.2)

        def rebalance_after(change, *names):
            """Make a membership change, then wait until one of `names` completes the
            rebalance it causes (reading meanwhile), as a rolling restart waits for readiness:
            the embedded broker's coordinator has been seen to leave members that join in the
            middle of a rebalance without an assignment for good."""
            marks = {n: services[n].assignments() for n in names}
            change()
            deadline = time.monotonic() + 60
            while not any(services[n].assignments() > marks[n] for n in names):
                assert time.monotonic() < deadline, "\n".join(services[n].log_tail() for n in names)
                reader.read(0.2)

        def stop(name):
            assert services[name].terminate() == 0, services[name].log_tail()

        rebalance_after(services["a"].start, "a")
        producer.start()
        run_for(2)
        rebalance_after(services["b"].start, "b")
        run_for(2)
        rebalance_after(services["c"].start, "c")
        run_for(3)
        rebalance_after(lambda: stop("b"), "a", "c")
        run_for(2)
        rebalance_after(services["b"].start, "b")
        run_for(3)
        assert services["a"].terminate() == 0, services["a"].log_tail()
        producer.join()
        inputs = input_offsets(kafka_bootstrap, topics.triggered, total)
        v = settle(reader, inputs, sandbox, [services["b"], services["c"]])
    _report(capsys, "three consumers", str(v))
    check_delivery(v)


def test_every_sandbox_fault(kafka_bootstrap, topics, tmp_path, capsys):
    faults = {
        # about one request in six fails, each way in turn
        "ds-1": {
            "latency_ms": 30,
            "errors": {
                "500": 0.03,
                "503": 0.02,
                "1": 0.02,
                "2": 0.02,
                "4": 0.01,
                "17": 0.01,
                "613": 0.01,
                "80004": 0.01,
            },
            "timeout_rate": 0.02,
            "timeout_s": 3,
            "drop_rate": 0.02,
        },
        "ds-3": {"errors": {"190": 1.0}},
    }
    expected = _produce(kafka_bootstrap, topics, 5_000, seed=404, garbage=10)
    with SandboxProcess({**sandbox_config(WORLD), "faults": faults}) as sandbox:
        creds = write_credentials(tmp_path / "creds", WORLD.credentials)
        env = service_env(
            kafka_bootstrap,
            topics,
            sandbox.url,
            creds,
            f"g-{topics.triggered}",
            CAPI_REQUEST_TIMEOUT_S="1.5",
            CAPI_THROTTLE_BACKOFF_S="1",
            CAPI_RETRY_DEADLINE_S="300",
        )
        service = Service(env, tmp_path, "faulty").start()
        reader = ResultReader(kafka_bootstrap, topics.results, CODEC)
        inputs = input_offsets(kafka_bootstrap, topics.triggered, expected)
        v = settle(reader, inputs, sandbox, [service])
        stats = sandbox.stats()
    _report(capsys, "sandbox faults", f"{v} faults={stats['faults']}")
    check_delivery(v)
    for kind in ("500", "503", "1", "2", "4", "17", "613", "80004", "190", "timeout", "drop"):
        assert stats["faults"].get(kind, 0) > 0, kind
    reasons = {(r["dataset_id"], r["reason"]) for r in reader.results if r["status"] == "FAILED"}
    assert ("ds-3", "META_AUTH_ERROR") in reasons
    assert not any(reason == "RETRIES_EXHAUSTED" for _, reason in reasons)
    ds1 = [r for r in reader.results if r["dataset_id"] == "ds-1" and r["status"] == "SENT"]
    assert ds1
    assert max(r["attempts"] for r in ds1) > 1
    assert sum(1 for r in reader.results if r["reason"] == "UNDECODABLE") == 10


# how the sandbox loses an answer -> the `cause` the service counts it under
LOST_ANSWER_CAUSES = {
    "reset": "connection",
    "timeout": "timeout",
    "503": "server_error",
    "no_events_received": "no_events_received",
}


def test_lost_answers_are_sent_again_and_counted(kafka_bootstrap, topics, tmp_path, capsys):
    """Meta stores a request's events, then its answer is lost (a reset, a timeout, a 503, a 200
    without the count): the service cannot tell, sends the events again, and counts the request.
    Meta receives twice exactly the events of the lost answers; the metric counts each lost
    answer under its cause."""
    lost = dict.fromkeys(LOST_ANSWER_CAUSES, 0.04)  # about one request in six
    faults = {"*": {"lost_answers": lost, "timeout_s": 3}}
    port = free_port()
    with SandboxProcess({**sandbox_config(WORLD), "faults": faults}) as sandbox:
        run = Run(
            kafka_bootstrap,
            topics,
            tmp_path,
            sandbox,
            CAPI_BATCH_SIZE="20",  # some 200 requests
            CAPI_REQUEST_TIMEOUT_S="1.5",
            CAPI_PARK_DELAYS_S="2,4",
            CAPI_METRICS_PORT=str(port),
        )
        run.produce(WORLD.triggers(4_000, seed=405, only_valid=True))
        service = run.service("lossy").start()
        inputs = input_offsets(kafka_bootstrap, topics.triggered, run.produced)
        assert wait_for_all(run.reader, inputs, 300), service.log_tail()
        _, samples = scrape_metrics(port)  # every event has its result: nothing more is sent
        stats = sandbox.stats()
        v = settle(run.reader, inputs, sandbox, [service])
    lost_answers = {k.removeprefix("lost_"): n for k, n in stats["faults"].items()}
    counted = {
        dict(labels)["cause"]: value
        for (name, labels), value in samples.items()
        if name == "capi_requests_outcome_unknown_total"
    }
    _report(
        capsys,
        "lost answers",
        f"lost answers={sum(lost_answers.values())} {lost_answers} carrying "
        f"{stats['lost_answer_events']} events; events received twice={v.duplicate_sends}; "
        f"capi_requests_outcome_unknown_total={sum(counted.values()):.0f} {counted}; {v}",
    )
    assert set(lost_answers) == set(LOST_ANSWER_CAUSES)  # each way of losing an answer struck
    assert counted == {LOST_ANSWER_CAUSES[k]: n for k, n in lost_answers.items()}
    assert v.duplicate_sends == stats["lost_answer_events"]
    check_delivery(v, duplicate_send_bound=stats["lost_answer_events"])
    assert v.sent == v.sent_ids == v.accepted_ids == len(inputs)  # each SENT, one result each
