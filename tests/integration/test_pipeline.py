"""The service on a real broker, sending to the sandbox over HTTP."""

import time
import uuid

import pytest
from confluent_kafka import Consumer, Message, TopicPartition

from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.tools.demo import ResultReader, produce_sample_traffic
from consumer.tools.samples import SampleWorld, sandbox_config
from consumer.tools.sandbox.process import SandboxProcess
from tests.integration.harness import RunningApp, settings_for, write_credentials

pytestmark = pytest.mark.integration
CODEC = AvroCodec(SchemaStore())
WORLD = SampleWorld()


@pytest.fixture
def sandbox():
    with SandboxProcess(sandbox_config(WORLD), record_bodies=True) as process:
        yield process


@pytest.fixture
def settings(kafka_bootstrap, topics, sandbox, tmp_path):
    creds = write_credentials(tmp_path / "creds", WORLD.credentials)
    return settings_for(kafka_bootstrap, topics, sandbox.url, creds)


def _by_event(results):
    return {r["event_id"]: r for r in results}


def test_each_kind_of_trigger_gets_its_result(kafka_bootstrap, topics, settings, sandbox):
    base = WORLD.triggers(4, seed=1, only_valid=True)
    whatsapp = next(
        t
        for t in WORLD.triggers(40, seed=2, only_valid=True)
        if t["channel"] == "WHATSAPP" and t["connection_id"] == "conn-us"
    )
    triggers = [
        {**base[0], "event_id": "ok-1"},
        {**whatsapp, "event_id": "no-clid", "ctwa_clid": None},
        {**base[1], "event_id": "unknown-conn", "connection_id": "conn-missing"},
        {**base[2], "event_id": "dup"},
        {**base[3], "event_id": "dup"},
    ]
    expected = produce_sample_traffic(
        kafka_bootstrap, topics, CODEC, triggers, WORLD.connections(), garbage=1
    )
    reader = ResultReader(kafka_bootstrap, topics.results, CODEC)
    with RunningApp(settings) as running:
        assert reader.read_until(expected, 60)
    reader.close()
    results = reader.results
    assert len(results) == expected == 6
    by_event = _by_event(r for r in results if r["event_id"])
    assert by_event["ok-1"]["status"] == "SENT"
    assert by_event["ok-1"]["meta_response"]["events_received"] >= 1
    assert by_event["ok-1"]["attempts"] == 1
    assert (by_event["no-clid"]["status"], by_event["no-clid"]["reason"]) == (
        "SKIPPED",
        "NOT_AD_ATTRIBUTED",
    )
    assert by_event["unknown-conn"]["reason"] == "UNKNOWN_CONNECTION"
    dup_results = sorted(
        (r["status"], r["reason"] or "") for r in results if r["event_id"] == "dup"
    )
    assert dup_results == [("SENT", ""), ("SKIPPED", "DUPLICATE")]
    undecodable = [r for r in results if r["reason"] == "UNDECODABLE"]
    assert len(undecodable) == 1 and undecodable[0]["event_id"] is None
    # every result points back at its input
    assert sorted((r["source_partition"], r["source_offset"]) for r in results) == sorted(
        {(r["source_partition"], r["source_offset"]) for r in results}
    )
    # dead letters keep the bytes and say why: the undecodable message and the one an operator
    # can fix (unknown connection)
    dlq = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": uuid.uuid4().hex,
            "isolation.level": "read_committed",
        }
    )
    dlq.assign([TopicPartition(topics.dlq, p, 0) for p in range(3)])
    letters: list[Message] = []
    deadline = time.monotonic() + 30
    while len(letters) < 2 and time.monotonic() < deadline:
        letters += [m for m in dlq.consume(10, 1.0) if m.error() is None]
    dlq.close()
    assert len(letters) == 2
    by_reason = {_headers(m)["capi.error"].split(b":")[0]: m for m in letters}
    garbage = by_reason[b"UNDECODABLE"]
    headers = _headers(garbage)
    assert garbage.value() == b"not avro \x00"
    assert headers["capi.source.topic"] == topics.triggered.encode()
    assert int(headers["capi.source.offset"]) == undecodable[0]["source_offset"]
    unknown = by_reason[b"UNKNOWN_CONNECTION"]
    assert CODEC.decode(unknown.value(), "ConversionTriggered")["event_id"] == "unknown-conn"
    # metrics saw the same
    m = running.metrics.registry
    assert m.get_sample_value("capi_messages_consumed_total", {"topic": topics.triggered}) == 6
    assert m.get_sample_value("capi_results_total", {"status": "SENT", "reason": ""}) == 2
    assert (m.get_sample_value("capi_requests_total", {"outcome": "success", "code": ""}) or 0) >= 1
    assert (m.get_sample_value("capi_request_duration_seconds_count") or 0) >= 1
    assert m.get_sample_value("capi_dead_letters_total", {"reason": "UNDECODABLE"}) == 1


def _committed(bootstrap, group, topic):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = [TopicPartition(topic, p) for p in range(3)]
        return {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10)}
    finally:
        consumer.close()


def _end_offsets(bootstrap, topic, expected):
    """Last offset + 1 per partition, found by reading (Tansu's high watermark is the last
    batch's base offset + 1, so it cannot be trusted here)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    ends, seen = {}, 0
    deadline = time.monotonic() + 30
    while seen < expected and time.monotonic() < deadline:
        for msg in consumer.consume(1000, 0.5):
            seen += 1
            ends[msg.partition()] = (msg.offset() or 0) + 1
    consumer.close()
    return ends


def test_offsets_are_committed_after_results_and_a_restart_reprocesses_nothing(
    kafka_bootstrap, topics, settings, sandbox
):
    expected = produce_sample_traffic(
        kafka_bootstrap, topics, CODEC, WORLD.triggers(120, seed=3), WORLD.connections()
    )
    reader = ResultReader(kafka_bootstrap, topics.results, CODEC)
    with RunningApp(settings):
        assert reader.read_until(expected, 60)
    committed = _committed(kafka_bootstrap, settings.group_id, topics.triggered)
    assert committed == _end_offsets(kafka_bootstrap, topics.triggered, expected)
    sent_before = sandbox.stats()["accepted_events"]

    with RunningApp(settings):
        time.sleep(4)  # long enough to join the group and fetch
    reader.read(1.0)
    reader.close()
    assert len(reader.results) == expected
    assert sandbox.stats()["accepted_events"] == sent_before


def test_connection_added_while_running_is_seen_by_the_next_trigger(
    kafka_bootstrap, topics, settings, sandbox
):
    trigger = WORLD.triggers(1, seed=4, only_valid=True)[0]
    connection = next(
        c for c in WORLD.connections() if c["connection_id"] == trigger["connection_id"]
    )
    reader = ResultReader(kafka_bootstrap, topics.results, CODEC)
    produce_sample_traffic(kafka_bootstrap, topics, CODEC, [], [])
    with RunningApp(settings):
        produce_sample_traffic(
            kafka_bootstrap, topics, CODEC, [{**trigger, "event_id": "before"}], []
        )
        assert reader.read_until(1, 60)
        produce_sample_traffic(kafka_bootstrap, topics, CODEC, [], [connection])
        time.sleep(1.0)
        produce_sample_traffic(
            kafka_bootstrap, topics, CODEC, [{**trigger, "event_id": "after"}], []
        )
        assert reader.read_until(2, 60)
    reader.close()
    by_event = _by_event(reader.results)
    assert by_event["before"]["reason"] == "UNKNOWN_CONNECTION"
    assert by_event["after"]["status"] == "SENT"


def test_missing_credentials_fail_with_a_result(kafka_bootstrap, topics, sandbox, tmp_path):
    creds = write_credentials(tmp_path / "empty-creds", {})
    settings = settings_for(kafka_bootstrap, topics, sandbox.url, creds)
    trigger = WORLD.triggers(1, seed=5, only_valid=True)[0]
    produce_sample_traffic(kafka_bootstrap, topics, CODEC, [trigger], WORLD.connections())
    reader = ResultReader(kafka_bootstrap, topics.results, CODEC)
    with RunningApp(settings):
        assert reader.read_until(1, 60)
    reader.close()
    result = reader.results[0]
    assert (result["status"], result["reason"]) == ("FAILED", "MISSING_CREDENTIALS")
    assert sandbox.stats()["accepted_requests"] == 0


def test_a_static_member_processes_and_gets_its_partitions_back_after_a_restart(
    kafka_bootstrap, topics, settings, tmp_path
):
    """`CAPI_STATIC_MEMBERSHIP=true`: the consumer joins with `group.instance.id` =
    `CAPI_INSTANCE_ID` and works as a dynamic member does; restarted with the same id and state
    folder, it gets its partitions back and finishes the input without a second result."""
    from dataclasses import replace

    static = replace(
        settings, static_membership=True, instance_id="static-1", state_dir=tmp_path / "state"
    )
    triggers = WORLD.triggers(300, seed=41)
    first = produce_sample_traffic(
        kafka_bootstrap, topics, CODEC, triggers[:150], WORLD.connections()
    )
    reader = ResultReader(kafka_bootstrap, topics.results, CODEC)
    with RunningApp(static):
        assert reader.read_until(first, 60)
    second = produce_sample_traffic(kafka_bootstrap, topics, CODEC, triggers[150:], [])
    with RunningApp(static):
        assert reader.read_until(first + second, 60)
    reader.close()
    sources = [(r["source_partition"], r["source_offset"]) for r in reader.results]
    assert len(sources) == len(set(sources)) == first + second


def _headers(msg: Message) -> dict[str, bytes]:
    """A message's headers, each value as bytes."""
    headers = msg.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    return {k: v if isinstance(v, bytes) else str(v or "").encode() for k, v in pairs}
