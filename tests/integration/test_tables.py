import pytest
from confluent_kafka import Producer

from consumer.codec import AvroCodec, SchemaStore
from consumer.records import MetaConnection
from consumer.tables import Table, TableReader
from tests.factories import connection_record

pytestmark = pytest.mark.integration
CODEC = AvroCodec(SchemaStore())


def _produce(bootstrap, topic, items):
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, record in items:
        value = None if record is None else CODEC.encode("MetaConnection", record, topic)
        producer.produce(topic, key=key.encode(), value=value)
    assert producer.flush(30) == 0


def _table(topic):
    return Table(
        "connections", topic, lambda b: MetaConnection.from_avro(CODEC.decode(b, "MetaConnection"))
    )


def test_bootstrap_reads_to_the_high_watermark_then_applies_live_updates(kafka_bootstrap, topics):
    records = [(f"conn-{i}", connection_record(connection_id=f"conn-{i}")) for i in range(50)]
    _produce(kafka_bootstrap, topics.connections, records)
    _produce(kafka_bootstrap, topics.connections, [("conn-3", None)])  # tombstone
    table = _table(topics.connections)
    reader = TableReader([table], {"bootstrap.servers": kafka_bootstrap})
    try:
        reader.bootstrap(timeout_s=30)
        assert len(table) == 49
        assert table.get("conn-3") is None
        assert table.get("conn-7").connection_id == "conn-7"

        _produce(kafka_bootstrap, topics.connections,
                 [("conn-7", connection_record(connection_id="conn-7", status="DISCONNECTED")),
                  ("conn-99", connection_record(connection_id="conn-99"))])  # fmt: skip
        for _ in range(100):
            reader.poll()
            if table.get("conn-99") is not None and table.get("conn-7").status.value != "ACTIVE":
                break
            import time

            time.sleep(0.05)
        assert table.get("conn-99") is not None
        assert table.get("conn-7").status.value == "DISCONNECTED"
    finally:
        reader.close()


def test_empty_topic_bootstraps_immediately_and_garbage_is_counted(kafka_bootstrap, topics):
    table = _table(topics.connections)
    reader = TableReader([table], {"bootstrap.servers": kafka_bootstrap})
    try:
        reader.bootstrap(timeout_s=30)
        assert len(table) == 0
    finally:
        reader.close()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topics.connections, key=b"bad", value=b"garbage")
    producer.flush(30)
    table = _table(topics.connections)
    reader = TableReader([table], {"bootstrap.servers": kafka_bootstrap})
    try:
        reader.bootstrap(timeout_s=30)
        assert len(table) == 0
        assert table.errors == 1
    finally:
        reader.close()
