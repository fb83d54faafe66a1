import io
import json

import fastavro
import pytest

from consumer.errors import DecodeError
from consumer.kafka.codec import AvroCodec, SchemaStore
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

    def register_schema(self, subject_name, schema):
        for schema_id, (_subject, known) in self.schemas.items():
            if known.schema_str == schema.schema_str:
                return schema_id
        schema_id = len(self.schemas) + 1
        self.schemas[schema_id] = (subject_name, schema)
        return schema_id

    def get_schema(self, schema_id):
        return self.schemas[schema_id][1]


def test_confluent_framing_with_a_registry_round_trips_and_plain_reader_accepts_both():
    registry = FakeRegistry()
    with_registry = AvroCodec(STORE, registry)
    record = trigger_record()
    framed = with_registry.encode("ConversionTriggered", record, "conversions.triggered")
    assert framed[0] == 0
    assert int.from_bytes(framed[1:5], "big") == 1
    assert registry.schemas[1][0] == "conversions.triggered-value"
    assert with_registry.decode(framed, "ConversionTriggered") == record
    single = AvroCodec(STORE).encode("ConversionTriggered", record, "t")
    assert with_registry.decode(single, "ConversionTriggered") == record


def test_registry_writer_with_an_older_schema_is_resolved_to_the_reader():
    registry = FakeRegistry()
    old = json.loads(STORE.text("ConversionTriggered"))
    old["fields"] = [f for f in old["fields"] if f["name"] != "test_event_code"]

    class Old:
        schema_str = json.dumps(old)

    registry.schemas[9] = ("t-value", Old)
    record = trigger_record()
    del record["test_event_code"]
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(json.loads(json.dumps(old))), record)
    decoded = AvroCodec(STORE, registry).decode(
        b"\x00" + (9).to_bytes(4, "big") + buf.getvalue(), "ConversionTriggered"
    )
    assert decoded["test_event_code"] is None
    assert decoded["event_id"] == record["event_id"]
