"""`capi-consumer tail` on a real broker: what a topic holds, oldest first across partitions."""

from __future__ import annotations

import json
import os

from confluent_kafka import Producer

from consumer.kafka.codec import AvroCodec, SchemaStore
from tests.cli import run_cli
from tests.factories import NOW_MS

CODEC = AvroCodec(SchemaStore())


def _result(event_id: str, partition: int, offset: int) -> bytes:
    record = {
        "event_id": event_id,
        "workspace_id": "ws-1",
        "contact_id": "c-1",
        "dataset_id": "ds-1",
        "channel": "WHATSAPP",
        "event_name": "Purchase",
        "status": "SENT",
        "reason": None,
        "detail": None,
        "test_event_code": None,
        "user_data_keys": ["em"],
        "meta_response": None,
        "meta_error": None,
        "attempts": 1,
        "source_topic": "in",
        "source_partition": partition,
        "source_offset": offset,
        "triggered_at": NOW_MS,
        "processed_at": NOW_MS,
    }
    return CODEC.encode("ConversionResult", record, "results")


def test_tail_prints_the_results_oldest_first_across_partitions(kafka_bootstrap, topics):
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    # partition 2 holds the oldest, partition 0 the newest: read by partition they would not be
    written = [("newest", 0, 1_000), ("middle", 1, 2_000), ("oldest", 2, 3_000)]
    for event_id, partition, age_ms in written:  # age: how long before now
        producer.produce(
            topics.results,
            key=event_id.encode(),
            value=_result(event_id, partition, 0),
            partition=partition,
            timestamp=NOW_MS - age_ms,
        )
    producer.flush(10)
    env = {**os.environ, "CAPI_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, **topics.as_env()}
    done = run_cli(env, "tail", "results", "--json")
    assert done.returncode == 0, done.stderr
    order = [json.loads(line)["event_id"] for line in done.stdout.splitlines()]
    assert order == ["oldest", "middle", "newest"]
