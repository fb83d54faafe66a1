from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from consumer.ops.workers import Supervisor, merge_metrics
from consumer.settings import Settings


def _exposition(consumed, in_flight):
    registry = CollectorRegistry()
    Counter(
        "capi_messages_consumed", "Input messages consumed.", ["topic"], registry=registry
    ).labels("in").inc(consumed)
    Gauge("capi_in_flight_events", "In flight.", registry=registry).set(in_flight)
    return generate_latest(registry).decode()


def test_workers_metrics_merge_into_one_exposition_labelled_by_worker():
    class Families:
        def collect(self):
            return iter(merge_metrics([("0", _exposition(3, 5)), ("1", _exposition(4, 0))]))

    registry = CollectorRegistry()
    registry.register(Families())
    text = generate_latest(registry).decode()
    assert text.count("# TYPE capi_messages_consumed_total counter") == 1
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    consumed = "capi_messages_consumed_total"
    assert samples[(consumed, (("topic", "in"), ("worker", "0")))] == 3
    assert samples[(consumed, (("topic", "in"), ("worker", "1")))] == 4
    assert samples[("capi_in_flight_events", (("worker", "0"),))] == 5
    assert samples[("capi_in_flight_events", (("worker", "1"),))] == 0


def test_each_worker_has_its_own_identity_and_state(tmp_path):
    env = {
        "CAPI_CREDENTIALS_DIR": str(tmp_path),
        "CAPI_STATE_DIR": str(tmp_path / "state"),
        "CAPI_WORKERS": "2",
        "CAPI_INSTANCE_ID": "pod-7",
        "CAPI_METRICS_PORT": "9464",
    }
    supervisor = Supervisor(Settings.from_env(env, check_dirs=False))
    first, second = supervisor.worker_env(0, 40001), supervisor.worker_env(1, 40002)
    assert (first["CAPI_INSTANCE_ID"], second["CAPI_INSTANCE_ID"]) == ("pod-7-0", "pod-7-1")
    assert first["CAPI_STATE_DIR"] == str(tmp_path / "state" / "worker-0")
    assert (first["CAPI_METRICS_PORT"], second["CAPI_METRICS_PORT"]) == ("40001", "40002")
    assert first["CAPI_WORKERS"] == "1"  # a worker does not supervise
