"""Avro bodies read by a function written once per schema.

fastavro's reader walks the parsed schema again for every message (about 14 µs a trigger on the
bench machine). The contract's schemas use few types, so each record schema is turned once into
the Python source of one function that reads its fields in order, straight-line: a short
string's length and an optional field's branch are read inline, with no call per field. That
reads a trigger in about a fifth of fastavro's time. A schema with a type not handled here
(floats, maps, fixed, a named type referred to by name) gets no such reader and stays with
fastavro, as do bodies written with another schema than the one read with (schema resolution).

A reader can also build typed records as it reads: given classes by record name, it calls a
record's class with its fields in order (no dict in between), and given enums by enum name, it
reads a symbol as the enum's member.

A reader is at least as strict as fastavro: a truncated body, a union branch or enum index out
of range, a negative length or invalid UTF-8 raise (`ValueError`, `IndexError`,
`UnicodeDecodeError`; the codec turns them into `DecodeError`).
`tests/unit/kafka/test_avro_reader.py` holds the records equal to fastavro's for generated
bodies of every schema in `schemas/`, and holds that a corrupt body read here is either refused
or read as fastavro reads it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["BodyReader", "compile_reader"]

# reads a whole body from an offset: the record (a dict, or a typed record) and the offset after it
BodyReader = Callable[[bytes, int], tuple[Any, int]]


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
    if n >> 64:
        raise ValueError("varint past 64 bits")  # fastavro would wrap it round: not a long
    return (n >> 1) ^ -(n & 1), i


def _length(data: bytes, i: int) -> tuple[int, int]:
    """The length of a string or bytes; the body must hold that many bytes after it."""
    n, i = _long(data, i)
    if n < 0:
        raise ValueError("negative length")
    if i + n > len(data):
        raise IndexError("length past the end of the body")
    return n, i


def _boolean(data: bytes, i: int) -> tuple[bool, int]:
    byte = data[i]
    if byte > 1:
        raise ValueError("boolean byte not 0 or 1")
    return byte == 1, i + 1


class _Unsupported(Exception):
    """The schema has a type these readers do not handle."""


class _ReaderSource:
    """The source of one reader: lines, fresh local names, and the constants it refers to."""

    def __init__(self, types: Mapping[str, Any]) -> None:
        self.types = types
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self._names = 0

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def local(self, hint: str) -> str:
        self._names += 1
        return f"{hint}_{self._names}"

    def constant(self, value: Any) -> str:
        name = f"K{len(self.constants)}"
        self.constants[name] = value
        return name

    def value(self, schema: Any, target: str, depth: int) -> None:
        """Lines that read a value of `schema` at `i` into `target`, and move `i` past it."""
        if isinstance(schema, list):
            self._union(schema, target, depth)
            return
        kind = schema if isinstance(schema, str) else schema.get("type")
        if isinstance(schema, dict) and kind in _PRIMITIVE_KINDS and "logicalType" in schema:
            raise _Unsupported(kind)
        if kind == "null":
            self.line(depth, f"{target} = None")
        elif kind in ("int", "long"):
            self._long(target, depth)
        elif kind == "string":
            self._sized(target, depth, ".decode()")  # UTF-8, strict: the default
        elif kind == "bytes":
            self._sized(target, depth, "")
        elif kind == "boolean":
            self.line(depth, f"{target}, i = _boolean(data, i)")
        elif kind == "enum" and isinstance(schema, dict):
            self._enum(schema, target, depth)
        elif kind == "array" and isinstance(schema, dict):
            self._array(schema["items"], target, depth)
        elif kind == "record" and isinstance(schema, dict):
            self.record(schema, target, depth)
        else:
            raise _Unsupported(kind)  # another type, or a named type referred to by name

    def record(self, schema: dict[str, Any], target: str, depth: int) -> None:
        fields = [(f["name"], self.local("f")) for f in schema["fields"]]
        for (_, local), field in zip(fields, schema["fields"], strict=True):
            self.value(field["type"], local, depth)
        cls = self.types.get(schema["name"])
        if cls is None:
            pairs = ", ".join(f"{name!r}: {local}" for name, local in fields)
            self.line(depth, f"{target} = {{{pairs}}}")
            return
        if [f.name for f in dataclasses.fields(cls)] != [name for name, _ in fields]:
            raise ValueError(f"{cls.__name__}'s fields are not {schema['name']}'s, in order")
        arguments = ", ".join(local for _, local in fields)
        self.line(depth, f"{target} = {self.constant(cls)}({arguments})")

    def _long(self, target: str, depth: int) -> None:
        self.line(depth, "b = data[i]")
        self.line(depth, "if b < 0x80:")
        self.line(depth + 1, f"{target} = (b >> 1) ^ -(b & 1)")
        self.line(depth + 1, "i += 1")
        self.line(depth, "else:")
        self.line(depth + 1, f"{target}, i = _long(data, i)")

    def _sized(self, target: str, depth: int, decode: str) -> None:
        # a one-byte length that is not negative (most strings are shorter than 64 bytes)
        self.line(depth, "b = data[i]")
        self.line(depth, "if b < 0x80 and not b & 1:")
        self.line(depth + 1, "j = i + 1 + (b >> 1)")
        self.line(depth + 1, "if j > end:")
        self.line(depth + 2, "raise IndexError('length past the end of the body')")
        self.line(depth + 1, f"{target} = data[i + 1 : j]{decode}")
        self.line(depth, "else:")
        self.line(depth + 1, "n, i = _length(data, i)")
        self.line(depth + 1, "j = i + n")
        self.line(depth + 1, f"{target} = data[i:j]{decode}")
        self.line(depth, "i = j")

    def _enum(self, schema: dict[str, Any], target: str, depth: int) -> None:
        symbols = schema["symbols"]
        enum = self.types.get(schema["name"])
        names = self.constant(tuple(symbols) if enum is None else tuple(map(enum, symbols)))
        index = self.local("k")
        self._long(index, depth)
        self.line(depth, f"if not 0 <= {index} < {len(symbols)}:")
        self.line(depth + 1, "raise ValueError('enum index out of range')")
        self.line(depth, f"{target} = {names}[{index}]")

    def _union(self, branches: list[Any], target: str, depth: int) -> None:
        if len(branches) == 2 and branches[0] == "null":  # ["null", X]: most of the contract
            self.line(depth, "b = data[i]")
            self.line(depth, "if b == 0:")
            self.line(depth + 1, f"{target} = None")
            self.line(depth + 1, "i += 1")
            self.line(depth, "elif b == 2:")
            self.line(depth + 1, "i += 1")
            self.value(branches[1], target, depth + 1)
            self.line(depth, "else:")
            self.line(depth + 1, "raise ValueError('union branch out of range')")
            return
        index = self.local("k")
        self._long(index, depth)
        for n, branch in enumerate(branches):
            self.line(depth, f"{'if' if n == 0 else 'elif'} {index} == {n}:")
            self.value(branch, target, depth + 1)
        self.line(depth, "else:")
        self.line(depth + 1, "raise ValueError('union branch out of range')")

    def _array(self, items: Any, target: str, depth: int) -> None:
        count, item = self.local("count"), self.local("item")
        self.line(depth, f"{target} = []")
        self.line(depth, "while True:")
        self.line(depth + 1, f"{count}, i = _long(data, i)")
        self.line(depth + 1, f"if {count} == 0:")
        self.line(depth + 2, "break")
        self.line(depth + 1, f"if {count} < 0:  # a block that gives its size in bytes too")
        self.line(depth + 2, f"{count} = -{count}")
        self.line(depth + 2, "_, i = _long(data, i)")
        self.line(depth + 1, f"for _ in range({count}):")
        self.value(items, item, depth + 2)
        self.line(depth + 2, f"{target}.append({item})")


_PRIMITIVE_KINDS = {"null", "boolean", "int", "long", "string", "bytes"}


def _reader_source(schema: Any, types: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The source of the reader of record schema `schema`, and the constants it refers to
    (`_Unsupported` for a type not handled here)."""
    source = _ReaderSource(types)
    source.line(1, "end = len(data)")
    source.record(schema, "record", 1)
    source.line(1, "return record, i")
    return "def read(data, i):\n" + "\n".join(source.lines) + "\n", source.constants


def compile_reader(schema: Any, types: Mapping[str, Any] | None = None) -> BodyReader | None:
    """A reader of bodies written with the record schema `schema` (fastavro's parsed form,
    logical types stripped), or None when it uses a type not handled here.

    `types`, by full name: a record's dataclass, built with the record's fields in order (its
    fields must be the schema's: `ValueError` otherwise), or an enum, whose members stand for
    the symbols. Records and enums not named are dicts and symbols."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    try:
        source, constants = _reader_source(schema, types or {})
    except _Unsupported:
        return None
    namespace: dict[str, Any] = {"_long": _long, "_length": _length, "_boolean": _boolean}
    namespace.update(constants)
    # the source is this module's own lines; the schema adds only field names, as repr()
    # literals, and its symbols as constants outside the source
    code = compile(source, f"<avro reader of {schema.get('name')}>", "exec")
    exec(code, namespace)  # noqa: S102
    read: BodyReader = namespace["read"]
    return read
