"""The signal-health refresh: only the owner of input partition 0 reads the signals topic and
shows its health, every interval on a fake clock; a failed read is said once and tried again at
the next interval."""

import datetime as dt
import logging
import threading

from prometheus_client import CollectorRegistry

from consumer.errors import BrokerUnavailableError
from consumer.ops.metrics import Metrics
from consumer.service.ownership import Ownership
from consumer.service.signal_refresh import SignalHealthRefresh
from tests.signal_records import read, record

NOW_MS = int(dt.datetime(2026, 12, 8, 9, 30, tzinfo=dt.UTC).timestamp() * 1000)
YESTERDAY = "2026-12-07"


class FakeTopic:
    """The signals topic as `read` returns it: what it holds now, or a broker that is away."""

    def __init__(self, *records):
        self.records = list(records)
        self.reads = 0
        self.since = None
        self.away = False

    def read(self, *, since, stopped):
        self.reads += 1
        self.since = since
        if self.away:
            raise BrokerUnavailableError("kafka:9092", "Local: Timed out")
        return read(*self.records)


class Clock:
    def __init__(self):
        self.now = 100.0

    def monotonic(self):
        return self.now


def _refresh(topic, owned, metrics, clock, interval_s=300, series=20):
    return SignalHealthRefresh(
        topic.read,
        lambda: ("in", 0) in owned,
        metrics.signal_health,
        interval_s=interval_s,
        series=series,
        clock_ms=lambda: NOW_MS + int((clock.now - 100.0) * 1000),
        monotonic=clock.monotonic,
    )


def _weekly(metrics):
    return {
        sample.labels["dataset"]: sample.value
        for family in metrics.registry.collect()
        if family.name == "capi_signal_weekly_sent"
        for sample in family.samples
    }


def _value(metrics, name):
    return metrics.registry.get_sample_value(name)


def test_only_the_owner_of_partition_0_reads_and_shows():
    topic = FakeTopic(record(0, "ds-1", "Lead", YESTERDAY, sent=7))
    owned, clock = Ownership(), Clock()
    owned.arrived([("in", 1), ("in", 2)])
    metrics = Metrics(CollectorRegistry())
    refresh = _refresh(topic, owned, metrics, clock)
    refresh.turn()
    assert (topic.reads, _value(metrics, "capi_signal_events")) == (0, None)
    owned.arrived([("in", 0)])
    refresh.turn()
    assert topic.reads == 1
    assert topic.since == dt.date(2026, 11, 24)  # the two weeks before today, by the clock
    assert _weekly(metrics) == {"ds-1": 7}  # yesterday: the last complete week
    assert _value(metrics, "capi_signal_events") == 1
    assert _value(metrics, "capi_signal_health_refreshed_timestamp_seconds") == NOW_MS / 1000


def test_every_interval_the_topic_is_read_again_and_series_no_longer_shown_go():
    topic = FakeTopic(
        record(0, "ds-1", "Lead", YESTERDAY, sent=7), record(0, "ds-2", "Lead", YESTERDAY, sent=9)
    )
    owned, clock = Ownership(), Clock()
    owned.arrived([("in", 0)])
    metrics = Metrics(CollectorRegistry())
    refresh = _refresh(topic, owned, metrics, clock, interval_s=300, series=1)
    refresh.turn()
    assert _weekly(metrics) == {"ds-1": 7}
    topic.records.append(record(0, "ds-3", "Lead", YESTERDAY, sent=1))
    clock.now += 299
    refresh.turn()
    assert (topic.reads, _weekly(metrics)) == (1, {"ds-1": 7})
    clock.now += 1
    refresh.turn()
    assert (topic.reads, _weekly(metrics)) == (2, {"ds-3": 1})
    assert _value(metrics, "capi_signal_events") == 3


def test_partition_0_leaving_clears_the_gauges_and_coming_back_reads_at_once():
    topic = FakeTopic(record(0, "ds-1", "Lead", YESTERDAY, sent=7))
    owned, clock = Ownership(), Clock()
    owned.arrived([("in", 0)])
    metrics = Metrics(CollectorRegistry())
    refresh = _refresh(topic, owned, metrics, clock)
    refresh.turn()
    owned.left([("in", 0)])
    clock.now += 1
    refresh.turn()
    assert (_weekly(metrics), _value(metrics, "capi_signal_events")) == ({}, None)
    owned.arrived([("in", 0)])
    clock.now += 1  # well within the interval
    refresh.turn()
    assert (topic.reads, _weekly(metrics)) == (2, {"ds-1": 7})


def test_a_broker_away_is_said_once_and_tried_again_at_each_interval(caplog):
    topic = FakeTopic(record(0, "ds-1", "Lead", YESTERDAY, sent=7))
    owned, clock = Ownership(), Clock()
    owned.arrived([("in", 0)])
    metrics = Metrics(CollectorRegistry())
    refresh = _refresh(topic, owned, metrics, clock, interval_s=60)
    refresh.turn()
    topic.away = True
    topic.records.append(record(0, "ds-2", "Lead", YESTERDAY, sent=1))
    with caplog.at_level(logging.INFO, logger="consumer.service.signal_refresh"):
        for _ in range(5 * 60):  # five minutes of turns, one a second
            clock.now += 1
            refresh.turn()
        assert topic.reads == 1 + 5
        assert _weekly(metrics) == {"ds-1": 7}  # the last values stay, with their time
        assert _value(metrics, "capi_signal_health_refreshed_timestamp_seconds") == NOW_MS / 1000
        topic.away = False
        clock.now += 60
        refresh.turn()
    assert _weekly(metrics) == {"ds-1": 7, "ds-2": 1}
    assert [r.getMessage() for r in caplog.records] == [
        "signal health: the signals topic could not be read (broker kafka:9092: does not answer "
        "(Local: Timed out)); trying again every 60 s",
        "signal health: the signals topic is read again",
    ]


def test_a_read_cut_short_by_the_stop_shows_nothing():
    owned, clock = Ownership(), Clock()
    owned.arrived([("in", 0)])
    metrics = Metrics(CollectorRegistry())
    topic = FakeTopic(record(0, "ds-1", "Lead", YESTERDAY, sent=7))

    def read_until_stopped(*, since, stopped):
        refresh.close()
        assert stopped()
        return topic.read(since=since, stopped=stopped)

    refresh = SignalHealthRefresh(
        read_until_stopped,
        lambda: ("in", 0) in owned,
        metrics.signal_health,
        interval_s=300,
        series=20,
        clock_ms=lambda: NOW_MS,
        monotonic=clock.monotonic,
    )
    refresh.turn()
    assert _value(metrics, "capi_signal_events") is None


def test_the_thread_refreshes_at_start_and_stops_on_close():
    owned = Ownership()
    owned.arrived([("in", 0)])
    metrics = Metrics(CollectorRegistry())
    done = threading.Event()
    topic = FakeTopic(record(0, "ds-1", "Lead", YESTERDAY, sent=7))

    def read_and_say(*, since, stopped):
        records = topic.read(since=since, stopped=stopped)
        done.set()
        return records

    refresh = SignalHealthRefresh(
        read_and_say,
        lambda: ("in", 0) in owned,
        metrics.signal_health,
        interval_s=300,
        series=20,
        clock_ms=lambda: NOW_MS,
    )
    refresh.start()
    try:
        assert done.wait(5)
    finally:
        refresh.close()
    assert "signal-health" not in {thread.name for thread in threading.enumerate()}
