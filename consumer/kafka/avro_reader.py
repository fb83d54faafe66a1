"""Avro bodies read by functions made once per schema.

fastavro's reader walks the parsed schema again for every message (about 13 µs a trigger on
the bench machine). The contract's schemas use few types, so each is turned once into a chain
of small functions, one per field, which read the body in half that time. A schema with a type
not handled here (floats, maps, fixed, a named type referred to by name) gets no such reader and
stays with fastavro, as do bodies written with another schema than the one read with (schema
resolution).

A reader is at least as strict as fastavro: a truncated body, a union branch or enum index out
of range, a negative length or invalid UTF-8 raise (`ValueError`, `IndexError`,
`UnicodeDecodeError`; the codec turns them into `DecodeError`).
`tests/unit/kafka/test_avro_reader.py` holds the records equal to fastavro's for generated
bodies of every schema in `schemas/`, and holds that a corrupt body read here is either refused
or read as fastavro reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["BodyReader", "compile_reader"]

# reads a value at an offset of the body: the value and the offset after it
_Read = Callable[[bytes, int], tuple[Any, int]]
# reads a whole body from an offset: the record and the offset after it
BodyReader = Callable[[bytes, int], tuple[dict[str, Any], int]]


def _long(data: bytes, i: int) -> tuple[int, int]:
    """A zig-zag varint (int and long alike)."""
    byte = data[i]
    i += 1
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), i
    n = byte & 0x7F
    shift = 7
    while True:
        byte = data[i]
        i += 1
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
    return (n >> 1) ^ -(n & 1), i


def _length(data: bytes, i: int) -> tuple[int, int]:
    n, i = _long(data, i)
    if n < 0:
        raise ValueError("negative length")
    if i + n > len(data):
        raise IndexError("length past the end of the body")
    return n, i


def _bytes(data: bytes, i: int) -> tuple[bytes, int]:
    n, i = _length(data, i)
    return data[i : i + n], i + n


def _string(data: bytes, i: int) -> tuple[str, int]:
    n, i = _length(data, i)
    return data[i : i + n].decode("utf-8"), i + n


def _null(data: bytes, i: int) -> tuple[None, int]:
    return None, i


def _boolean(data: bytes, i: int) -> tuple[bool, int]:
    byte = data[i]
    if byte > 1:
        raise ValueError("boolean byte not 0 or 1")
    return byte == 1, i + 1


def _enum(symbols: list[str]) -> _Read:
    names = tuple(symbols)

    def read(data: bytes, i: int) -> tuple[str, int]:
        index, i = _long(data, i)
        if not 0 <= index < len(names):
            raise ValueError("enum index out of range")
        return names[index], i

    return read


def _union(branches: list[_Read]) -> _Read:
    if len(branches) == 2 and branches[0] is _null:  # ["null", X]: most of the contract
        some = branches[1]

        def optional(data: bytes, i: int) -> tuple[Any, int]:
            byte = data[i]
            if byte == 0:
                return None, i + 1
            if byte != 2:
                raise ValueError("union branch out of range")
            return some(data, i + 1)

        return optional
    options = tuple(branches)

    def read(data: bytes, i: int) -> tuple[Any, int]:
        index, i = _long(data, i)
        if not 0 <= index < len(options):
            raise ValueError("union branch out of range")
        return options[index](data, i)

    return read


def _array(item: _Read) -> _Read:
    def read(data: bytes, i: int) -> tuple[list[Any], int]:
        items: list[Any] = []
        while True:
            count, i = _long(data, i)
            if count == 0:
                return items, i
            if count < 0:  # a block that gives its size in bytes too
                count = -count
                _, i = _long(data, i)
            for _ in range(count):
                value, i = item(data, i)
                items.append(value)

    return read


def _record(fields: list[tuple[str, _Read]]) -> BodyReader:
    steps = tuple(fields)

    def read(data: bytes, i: int) -> tuple[dict[str, Any], int]:
        record: dict[str, Any] = {}
        for name, field in steps:
            record[name], i = field(data, i)
        return record, i

    return read


_PRIMITIVES: dict[str, _Read] = {
    "null": _null,
    "boolean": _boolean,
    "int": _long,
    "long": _long,
    "string": _string,
    "bytes": _bytes,
}


class _Unsupported(Exception):
    """The schema has a type these readers do not handle."""


def _compile(schema: Any) -> _Read:
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        raise _Unsupported(schema)  # a named type referred to by name
    if isinstance(schema, list):
        return _union([_compile(branch) for branch in schema])
    kind = schema.get("type")
    if kind == "record":
        return _record([(f["name"], _compile(f["type"])) for f in schema["fields"]])
    if kind == "enum":
        return _enum(schema["symbols"])
    if kind == "array":
        return _array(_compile(schema["items"]))
    if kind in _PRIMITIVES and "logicalType" not in schema:
        return _PRIMITIVES[kind]
    raise _Unsupported(kind)


def compile_reader(schema: Any) -> BodyReader | None:
    """A reader of bodies written with the record schema `schema` (fastavro's parsed form,
    logical types stripped), or None when it uses a type not handled here."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    try:
        return _compile(schema)
    except _Unsupported:
        return None
