"""The compiled readers read what fastavro reads: every record of every schema of the contract,
generated; a corrupt body is refused or read as fastavro reads it, never read otherwise."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.errors import DecodeError
from consumer.events.records import TRIGGER_AVRO_TYPES, Channel, Trigger
from consumer.kafka.avro_reader import compile_reader
from consumer.kafka.codec import AvroCodec, SchemaStore

STORE = SchemaStore()
NAMES = [
    "ConversionTriggered",
    "ConversionResult",
    "Contact",
    "AdReferral",
    "MetaConnection",
    "ParkedEvent",
]
PRIMITIVES = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "string": st.text(max_size=30),
    "bytes": st.binary(max_size=30),
}


def values_of(schema: Any) -> st.SearchStrategy[Any]:
    """Any value of `schema` (fastavro's parsed form)."""
    if isinstance(schema, str):
        return PRIMITIVES[schema]
    if isinstance(schema, list):
        return st.one_of([values_of(branch) for branch in schema])
    kind = schema["type"]
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: values_of(f["type"]) for f in schema["fields"]})
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(values_of(schema["items"]), max_size=4)
    return PRIMITIVES[kind]


def fastavro_read(schema: Any, body: bytes) -> Any:
    buf = io.BytesIO(body)
    record = fastavro.schemaless_reader(buf, schema, None)
    if buf.tell() != len(body):
        raise ValueError("trailing bytes")
    return record


def compiled_read(name: str, body: bytes) -> Any:
    read = STORE.reader(name)
    assert read is not None
    record, end = read(body, 0)
    if end != len(body):
        raise ValueError("trailing bytes")
    return record


@pytest.mark.parametrize("name", NAMES)
def test_every_schema_of_the_contract_has_a_compiled_reader(name):
    assert STORE.reader(name) is not None


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_a_body_reads_as_fastavro_reads_it(name, data):
    schema = STORE.parsed(name)
    record = data.draw(values_of(schema))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    body = buf.getvalue()
    assert compiled_read(name, body) == fastavro_read(schema, body)


@pytest.mark.parametrize("name", ["ConversionTriggered", "MetaConnection"])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_corrupt_body_is_refused_or_read_as_fastavro_reads_it(name, data):
    schema = STORE.parsed(name)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, data.draw(values_of(schema)))
    body = bytearray(buf.getvalue())
    cut = data.draw(st.integers(0, len(body)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3))
    for position, byte in flips:
        if body:
            body[position % len(body)] = byte
    corrupt = bytes(body[:cut] if data.draw(st.booleans()) else body)
    try:
        ours = compiled_read(name, corrupt)
    except (ValueError, IndexError, UnicodeDecodeError):
        return  # refused: at least as strict as fastavro
    assert ours == fastavro_read(schema, corrupt)


def test_a_schema_with_a_type_not_handled_stays_with_fastavro():
    schema = fastavro.parse_schema(
        {"type": "record", "name": "R", "fields": [{"name": "x", "type": "double"}]}
    )
    assert compile_reader(schema) is None


def test_the_codec_reads_with_the_compiled_reader_and_refuses_what_it_refuses():
    codec = AvroCodec(STORE)
    record = {
        "contact_id": "c-1",
        "channel": "WHATSAPP",
        "channel_account_id": "waba-1",
        "ctwa_clid": None,
        "ad_id": "ad-1",
        "source_url": None,
        "referred_at": 1,
    }
    data = codec.encode("AdReferral", record, "t")
    assert codec.decode(data, "AdReferral") == record
    with pytest.raises(DecodeError, match="corrupt Avro body"):
        codec.decode(data[:-3], "AdReferral")
    with pytest.raises(DecodeError, match="trailing bytes"):
        codec.decode(data + b"\x00", "AdReferral")


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_a_typed_reader_builds_the_trigger_the_dict_builds(data):
    schema = STORE.parsed("ConversionTriggered")
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, data.draw(values_of(schema)))
    body = buf.getvalue()
    read = compile_reader(schema, TRIGGER_AVRO_TYPES)
    assert read is not None
    trigger, end = read(body, 0)
    assert end == len(body)
    assert trigger == Trigger.from_avro(fastavro_read(schema, body))
    assert type(trigger.channel) is Channel  # a member, not the symbol's text


def test_a_class_whose_fields_are_not_the_schemas_is_refused_when_the_reader_is_made():
    @dataclass
    class Swapped:
        channel_account_id: str
        contact_id: str
        channel: str
        ctwa_clid: str | None
        ad_id: str | None
        source_url: str | None
        referred_at: int

    with pytest.raises(ValueError, match=r"not io\.capiconsumer\.AdReferral's, in order"):
        compile_reader(STORE.parsed("AdReferral"), {"io.capiconsumer.AdReferral": Swapped})


def test_a_long_past_64_bits_is_refused_where_fastavro_would_wrap_it_round():
    schema = fastavro.parse_schema(
        {"type": "record", "name": "Long", "fields": [{"name": "n", "type": "long"}]}
    )
    read = compile_reader(schema)
    assert read is not None
    widest = b"\xff" * 9 + b"\x01"  # 64 bits set: the last long there is
    assert read(widest, 0) == (fastavro_read(schema, widest), 10)
    with pytest.raises(ValueError, match="64 bits"):
        read(b"\x80" * 9 + b"\x02", 0)  # 2 ** 64: found by the property test above
