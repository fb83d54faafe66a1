"""The hand-written result body is fastavro's, byte for byte, for any result; the events of one
Meta answer share its encoding, and a new answer is encoded anew."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import fastavro
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.errors import MetaErrorInfo
from consumer.events import result_avro
from consumer.events.records import Channel, EventType, ResultStatus, Trigger
from consumer.events.result_avro import FIELD_ORDER, ResultBodyWriter
from consumer.events.results import ConversionResult, MetaResponse, Reason, SourceRef
from consumer.events.signals import tally_of, tally_of_result
from consumer.kafka.codec import DEFAULT_SCHEMA_DIR, SchemaStore
from tests.factories import result_record, trigger_record

SCHEMA = SchemaStore().parsed("ConversionResult")

texts = st.text(max_size=40)  # any unicode, the empty string and multi-byte characters too
optional_texts = st.none() | texts
longs = st.integers(-(2**63), 2**63 - 1)
ints = st.integers(-(2**31), 2**31 - 1)

triggers = st.builds(
    lambda event_id, workspace, contact, dataset, channel, event_type, occurred, test_code: (
        Trigger.from_avro(
            trigger_record(
                event_id=event_id,
                workspace_id=workspace,
                contact_id=contact,
                dataset_id=dataset,
                channel=channel,
                event_type=event_type,
                occurred_at=occurred,
                test_event_code=test_code,
            )
        )
    ),
    texts,
    texts,
    texts,
    texts,
    st.sampled_from([c.value for c in Channel]),
    st.sampled_from([e.value for e in EventType]),
    longs,
    optional_texts,
)
responses = st.none() | st.builds(MetaResponse, ints, texts, st.lists(texts, max_size=3).map(tuple))
errors = st.none() | st.builds(
    MetaErrorInfo,
    ints,
    st.none() | ints,
    optional_texts,
    optional_texts,
    optional_texts,
    optional_texts,
)
results = st.builds(
    ConversionResult,
    source=st.builds(SourceRef, texts, ints, longs),
    status=st.sampled_from(list(ResultStatus)),
    processed_at=longs,
    reason=st.none() | st.sampled_from(list(Reason)),
    detail=optional_texts,
    trigger=st.none() | triggers,
    user_data_keys=st.lists(texts, max_size=12).map(tuple),
    meta_response=responses,
    meta_error=errors,
    attempts=ints,
)


def fastavro_body(result: ConversionResult) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, SCHEMA, result_record(result))
    return buf.getvalue()


@settings(max_examples=400, deadline=None)
@given(st.lists(results, min_size=1, max_size=4))
def test_a_result_body_is_fastavros_byte_for_byte(batch):
    writer = ResultBodyWriter()  # one writer for several results, as the checkpoint keeps it
    for result in batch:
        assert writer.body(result) == fastavro_body(result)


_LONG_LIVED_WRITER = ResultBodyWriter()  # kept across examples, as the checkpoint keeps its own


@settings(max_examples=400, deadline=None)
@given(results)
def test_a_writer_that_wrote_many_results_before_still_writes_fastavros_bytes(result):
    assert _LONG_LIVED_WRITER.body(result) == fastavro_body(result)


def test_a_writer_that_keeps_few_parts_forgets_them_and_writes_the_same_bytes(monkeypatch):
    monkeypatch.setattr(result_avro, "_KEPT", 2)
    writer = ResultBodyWriter()
    for n in range(12):
        trigger = Trigger.from_avro(
            trigger_record(workspace_id=f"ws-{n % 4}", dataset_id=f"ds-{n % 3}")
        )
        source = SourceRef(f"topic-{n % 2}", 0, n)
        # the results of one answer share a processed_at: three in a row here
        result = ConversionResult(source, ResultStatus.SENT, 1_000 + n // 3, trigger=trigger)
        assert writer.body(result) == fastavro_body(result)


def test_a_long_at_every_edge_of_its_tables_is_fastavros():
    # a long is written 14 bits at a time: each power of two around those steps, and the ends
    # of the range, on both sides of zero
    edges = {2**k + d for k in range(64) for d in (-1, 0, 1)} | {0, 2**63 - 1}
    for n in sorted(e for edge in edges for e in (edge, -edge) if -(2**63) <= e < 2**63):
        out = io.BytesIO()
        fastavro.schemaless_writer(out, "long", n)
        assert result_avro._long(n) == out.getvalue(), n


def test_the_fields_are_written_in_the_schemas_order():
    schema = json.loads((DEFAULT_SCHEMA_DIR / "ConversionResult.avsc").read_text())
    assert tuple(f["name"] for f in schema["fields"]) == FIELD_ORDER


def test_the_events_of_one_answer_share_it_and_the_next_answer_is_written_anew():
    trigger = Trigger.from_avro(trigger_record())
    first = MetaResponse(2, "trace-1", ())
    second = MetaResponse(2, "trace-2", ("a message",))
    writer = ResultBodyWriter()

    def result(offset: int, response: MetaResponse) -> ConversionResult:
        source = SourceRef("t", 0, offset)
        return ConversionResult(
            source, ResultStatus.SENT, 1, trigger=trigger, meta_response=response
        )

    for r in (result(1, first), result(2, first), result(3, second), result(4, first)):
        assert writer.body(r) == fastavro_body(r)


@settings(max_examples=200, deadline=None)
@given(results, st.integers(0, 2**42))  # processed by a clock of this era
def test_a_results_tally_is_the_tally_of_its_record(result, processed_at):
    result = replace(result, processed_at=processed_at)
    assert tally_of_result(result) == tally_of(result_record(result))
