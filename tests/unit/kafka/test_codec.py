import io
import json
from typing import Any

import fastavro
import pytest

from consumer.errors import DecodeError, SchemaUnavailableError
from consumer.events.records import TRIGGER_AVRO_TYPES, Trigger
from consumer.kafka.codec import DEFAULT_SCHEMA_DIR, AvroCodec, SchemaStore
from tests.factories import trigger_record

STORE = SchemaStore()


def test_single_object_header_is_c301_and_the_crc64_fingerprint_little_endian():
    codec = AvroCodec(STORE)
    data = codec.encode("ConversionTriggered", trigger_record(), "t")
    assert data[:2] == b"\xc3\x01"
    canonical = fastavro.schema.to_parsing_canonical_form(
        json.loads(STORE.text("ConversionTriggered"))
    )
    value = _crc64_avro(canonical.encode())
    assert data[2:10] == value.to_bytes(8, "little")


def _crc64_avro(data: bytes) -> int:
    """The Avro specification's reference algorithm, written out independently."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_crc64_reference_matches_the_specification_vector():
    assert _crc64_avro(b'"null"') == 0x63DD24E7CC258F8A


def test_round_trip_every_schema_field():
    codec = AvroCodec(STORE)
    record = trigger_record(test_event_code="TEST1", ctwa_clid="abc")
    decoded = codec.decode(codec.encode("ConversionTriggered", record, "t"), "ConversionTriggered")
    assert decoded == record


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\xc3\x01\x00", "truncated"),
        (b"\xc3\x01" + b"\x01" * 8 + b"\x00", "unknown writer schema"),
        (b'{"json": true}', "unknown framing"),
        (b"\x00\x00\x00\x00\x07\x00", "no CAPI_SCHEMA_REGISTRY_URL"),
    ],
)
def test_bad_bytes_raise_decode_error(data, message):
    with pytest.raises(DecodeError, match=message):
        AvroCodec(STORE).decode(data, "ConversionTriggered")


def test_corrupt_body_and_trailing_bytes_are_decode_errors():
    codec = AvroCodec(STORE)
    good = codec.encode("ConversionTriggered", trigger_record(), "t")
    with pytest.raises(DecodeError, match="corrupt"):
        codec.decode(good[:14], "ConversionTriggered")
    with pytest.raises(DecodeError, match="trailing"):
        codec.decode(good + b"\x00", "ConversionTriggered")


def test_another_record_type_is_refused():
    codec = AvroCodec(STORE)
    data = codec.encode(
        "ConversionResult",
        {
            "status": "SENT",
            "source_topic": "t",
            "source_partition": 0,
            "source_offset": 1,
            "processed_at": 1,
        },
        "t",
    )
    with pytest.raises(DecodeError, match="expected a ConversionTriggered"):
        codec.decode(data, "ConversionTriggered")


class FakeRegistry:
    """Implements the two calls the codec makes of a Schema Registry client."""

    def __init__(self):
        self.schemas = {}
        self.down = False

    def lookup_schema(self, subject_name, schema):
        self._answer()
        for schema_id, (subject, known) in self.schemas.items():
            if subject == subject_name and known.schema_str == schema.schema_str:
                return type("Registered", (), {"schema_id": schema_id})
        raise _Refused(404)

    def _answer(self):
        if self.down:
            raise ConnectionError("connection refused")

    def register_schema(self, subject_name, schema):
        self._answer()
        for schema_id, (_subject, known) in self.schemas.items():
            if known.schema_str == schema.schema_str:
                return schema_id
        schema_id = len(self.schemas) + 1
        self.schemas[schema_id] = (subject_name, schema)
        return schema_id

    def get_schema(self, schema_id):
        self._answer()
        return self.schemas[schema_id][1]


class _Refused(Exception):
    def __init__(self, status):
        super().__init__(f"HTTP {status}")
        self.http_status_code = status


def test_confluent_framing_with_a_registry_round_trips_and_plain_reader_accepts_both():
    registry = FakeRegistry()
    with_registry = AvroCodec(STORE, registry, auto_register=True)
    record = trigger_record()
    framed = with_registry.encode("ConversionTriggered", record, "conversions.triggered")
    assert framed[0] == 0
    assert int.from_bytes(framed[1:5], "big") == 1
    assert registry.schemas[1][0] == "conversions.triggered-value"
    assert with_registry.decode(framed, "ConversionTriggered") == record
    single = AvroCodec(STORE).encode("ConversionTriggered", record, "t")
    assert with_registry.decode(single, "ConversionTriggered") == record


def test_a_registry_body_of_the_current_schema_is_read_by_the_compiled_reader(monkeypatch):
    registry = FakeRegistry()
    codec = AvroCodec(STORE, registry, auto_register=True)
    framed = codec.encode("ConversionTriggered", trigger_record(), "t")

    def not_fastavro(*args, **kwargs):
        raise AssertionError("read by fastavro")

    monkeypatch.setattr(fastavro, "schemaless_reader", not_fastavro)
    assert AvroCodec(STORE, registry).decode(framed, "ConversionTriggered") == trigger_record()
    with pytest.raises(DecodeError, match="trailing bytes"):
        AvroCodec(STORE, registry).decode(framed + b"\x00", "ConversionTriggered")


def test_a_typed_decoder_knows_a_registry_framing_of_the_current_schema_and_stays_as_strict():
    registry = FakeRegistry()
    framed = AvroCodec(STORE, registry, auto_register=True).encode(
        "ConversionTriggered", trigger_record(), "t"
    )
    _older_trigger(registry)  # id 9: an older schema, beside the current one's id 1
    decode = AvroCodec(STORE, registry).typed_decoder(
        "ConversionTriggered", TRIGGER_AVRO_TYPES, Trigger.from_avro
    )
    expected = Trigger.from_avro(trigger_record())
    assert decode(framed) == expected  # the registry asked once
    assert decode(framed) == expected  # known by its first five bytes
    with pytest.raises(DecodeError, match="trailing bytes"):
        decode(framed + b"\x00")
    with pytest.raises(DecodeError, match="corrupt"):
        decode(framed[:12])
    # the same body under the older schema's id is not the current schema's
    with pytest.raises(DecodeError):
        decode(b"\x00" + (9).to_bytes(4, "big") + framed[5:])
    single = AvroCodec(STORE).encode("ConversionTriggered", trigger_record(), "t")
    with pytest.raises(DecodeError, match="trailing bytes"):
        decode(single + b"\x00")


def _older_trigger(registry: FakeRegistry) -> tuple[bytes, dict[str, Any]]:
    """A trigger written with an older schema (no `test_event_code`), registered as id 9: its
    Confluent-framed bytes, and the record written."""
    old = json.loads(STORE.text("ConversionTriggered"))
    old["fields"] = [f for f in old["fields"] if f["name"] != "test_event_code"]

    class Old:
        schema_str = json.dumps(old)

    registry.schemas[9] = ("t-value", Old)
    record = trigger_record()
    del record["test_event_code"]
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(json.loads(json.dumps(old))), record)
    return b"\x00" + (9).to_bytes(4, "big") + buf.getvalue(), record


def test_registry_writer_with_an_older_schema_is_resolved_to_the_reader():
    registry = FakeRegistry()
    framed, record = _older_trigger(registry)
    decoded = AvroCodec(STORE, registry).decode(framed, "ConversionTriggered")
    assert decoded["test_event_code"] is None
    assert decoded["event_id"] == record["event_id"]


def test_a_typed_decoder_types_a_body_of_another_schema_through_its_dict():
    # fastavro resolves the older writer schema, the dict is typed; a dict that cannot be typed
    # is a DecodeError
    registry = FakeRegistry()
    framed, record = _older_trigger(registry)
    codec = AvroCodec(STORE, registry)
    decode = codec.typed_decoder("ConversionTriggered", TRIGGER_AVRO_TYPES, Trigger.from_avro)
    assert decode(framed) == Trigger.from_avro({**record, "test_event_code": None})
    current = AvroCodec(STORE).encode("ConversionTriggered", trigger_record(), "t")
    assert decode(current) == Trigger.from_avro(trigger_record())

    def refuse(record: dict[str, Any]) -> Trigger:
        raise KeyError("event_id")

    refusing = codec.typed_decoder("ConversionTriggered", TRIGGER_AVRO_TYPES, refuse)
    with pytest.raises(DecodeError, match="bad record"):
        refusing(framed)
    assert refusing(current) == Trigger.from_avro(trigger_record())  # read typed: no dict


def test_without_auto_registration_the_schema_is_looked_up_and_never_registered():
    registry = FakeRegistry()
    codec = AvroCodec(STORE, registry)
    with pytest.raises(DecodeError, match="CAPI_SCHEMA_REGISTRY_AUTO_REGISTER=true"):
        codec.encode("ConversionResult", {}, "results")
    assert registry.schemas == {}
    AvroCodec(STORE, registry, auto_register=True).schema_id("ConversionResult", "results")
    assert codec.schema_id("ConversionResult", "results") == 1  # found once registered


def test_a_registry_that_does_not_answer_is_a_passing_condition_said_until_it_answers():
    registry = FakeRegistry()
    framed = AvroCodec(STORE, registry, auto_register=True).encode(
        "ConversionTriggered", trigger_record(), "t"
    )
    codec = AvroCodec(STORE, registry)
    registry.down = True
    with pytest.raises(SchemaUnavailableError):
        codec.decode(framed, "ConversionTriggered")
    assert "connection refused" in (codec.registry_problem or "")
    registry.down = False
    assert codec.decode(framed, "ConversionTriggered") == trigger_record()
    assert codec.registry_problem is None


def _newer(name, field):
    """The schema `name` with one more optional field, as a newer producer writes it."""
    schema = json.loads(STORE.text(name))
    schema["fields"].append({"name": field, "type": ["null", "string"], "default": None})
    return schema


def test_a_newer_writer_schema_is_decoded_from_the_registry():
    registry = FakeRegistry()
    newer = _newer("ConversionTriggered", "campaign")

    class Newer:
        schema_str = json.dumps(newer)

    registry.schemas[3] = ("t-value", Newer)
    buf = io.BytesIO()
    fastavro.schemaless_writer(
        buf, fastavro.parse_schema(newer), {**trigger_record(), "campaign": "x"}
    )
    decoded = AvroCodec(STORE, registry).decode(
        b"\x00" + (3).to_bytes(4, "big") + buf.getvalue(), "ConversionTriggered"
    )
    assert decoded == trigger_record()  # the added field is not in our reader schema


def test_a_newer_writer_schema_is_decoded_without_a_registry_when_kept_in_history(tmp_path):
    newer = _newer("ConversionTriggered", "campaign")
    for path in DEFAULT_SCHEMA_DIR.glob("*.avsc"):
        (tmp_path / path.name).write_text(path.read_text())
    writer = AvroCodec(SchemaStore(_store_with(tmp_path / "writer", newer)))
    data = writer.encode("ConversionTriggered", {**trigger_record(), "campaign": "x"}, "t")
    with pytest.raises(DecodeError, match="unknown writer schema fingerprint"):
        AvroCodec(SchemaStore(tmp_path)).decode(data, "ConversionTriggered")
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "ConversionTriggered.v2.avsc").write_text(json.dumps(newer))
    assert AvroCodec(SchemaStore(tmp_path)).decode(data, "ConversionTriggered") == trigger_record()


def _store_with(directory, schema):
    """A schema folder like ours, with `schema` in place of its current version."""
    directory.mkdir()
    for path in DEFAULT_SCHEMA_DIR.glob("*.avsc"):
        (directory / path.name).write_text(path.read_text())
    (directory / f"{schema['name']}.avsc").write_text(json.dumps(schema))
    return directory


def test_the_framing_is_asked_of_the_registry_until_it_answers_then_kept():
    registry = FakeRegistry()
    AvroCodec(STORE, registry, auto_register=True).schema_id("ConversionResult", "results")
    codec = AvroCodec(STORE, registry)
    registry.down = True
    with pytest.raises(SchemaUnavailableError):
        codec.header("ConversionResult", "results")
    registry.down = False
    assert codec.header("ConversionResult", "results") == b"\x00" + (1).to_bytes(4, "big")
    registry.down = True  # made once: a later record needs no registry
    assert codec.header("ConversionResult", "results") == b"\x00" + (1).to_bytes(4, "big")
