"""The signal-health gauges of a running service on a real broker: the owner of input partition
0 reads the signals topic every interval, and its `/metrics` says which dataset events are under
Meta's minimum, which fell under it, and the match-key coverage; a change of the topic shows at
the next refresh, and the series of a dataset event no longer shown are gone."""

import datetime as dt
import time

import pytest
from confluent_kafka import Producer

from consumer.events.signals import KEY_ORDER
from consumer.ops.endpoint import HealthServer
from tests.integration.harness import RunningApp, scrape_metrics, settings_for
from tests.signal_records import record

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _days_ago(n):
    return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=n)).isoformat()


def _produce(bootstrap, topic, records):
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": "true"})
    for partition, (key, value) in records:
        producer.produce(topic, key=key, value=value, partition=partition)
    assert producer.flush(15) == 0


def _signal_samples(port):
    """The `capi_signal_*` samples of `/metrics`: (name, labels) -> value."""
    _, samples = scrape_metrics(port)
    return {key: value for key, value in samples.items() if key[0].startswith("capi_signal_")}


def _until(port, condition, timeout_s=20.0):
    """The signal samples once `condition` holds for them; fails with the last ones."""
    deadline = time.monotonic() + timeout_s
    samples = _signal_samples(port)
    while not condition(samples):
        assert time.monotonic() < deadline, samples
        time.sleep(0.2)
        samples = _signal_samples(port)
    return samples


def _coverage(samples):
    return {
        dict(labels)["key"]: value
        for (name, labels), value in samples.items()
        if name == "capi_signal_match_key_coverage"
    }


def _without_coverage(samples):
    return {k: v for k, v in samples.items() if k[0] != "capi_signal_match_key_coverage"}


def test_the_gauges_follow_the_signals_topic(kafka_bootstrap, topics, tmp_path):
    _produce(
        kafka_bootstrap,
        topics.signals,
        [
            # ds-fell's Lead: 60 the week before, 10 the last week
            (1, record(1, "ds-fell", "Lead", _days_ago(10), sent=60)),
            (
                2,
                record(2, "ds-fell", "Lead", _days_ago(3), sent=10, match_keys={"em": 10, "ph": 5}),
            ),
            # ds-ok's Purchase: 52 the last week, over two partitions
            (
                0,
                record(
                    0, "ds-ok", "Purchase", _days_ago(1), sent=26, match_keys={"em": 26, "ph": 26}
                ),
            ),
            (1, record(1, "ds-ok", "Purchase", _days_ago(5), sent=26, match_keys={"em": 26})),
        ],
    )
    settings = settings_for(
        kafka_bootstrap,
        topics,
        "http://127.0.0.1:9",  # no event is sent
        tmp_path / "creds",
        state_dir=tmp_path / "state",
        signal_health_interval_s=1,
        signal_health_series=1,
    )
    with RunningApp(settings) as running:
        server = HealthServer(
            0,
            running.metrics.registry,
            running.app.monitor.alive_problems,
            running.app.monitor.ready_problems,
            host="127.0.0.1",
        )
        server.start()
        try:
            first = _until(server.port, lambda s: ("capi_signal_events", ()) in s)
            refreshed = first.pop(("capi_signal_health_refreshed_timestamp_seconds", ()))
            assert abs(refreshed - time.time()) < 30
            assert _coverage(first) == {**dict.fromkeys(KEY_ORDER, 0.0), "em": 1.0, "ph": 0.5}
            assert _without_coverage(first) == {
                ("capi_signal_events", ()): 2,
                ("capi_signal_events_below_minimum", ()): 1,
                ("capi_signal_events_fell_below_minimum", ()): 1,
                # one series (CAPI_SIGNAL_HEALTH_SERIES=1): the one that fell below
                ("capi_signal_weekly_sent", (("dataset", "ds-fell"), ("event_name", "Lead"))): 10,
                (
                    "capi_signal_fell_below_minimum",
                    (("dataset", "ds-fell"), ("event_name", "Lead")),
                ): 1,
            }
            # ds-fell's Lead is back over 50: the lowest, ds-ok's Purchase, takes the one series
            _produce(
                kafka_bootstrap,
                topics.signals,
                [(2, record(2, "ds-fell", "Lead", _days_ago(2), sent=45))],
            )
            second = _until(
                server.port, lambda s: s.get(("capi_signal_events_fell_below_minimum", ())) == 0
            )
            assert second[("capi_signal_events_below_minimum", ())] == 0
            assert {k: v for k, v in _without_coverage(second).items() if k[1]} == {
                ("capi_signal_weekly_sent", (("dataset", "ds-ok"), ("event_name", "Purchase"))): 52
            }
        finally:
            server.stop()
