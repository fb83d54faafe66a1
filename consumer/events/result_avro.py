"""A `ConversionResult`'s Avro body, written field by field.

Avro's binary encoding of a record is its fields' encodings one after the other, in the
schema's order, with nothing around them: a long or an int is a zig-zag varint, a string its
byte length and its UTF-8 bytes, an enum its symbol's index, a union the index of its branch
and then the value, an array a block (item count, the items) ended by a zero count. fastavro's
writer walks the parsed schema again for every record; the one record this service writes per
input message has a fixed schema, so it is written here directly, in about a third of the time,
and the part all events of one Meta answer share (`meta_response`, `meta_error`) once per
answer. `tests/unit/events/test_result_avro.py` holds the bytes equal to fastavro's for
generated results and the field order to `schemas/ConversionResult.avsc`.
"""

from __future__ import annotations

from functools import lru_cache

from consumer.errors import MetaErrorInfo
from consumer.events.records import Channel, EventType, ResultStatus, Trigger
from consumer.events.results import ConversionResult, MetaResponse

__all__ = ["FIELD_ORDER", "ResultBodyWriter"]

# the fields in the order the schema lists them: the order they are written in
FIELD_ORDER = (
    "event_id",
    "workspace_id",
    "contact_id",
    "dataset_id",
    "channel",
    "event_name",
    "status",
    "reason",
    "detail",
    "test_event_code",
    "user_data_keys",
    "meta_response",
    "meta_error",
    "attempts",
    "source_topic",
    "source_partition",
    "source_offset",
    "triggered_at",
    "processed_at",
)


def _seven_bits_a_byte(z: int) -> bytes:
    """A zig-zag value's varint: 7 bits a byte, low bits first, the high bit set on every byte
    but the last."""
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


# a varint written 14 bits at a time from two tables (about 1.4 MB): whole for a zig-zag value
# below 2**14, and otherwise two bytes of 7 bits with their high bits set for each 14 bits
# below the top ones. Counts, lengths and partitions take one lookup; an offset or a time in
# milliseconds two to four, where a byte at a time took three to seven turns of a loop
_GROUP = 1 << 14
_WHOLE = tuple(_seven_bits_a_byte(z) for z in range(_GROUP))
_PAIRS = tuple(bytes(((z & 0x7F) | 0x80, (z >> 7) | 0x80)) for z in range(_GROUP))


def _long(n: int) -> bytes:
    """A long or an int: zig-zag, then a varint."""
    z = (n << 1) ^ (n >> 63)
    if z < _GROUP:
        return _WHOLE[z]
    parts = []
    while z >= _GROUP:
        parts.append(_PAIRS[z & 0x3FFF])
        z >>= 14
    parts.append(_WHOLE[z])
    return b"".join(parts)


_NULL = b"\x00"  # a union's first branch, null
_SOME = b"\x02"  # a union's second branch, followed by the value
_END = b"\x00"  # the end of an array's blocks (an empty array is only this)


def _string(value: str) -> bytes:
    data = value.encode("utf-8")
    return _long(len(data)) + data


def _optional_string(value: str | None) -> bytes:
    return _NULL if value is None else _SOME + _string(value)


def _optional_long(value: int | None) -> bytes:
    return _NULL if value is None else _SOME + _long(value)


def _strings(values: tuple[str, ...]) -> bytes:
    if not values:
        return _END
    return _long(len(values)) + b"".join(_string(v) for v in values) + _END


@lru_cache(maxsize=4096)
def _match_keys(keys: tuple[str, ...]) -> bytes:
    """`_strings` of a result's match keys, kept: they are a few of eleven names, and most
    results repeat a combination seen before."""
    return _strings(keys)


# enums by their symbol's index in the schema (`Channel` in a union with null first)
_CHANNEL = {
    Channel.WHATSAPP: _SOME + _long(0),
    Channel.MESSENGER: _SOME + _long(1),
    Channel.INSTAGRAM: _SOME + _long(2),
}
_STATUS = {
    ResultStatus.SENT: _long(0),
    ResultStatus.SKIPPED: _long(1),
    ResultStatus.FAILED: _long(2),
}
_NO_TRIGGER = _NULL * 6  # event_id .. event_name of a result without a decoded trigger
# the parts a writer keeps encoded, at most, of each kind
_KEPT = 4096


def _meta_response(response: MetaResponse | None) -> bytes:
    if response is None:
        return _NULL
    return (
        _SOME
        + _long(response.events_received)
        + _string(response.fbtrace_id)
        + _strings(response.messages)
    )


def _meta_error(error: MetaErrorInfo | None) -> bytes:
    if error is None:
        return _NULL
    return b"".join(
        (
            _SOME,
            _long(error.code),
            _optional_long(error.subcode),
            _optional_string(error.type),
            _optional_string(error.message),
            _optional_string(error.user_title),
            _optional_string(error.user_msg),
        )
    )


class ResultBodyWriter:
    """Writes results' Avro bodies; the events of one Meta answer share its encoding (the
    answer's objects are immutable: the same object is the same bytes), and so do the parts
    that many results repeat: a trigger's workspace, dataset, channel and event name (written
    around its contact id), a result's attempts with its input partition, and the time an answer
    was processed at. One per thread."""

    def __init__(self) -> None:
        self._answer: tuple[MetaResponse | None, MetaErrorInfo | None] = (None, None)
        self._answer_bytes = _NULL + _NULL
        # (workspace, dataset, channel, event type) -> the bytes before and after the contact id
        self._routes: dict[tuple[str, str, Channel, EventType], tuple[bytes, bytes]] = {}
        # (attempts, input topic, input partition) -> their bytes
        self._inputs: dict[tuple[int, str, int], bytes] = {}
        self._processed: tuple[int, bytes] = (0, _long(0))  # the last processed_at, encoded

    def body(self, result: ConversionResult) -> bytes:
        t = result.trigger
        if t is None:
            head = _NO_TRIGGER
            test_event_code = triggered_at = _NULL
        else:
            before_contact, after_contact = self._route(t)
            head = b"".join(
                (
                    _SOME,
                    _string(t.event_id),
                    before_contact,
                    _string(t.contact_id),
                    after_contact,
                )
            )
            test_event_code = _optional_string(t.test_event_code)
            triggered_at = _SOME + _long(t.occurred_at)
        reason = result.reason
        source = result.source
        return b"".join(
            (
                head,
                _STATUS[result.status],
                _NULL if reason is None else _SOME + _string(reason),
                _optional_string(result.detail),
                test_event_code,
                _match_keys(result.user_data_keys),
                self._answer_of(result),
                self._input(result.attempts, source.topic, source.partition),
                _long(source.offset),
                triggered_at,
                self._processed_at(result.processed_at),
            )
        )

    def _route(self, t: Trigger) -> tuple[bytes, bytes]:
        """`workspace_id` and the union branch of `contact_id` before it; the union branch of
        `dataset_id`, it, `channel` and `event_name` after it."""
        key = (t.workspace_id, t.dataset_id, t.channel, t.event_type)
        route = self._routes.get(key)
        if route is None:
            if len(self._routes) >= _KEPT:
                self._routes.clear()
            route = self._routes[key] = (
                _SOME + _string(t.workspace_id) + _SOME,
                b"".join(
                    (
                        _SOME,
                        _string(t.dataset_id),
                        _CHANNEL[t.channel],
                        _SOME,
                        _string(t.event_type.event_name),
                    )
                ),
            )
        return route

    def _input(self, attempts: int, topic: str, partition: int) -> bytes:
        """`attempts`, `source_topic` and `source_partition`."""
        key = (attempts, topic, partition)
        encoded = self._inputs.get(key)
        if encoded is None:
            if len(self._inputs) >= _KEPT:
                self._inputs.clear()
            encoded = self._inputs[key] = _long(attempts) + _string(topic) + _long(partition)
        return encoded

    def _processed_at(self, at_ms: int) -> bytes:
        """`_long(at_ms)`, kept while the results of one answer (processed together) follow."""
        last, encoded = self._processed
        if at_ms != last:
            encoded = _long(at_ms)
            self._processed = (at_ms, encoded)
        return encoded

    def _answer_of(self, result: ConversionResult) -> bytes:
        """`meta_response` and `meta_error`, encoded once for all events of one answer."""
        response, error = self._answer
        if result.meta_response is not response or result.meta_error is not error:
            self._answer = (result.meta_response, result.meta_error)
            self._answer_bytes = _meta_response(result.meta_response) + _meta_error(
                result.meta_error
            )
        return self._answer_bytes
