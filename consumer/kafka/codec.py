"""Avro decoding and encoding in the two framings of docs/contract.md.

- Confluent framing: magic byte 0, a 4-byte big-endian schema id, the body. Used with a
  Schema Registry (`CAPI_SCHEMA_REGISTRY_URL`).
- Single-object encoding: bytes C3 01, the 8-byte little-endian CRC-64-AVRO fingerprint of the
  writer schema, the body. Writer schemas are resolved from `schemas/` (and `schemas/history/`
  for older versions still in flight).

Readers accept both framings whatever the configuration.
"""

from __future__ import annotations

import copy
import io
import json
import site
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import fastavro
import fastavro.schema

from consumer.errors import DecodeError, SchemaUnavailableError
from consumer.kafka.avro_reader import BodyReader, compile_reader

__all__ = [
    "DEFAULT_SCHEMA_DIR",
    "AvroCodec",
    "RegistryClient",
    "SchemaStore",
]

T = TypeVar("T")


def _schema_dir() -> Path:
    """`schemas/` of the source tree, else the copy an installed wheel carries (in the
    environment's `share/`, or the user's for `pip install --user`)."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "schemas").is_dir():
        return root / "schemas"
    for prefix in (sys.prefix, site.getuserbase()):
        installed = Path(prefix) / "share" / "capi-consumer" / "schemas"
        if installed.is_dir():
            return installed
    return Path(sys.prefix) / "share" / "capi-consumer" / "schemas"


DEFAULT_SCHEMA_DIR = _schema_dir()

_SINGLE_OBJECT_MAGIC = b"\xc3\x01"
_CONFLUENT_MAGIC = 0


class RegistryClient(Protocol):
    """The part of `confluent_kafka.schema_registry.SchemaRegistryClient` we use."""

    def get_schema(self, schema_id: int) -> Any: ...

    def register_schema(self, subject_name: str, schema: Any) -> int: ...

    def lookup_schema(self, subject_name: str, schema: Any) -> Any: ...


def _strip_logical_types(schema: Any) -> Any:
    """The schema without `logicalType`s, so timestamps stay plain epoch-millis ints.

    The Parsing Canonical Form ignores logical types, so fingerprints are unchanged.
    """
    if isinstance(schema, dict):
        return {k: _strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_strip_logical_types(v) for v in schema]
    return schema


def _parse(schema_json: Any) -> Any:
    return fastavro.parse_schema(_strip_logical_types(copy.deepcopy(schema_json)))


def _fingerprint(schema_json: Any) -> bytes:
    canonical = fastavro.schema.to_parsing_canonical_form(schema_json)
    # fastavro prints the CRC-64-AVRO value's bytes in little-endian order, as the spec frames it.
    return bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))


class SchemaStore:
    """The contract's schemas, by record name and by fingerprint."""

    def __init__(self, directory: Path = DEFAULT_SCHEMA_DIR) -> None:
        self._texts: dict[str, str] = {}
        self._parsed: dict[str, Any] = {}
        self._fingerprints: dict[str, bytes] = {}
        self._single_object_headers: dict[str, bytes] = {}
        self._readers: dict[str, BodyReader | None] = {}
        self._by_fingerprint: dict[bytes, tuple[str, Any]] = {}
        paths = sorted(directory.glob("*.avsc")) + sorted(directory.glob("history/*.avsc"))
        if not paths:
            raise FileNotFoundError(f"no Avro schemas in {directory}")
        for path in paths:
            text = path.read_text(encoding="utf-8")
            schema_json = json.loads(text)
            name = schema_json["name"]
            parsed = _parse(schema_json)
            fingerprint = _fingerprint(schema_json)
            self._by_fingerprint[fingerprint] = (name, parsed)
            if path.parent == directory:
                self._texts[name] = text
                self._parsed[name] = parsed
                self._fingerprints[name] = fingerprint
                self._single_object_headers[name] = _SINGLE_OBJECT_MAGIC + fingerprint
                self._readers[name] = compile_reader(parsed)

    def parsed(self, name: str) -> Any:
        return self._parsed[name]

    def text(self, name: str) -> str:
        return self._texts[name]

    def fingerprint(self, name: str) -> bytes:
        return self._fingerprints[name]

    def single_object_header(self, name: str) -> bytes:
        """The framing of a single-object body of the current schema `name`."""
        return self._single_object_headers[name]

    def reader(self, name: str) -> BodyReader | None:
        """The compiled reader of bodies written with the current schema `name`, if any
        (`avro_reader`)."""
        return self._readers[name]

    def by_fingerprint(self, fingerprint: bytes) -> tuple[str, Any] | None:
        return self._by_fingerprint.get(fingerprint)


class AvroCodec:
    """Encodes records for one of the contract's schemas and decodes either framing.

    Without a registry, writes single-object encoding; with one, Confluent framing under the
    subject `<topic>-value`, the schema looked up there (registered when `auto_register`).
    `registry_problem` says why the registry did not answer last, until it answers again.
    Thread-safe.
    """

    def __init__(
        self,
        store: SchemaStore,
        registry: RegistryClient | None = None,
        *,
        auto_register: bool = False,
    ) -> None:
        self._store = store
        self._registry = registry
        self._auto_register = auto_register
        self.registry_problem: str | None = None
        # a registry id's writer schema, parsed, and its fingerprint
        self._registry_writers: dict[int, tuple[Any, bytes]] = {}
        self._registered_ids: dict[tuple[str, str], int] = {}
        self._headers: dict[tuple[str, str], bytes] = {}  # (name, topic) -> framing bytes
        # name -> the Confluent framings (magic byte and id) seen to frame the current schema
        # `name`: their bodies go straight to its compiled reader
        self._current_ids: dict[str, set[bytes]] = {}
        self._lock = threading.Lock()

    def decode(self, data: bytes | None, name: str) -> dict[str, Any]:
        """The record in `data`, read with the reader schema `name`."""
        record: dict[str, Any] = self._decode(data, name, self._store.reader(name), None)
        return record

    def typed_decoder(
        self, name: str, types: Mapping[str, Any], from_dict: Callable[[dict[str, Any]], T]
    ) -> Callable[[bytes | None], T]:
        """A decoder of `name` straight into typed records: a body of the current schema by a
        reader that builds them as it reads (`types`, as `compile_reader` takes them), any
        other body by fastavro, then `from_dict` (its KeyError, ValueError or TypeError is a
        `DecodeError`)."""
        read = compile_reader(self._store.parsed(name), types)

        def decode(data: bytes | None) -> T:
            typed: T = self._decode(data, name, read, from_dict)
            return typed

        return decode

    def _decode(
        self,
        data: bytes | None,
        name: str,
        compiled: BodyReader | None,
        from_dict: Callable[[dict[str, Any]], Any] | None,
    ) -> Any:
        """The record in `data`, read with the reader schema `name`: by `compiled` when it was
        written with that schema, else by fastavro (given to `from_dict`, if any)."""
        if not data:
            raise DecodeError("empty message value")
        if compiled is not None:
            # the usual message, a body of the current schema, is known by its first bytes
            if data[:10] == self._store.single_object_header(name):
                return self._read_compiled(data, 10, compiled)
            if data[:5] in self._current_ids.get(name, ()):
                return self._read_compiled(data, 5, compiled)
        reader = self._store.parsed(name)
        if data[:2] == _SINGLE_OBJECT_MAGIC:
            if len(data) < 10:
                raise DecodeError("truncated single-object header")
            found = self._store.by_fingerprint(bytes(data[2:10]))
            if found is None:
                raise DecodeError(
                    f"unknown writer schema fingerprint {data[2:10].hex()} (single-object)"
                )
            writer_name, writer = found
            if writer_name != name:
                raise DecodeError(f"message is a {writer_name}, expected a {name}")
            return _built(self._read(data, 10, writer, reader), from_dict)
        if data[0] == _CONFLUENT_MAGIC and len(data) >= 5:
            writer, fingerprint = self._registry_writer(int.from_bytes(data[1:5], "big"))
            # the registry's copy of the current schema: the same bytes, the compiled reader,
            # and the id is known by its framing from now on
            if compiled is not None and fingerprint == self._store.fingerprint(name):
                self._current_ids.setdefault(name, set()).add(bytes(data[:5]))
                return self._read_compiled(data, 5, compiled)
            return _built(self._read(data, 5, writer, reader), from_dict)
        raise DecodeError(f"unknown framing (first byte 0x{data[0]:02x})")

    def encode(self, name: str, record: dict[str, Any], topic: str) -> bytes:
        """`record` as bytes in this codec's framing."""
        buf = io.BytesIO()
        buf.write(self.header(name, topic))
        fastavro.schemaless_writer(buf, self._store.parsed(name), record)
        return buf.getvalue()

    def header(self, name: str, topic: str) -> bytes:
        """The bytes before the Avro body of a record of `name` for `topic`: this codec's
        framing (a body written by other means follows them); made once, asked per record."""
        key = (name, topic)
        header = self._headers.get(key)
        if header is None:
            if self._registry is None:
                header = self._store.single_object_header(name)
            else:
                schema_id = self.schema_id(name, topic)  # raises while the registry is away
                header = bytes([_CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big")
            self._headers[key] = header
        return header

    def _read_compiled(self, data: bytes, offset: int, read: BodyReader) -> Any:
        """A body written with the current schema, by its compiled reader."""
        try:
            record, end = read(bytes(data), offset)
        except Exception as exc:  # the reader raises as fastavro does on corrupt bytes
            raise DecodeError(f"corrupt Avro body: {type(exc).__name__}") from exc
        if end != len(data):
            raise DecodeError(f"{len(data) - end} trailing bytes after the Avro body")
        return record

    def _read(self, data: bytes, offset: int, writer: Any, reader: Any) -> dict[str, Any]:
        buf = io.BytesIO(data)
        buf.seek(offset)
        try:
            if writer is reader:
                record = fastavro.schemaless_reader(buf, writer, None)
            else:
                record = fastavro.schemaless_reader(buf, writer, reader)
        except Exception as exc:  # fastavro raises many types on corrupt bytes
            raise DecodeError(f"corrupt Avro body: {type(exc).__name__}") from exc
        if buf.tell() != len(data):
            raise DecodeError(f"{len(data) - buf.tell()} trailing bytes after the Avro body")
        if not isinstance(record, dict):
            raise DecodeError("Avro body is not a record")
        return record

    def _registry_writer(self, schema_id: int) -> tuple[Any, bytes]:
        """The writer schema of a registry id, parsed, and its fingerprint."""
        with self._lock:
            cached = self._registry_writers.get(schema_id)
        if cached is not None:
            return cached
        if self._registry is None:
            raise DecodeError(
                f"Confluent-framed message (schema id {schema_id}) but no "
                "CAPI_SCHEMA_REGISTRY_URL is configured"
            )
        try:
            schema = self._registry.get_schema(schema_id)
        except Exception as exc:  # registry client errors vary; the message says which id
            if _client_error(exc):
                raise DecodeError(f"schema id {schema_id} not in the registry: {exc}") from exc
            raise self._unavailable(f"schema id {schema_id}: registry error: {exc}") from exc
        self.registry_problem = None
        try:
            schema_json = json.loads(schema.schema_str)
            writer = _parse(schema_json)
            fingerprint = _fingerprint(schema_json)
        except Exception as exc:  # a registered schema fastavro cannot use
            raise DecodeError(f"schema id {schema_id} is not a usable Avro schema") from exc
        with self._lock:
            self._registry_writers[schema_id] = (writer, fingerprint)
        return writer, fingerprint

    def schema_id(self, name: str, topic: str) -> int:
        """The registry's id of schema `name` under `<topic>-value` (looked up once).

        Raises `SchemaUnavailableError` while the registry does not answer, `DecodeError` when
        it answers that the schema is not registered there.
        """
        key = (name, topic)
        with self._lock:
            cached = self._registered_ids.get(key)
        if cached is not None:
            return cached
        from confluent_kafka.schema_registry import Schema

        assert self._registry is not None, "no registry"
        subject, schema = f"{topic}-value", Schema(self._store.text(name), "AVRO")
        try:
            if self._auto_register:
                schema_id = int(self._registry.register_schema(subject, schema))
            else:
                schema_id = int(self._registry.lookup_schema(subject, schema).schema_id)
        except Exception as exc:  # registry client errors vary
            if _client_error(exc):
                raise DecodeError(
                    f"schema {name} is not registered under {subject} ({exc}); register it, or "
                    "set CAPI_SCHEMA_REGISTRY_AUTO_REGISTER=true"
                ) from exc
            raise self._unavailable(f"subject {subject}: registry error: {exc}") from exc
        self.registry_problem = None
        with self._lock:
            self._registered_ids[key] = schema_id
        return schema_id

    def _unavailable(self, problem: str) -> SchemaUnavailableError:
        self.registry_problem = problem
        return SchemaUnavailableError(problem)


# answers that say the registry cannot serve us now, not that the schema does not exist: the
# readers wait (and `/readyz` says why) instead of failing messages
_NOT_NOW = frozenset({401, 403, 408, 429})


def _built(record: dict[str, Any], from_dict: Callable[[dict[str, Any]], Any] | None) -> Any:
    """A record fastavro read, typed by `from_dict` (when given)."""
    if from_dict is None:
        return record
    try:
        return from_dict(record)
    except (KeyError, ValueError, TypeError) as exc:
        raise DecodeError(f"bad record: {exc!r}"[:200]) from exc


def _client_error(exc: Exception) -> bool:
    """The registry answered that what was asked for does not exist: not a passing condition."""
    status = getattr(exc, "http_status_code", None)
    return status is not None and 400 <= int(status) < 500 and int(status) not in _NOT_NOW
