"""JSON records checked against the contract's Avro schemas, with messages a person can act on.

`capi-consumer produce --json` takes records a person wrote: each value is checked against its
field's Avro type (a path and what was expected when it is not), timestamps may be epoch
milliseconds or ISO 8601, and the fields a person would leave out (an event id, a time) are
generated.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from consumer.kafka.codec import SchemaStore

__all__ = ["check_record"]

_PRIMITIVES: dict[str, tuple[tuple[type, ...], str]] = {
    "null": ((type(None),), "null"),
    "string": ((str,), "a string"),
    "int": ((int,), "an integer"),
    "long": ((int,), "an integer"),
    "boolean": ((bool,), "true or false"),
    "double": ((int, float), "a number"),
    "float": ((int, float), "a number"),
}
_INT_BOUNDS = {"int": 2**31, "long": 2**63}
_TIMESTAMPS = frozenset({"occurred_at", "updated_at", "referred_at"})  # epoch ms or ISO 8601


class _RecordError(Exception):
    """A value of a JSON record that its schema refuses."""


def _named(schema: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Named types (records, enums) of a parsed schema by full name: later uses refer to them."""
    if isinstance(schema, list):
        for branch in schema:
            _named(branch, out)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum"):
            out[schema["name"]] = schema
        for field in schema.get("fields", []):
            _named(field["type"], out)
        _named(schema.get("items"), out)
    return out


def _describe(schema: Any, named: Mapping[str, Any]) -> str:
    schema = named.get(schema, schema) if isinstance(schema, str) else schema
    if isinstance(schema, list):  # "a string or null"
        return " or ".join(_describe(b, named) for b in sorted(schema, key=lambda b: b == "null"))
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind == "enum":
        return "one of " + ", ".join(schema["symbols"])
    return {"record": "an object", "array": "a list"}.get(kind) or (
        _PRIMITIVES[kind][1] if kind in _PRIMITIVES else _describe(kind, named)
    )


def _check(value: Any, schema: Any, path: str, named: Mapping[str, Any]) -> Any:
    """`value` as the writer wants it (defaults filled in), or `_RecordError`."""
    schema = named.get(schema, schema) if isinstance(schema, str) else schema
    if isinstance(schema, list):
        for branch in schema:
            try:
                return _check(value, branch, path, named)
            except _RecordError:
                continue
    else:
        kind = schema if isinstance(schema, str) else schema["type"]
        if kind == "record" and isinstance(value, dict):
            return _check_record(value, schema, path, named)
        if kind == "array" and isinstance(value, list):
            return [_check(v, schema["items"], f"{path}[{i}]", named) for i, v in enumerate(value)]
        if kind == "enum" and isinstance(value, str):
            # typed by a person: any case, written back in the schema's
            symbol = next((s for s in schema["symbols"] if s.upper() == value.upper()), None)
            if symbol is not None:
                return symbol
        if isinstance(kind, dict | list):
            return _check(value, kind, path, named)
        types = _PRIMITIVES.get(kind, ((), ""))[0]
        if isinstance(value, types) and not (isinstance(value, bool) and bool not in types):
            bound = _INT_BOUNDS.get(kind)
            if bound is None or (isinstance(value, int) and -bound <= value < bound):
                return value
    shown = json.dumps(value, ensure_ascii=False)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise _RecordError(f"{path or 'the record'}: {shown} is not {_describe(schema, named)}")


def _check_record(value: dict[str, Any], schema: Any, path: str, named: Mapping[str, Any]) -> Any:
    prefix = f"{path}." if path else ""
    unknown = sorted(set(value) - {f["name"] for f in schema["fields"]})
    if unknown:
        raise _RecordError(f"{prefix}{unknown[0]}: unknown field")
    out = {}
    for field in schema["fields"]:
        name, sub = field["name"], f"{prefix}{field['name']}"
        if name not in value:
            if "default" not in field:
                raise _RecordError(f"{sub}: missing ({_describe(field['type'], named)})")
            out[name] = json.loads(json.dumps(field["default"]))  # a copy
            continue
        item = value[name]
        if name in _TIMESTAMPS and isinstance(item, str):
            item = _epoch_ms(item, sub)
        out[name] = _check(item, field["type"], sub, named)
    return out


def _epoch_ms(text: str, path: str) -> int:
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise _RecordError(f"{path}: {text!r} is neither epoch milliseconds nor ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _generated(name: str) -> dict[str, Callable[[], Any]]:
    """Fields a user may leave out although the schema requires them."""
    generated: dict[str, dict[str, Callable[[], Any]]] = {
        "ConversionTriggered": {
            "event_id": lambda: f"evt-{uuid.uuid4().hex[:16]}",
            "occurred_at": _now_ms,
            "customer_info": dict,
        },
        "Contact": {"updated_at": _now_ms},
        "MetaConnection": {"updated_at": _now_ms},
    }
    return generated.get(name, {})


def check_record(store: SchemaStore, name: str, record: Any) -> dict[str, Any]:
    """`record` (JSON) checked against schema `name`, defaults filled in; a `ValueError` with
    one line (the field, the value, what was expected) when it does not fit."""
    schema = store.parsed(name)
    if isinstance(record, dict):
        record = {**{k: make() for k, make in _generated(name).items()}, **record}
    try:
        result: dict[str, Any] = _check(record, schema, "", _named(schema, {}))
    except _RecordError as exc:
        raise ValueError(str(exc)) from None
    return result
