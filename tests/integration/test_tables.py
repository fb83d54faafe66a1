"""Reference tables on a real broker, kept in the SQLite state store."""

import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.kafka.topics import COMPACT, TopicSpec, ensure_topics
from consumer.store.reference_tables import ReferenceTables
from consumer.store.sqlite import StateStore
from consumer.store.table_reader import TableReader
from tests.factories import connection_record

pytestmark = pytest.mark.integration
CODEC = AvroCodec(SchemaStore())


def _contact(contact_id, email):
    return {
        "contact_id": contact_id,
        "workspace_id": "ws-1",
        "email": email,
        "phone": None,
        "first_name": "Erin",
        "last_name": None,
        "gender": None,
        "date_of_birth": None,
        "city": None,
        "state": None,
        "zip": None,
        "country": "US",
        "external_id": None,
        "identities": [],
        "updated_at": 0,
    }


def _produce(bootstrap, topic, schema, items):
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, record in items:
        value = None if record is None else CODEC.encode(schema, record, topic)
        producer.produce(topic, key=key.encode(), value=value)
    assert producer.flush(30) == 0


def _contacts(bootstrap, topics, emails):
    """Contacts by id with these emails; an email of None is a tombstone."""
    items = [(c, None if e is None else _contact(c, e)) for c, e in emails.items()]
    _produce(bootstrap, topics.contacts, "Contact", items)


class Tables:
    """Opens the store and a reader over all three tables, like the service does."""

    def __init__(self, bootstrap, topics, state_dir):
        self.tables = ReferenceTables.for_topics(CODEC, topics)
        self.store = StateStore(state_dir).open()
        self.reader = TableReader(self.tables.all(), {"bootstrap.servers": bootstrap}, self.store)

    def __enter__(self):
        self.reader.bootstrap(timeout_s=60)
        return self

    def poll_until(self, condition, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.reader.poll()
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError("condition not reached")

    def __exit__(self, *exc):
        self.reader.close()
        self.store.close()


def test_bootstrap_reads_everything_then_applies_live_updates(kafka_bootstrap, topics, tmp_path):
    _produce(
        kafka_bootstrap,
        topics.connections,
        "MetaConnection",
        [(f"conn-{i}", connection_record(connection_id=f"conn-{i}")) for i in range(50)]
        + [("conn-3", None)],
    )
    _contacts(kafka_bootstrap, topics, {f"c-{i}": f"p{i}@example.com" for i in range(300)})
    with Tables(kafka_bootstrap, topics, tmp_path / "state") as t:
        assert len(t.tables.connections) == 49
        assert t.tables.connections.get("conn-3") is None
        assert t.tables.connections.get("conn-7").status.value == "ACTIVE"
        assert len(t.tables.contacts) == 300
        assert t.tables.contacts.get("c-42").customer_info.email == "p42@example.com"
        assert len(t.tables.referrals) == 0

        _produce(
            kafka_bootstrap,
            topics.connections,
            "MetaConnection",
            [("conn-7", connection_record(connection_id="conn-7", status="DISCONNECTED"))],
        )
        _contacts(kafka_bootstrap, topics, {"c-42": "new42@example.com"})
        t.poll_until(
            lambda: (
                t.tables.connections.get("conn-7").status.value == "DISCONNECTED"
                and t.tables.contacts.get("c-42").customer_info.email == "new42@example.com"
            )
        )


def test_restart_resumes_from_the_stored_offsets(kafka_bootstrap, topics, tmp_path):
    state = tmp_path / "state"
    _contacts(kafka_bootstrap, topics, {f"c-{i}": f"p{i}@example.com" for i in range(200)})
    with Tables(kafka_bootstrap, topics, state) as first:
        assert first.reader.records_read == 200
    _contacts(kafka_bootstrap, topics, {f"c-new-{i}": "n@example.com" for i in range(7)})
    with Tables(kafka_bootstrap, topics, state) as second:
        assert second.reader.records_read == 7
        assert len(second.tables.contacts) == 207
    with Tables(kafka_bootstrap, topics, tmp_path / "empty-state") as rebuilt:
        assert rebuilt.reader.records_read == 207
        assert len(rebuilt.tables.contacts) == 207


def test_a_recreated_topic_resets_its_table(kafka_bootstrap, topics, tmp_path):
    state = tmp_path / "state"
    _contacts(kafka_bootstrap, topics, {f"c-{i}": "x@example.com" for i in range(20)})
    with Tables(kafka_bootstrap, topics, state) as t:
        assert len(t.tables.contacts) == 20
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.delete_topics([topics.contacts])[topics.contacts].result()
    time.sleep(0.5)
    ensure_topics({"bootstrap.servers": kafka_bootstrap}, [TopicSpec(topics.contacts, 3, COMPACT)])
    _contacts(kafka_bootstrap, topics, {"c-0": "y@example.com"})
    with Tables(kafka_bootstrap, topics, state) as t:
        assert len(t.tables.contacts) == 1
        assert t.tables.contacts.get("c-0").customer_info.email == "y@example.com"


def test_tombstone_erases_the_contact_from_the_store_file(kafka_bootstrap, topics, tmp_path):
    state = tmp_path / "state"
    secret_email = "erase.me.please@example.com"
    _contacts(kafka_bootstrap, topics, {"c-keep": "keep@example.com", "c-erase": secret_email})
    with Tables(kafka_bootstrap, topics, state) as t:
        assert t.tables.contacts.get("c-erase") is not None
        assert secret_email.encode() in (state / "tables.sqlite3").read_bytes()
        _contacts(kafka_bootstrap, topics, {"c-erase": None})
        t.poll_until(lambda: t.tables.contacts.get("c-erase") is None)
        assert t.tables.contacts.get("c-keep") is not None
    for path in state.iterdir():
        assert secret_email.encode() not in path.read_bytes(), path


def test_undecodable_table_records_are_counted_not_stored(kafka_bootstrap, topics, tmp_path):
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topics.connections, key=b"bad", value=b"garbage")
    producer.produce(topics.connections, value=b"no key")
    producer.flush(30)
    with Tables(kafka_bootstrap, topics, tmp_path / "state") as t:
        assert len(t.tables.connections) == 0
        assert t.tables.connections.errors == 2
