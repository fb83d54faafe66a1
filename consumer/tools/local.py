"""The parts of the local walkthrough: from `make run` to `capi-consumer run` on a local broker.

`broker` runs the embedded Tansu broker on its own, `topics create` creates the service's
topics, `seed` loads the reference tables, `produce` writes triggers and `tail` reads results or
dead letters (README, "From the demo to a running service"; the commands are in `local_cli.py`).
Every operational failure is a `LocalError`: one line for the user, never a traceback. Clients
use short timeouts, so an unreachable broker is named within seconds.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)

from consumer.errors import CapiConsumerError
from consumer.kafka import clients
from consumer.kafka.clients import PARTITION_EOF
from consumer.kafka.codec import SchemaStore
from consumer.kafka.topics import create_topics as create_planned
from consumer.kafka.topics import topic_plan
from consumer.settings import Settings

__all__ = [
    "LocalError",
    "Tail",
    "check_record",
    "create_topics",
    "produce",
    "require_topics",
    "topic_partitions",
]

_TIMEOUT_S = 5.0  # a broker that has not answered by then is named as unreachable
_ALL_BROKERS_DOWN: int = KafkaError._ALL_BROKERS_DOWN  # noqa: SLF001


class LocalError(CapiConsumerError):
    """An operational failure of a local command, told as one line."""


def _config(settings: Settings, role: Literal["consumer", "producer", "admin"]) -> dict[str, Any]:
    return {**settings.kafka_config(role), "log_level": "0"}  # failures are told as one line


def topic_partitions(settings: Settings) -> dict[str, int]:
    """Partitions of every topic of the broker; a `BrokerUnavailableError` naming it when it
    does not answer within a few seconds."""
    return clients.topic_partitions(settings.kafka_config("admin"), _TIMEOUT_S)


def require_topics(settings: Settings, *names: str) -> dict[str, int]:
    """`topic_partitions`, with a `LocalError` when one of `names` does not exist."""
    existing = topic_partitions(settings)
    for name in names:
        if name not in existing:
            raise LocalError(
                f"topic {name} does not exist on {settings.bootstrap_servers} "
                "(capi-consumer topics create)"
            )
    return existing


def create_topics(settings: Settings, partitions: int) -> tuple[list[str], bool]:
    """Every topic of the service, one line each; False when one could not be made right."""
    t = settings.topics
    existing = topic_partitions(settings)
    at_least = max(partitions, existing.get(t.triggered, partitions))
    plan = topic_plan(t, partitions, results_partitions=at_least)
    missing = [spec for spec in plan if spec.name not in existing]
    failures = create_planned(_config(settings, "admin"), missing, timeout_s=10)
    lines, ok = [], True
    for spec in plan:
        name, kind = spec.name, ", compacted" if spec.compacted else ""
        failure = failures.get(name)
        if failure is not None:
            ok = False
            lines.append(f"{name:<28} failed   {failure}")
        elif name in existing:
            lines.append(f"{name:<28} exists   {_partitions(existing[name])}{kind}")
        else:
            lines.append(f"{name:<28} created  {_partitions(spec.partitions)}{kind}")
    for topic in (t.results, t.retry):
        if existing.get(topic, at_least) < existing.get(t.triggered, partitions):
            ok = False
            lines.append(
                f"{topic}: fewer partitions than {t.triggered}; the service needs at "
                "least as many (delete and create it again)"
            )
    return lines, ok


def _partitions(count: int) -> str:
    return f"{count} partition{'s' * (count != 1)}"


def produce(settings: Settings, messages: Sequence[tuple[str, bytes, bytes]]) -> None:
    """Produce (topic, key, value) messages and wait until the broker has them all."""
    producer = Producer(
        {
            **_config(settings, "producer"),
            "enable.idempotence": "true",
            "linger.ms": "20",
            "message.timeout.ms": "10000",
        }
    )
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err.str())

    for topic, key, value in messages:
        try:
            producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
        except BufferError:  # the local queue is full: let deliveries drain it
            producer.poll(1)
            producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
        producer.poll(0)
    left = producer.flush(15)
    if left or errors:
        reason = errors[0] if errors else "no answer"
        raise LocalError(
            f"broker {settings.bootstrap_servers}: {left + len(errors)} of "
            f"{len(messages)} messages not delivered ({reason})"
        )


# ---- JSON records checked against the contract's Avro schemas, with friendly messages ----

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
        if kind == "enum" and value in schema["symbols"]:
            return value
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


class Tail:
    """A topic read from the beginning with `read_committed`, as the service's readers must."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self._settings = settings
        partitions = require_topics(settings, topic)[topic]
        self._consumer = Consumer(
            {
                **_config(settings, "consumer"),
                "group.id": f"capi-tail-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": "false",
                "isolation.level": "read_committed",
                "enable.partition.eof": "true",
            }
        )
        self._consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )
        self._partitions = partitions

    def messages(
        self, *, follow: bool, stopped: Callable[[], bool], idle_s: float = 5.0
    ) -> Iterator[Message]:
        """What the topic holds; then, with `follow`, what comes until `stopped()`. Without it,
        ends when every partition is read to its end (or nothing came for `idle_s`)."""
        at_end: set[int] = set()
        last = time.monotonic()
        while not stopped():
            if not follow and (len(at_end) == self._partitions or time.monotonic() - last > idle_s):
                return
            for msg in self._consumer.consume(num_messages=500, timeout=0.5):
                err = msg.error()
                if err is None:
                    last = time.monotonic()
                    at_end.discard(msg.partition() or 0)
                    yield msg
                elif err.code() == PARTITION_EOF:
                    at_end.add(msg.partition() or 0)
                elif err.fatal() or err.code() == _ALL_BROKERS_DOWN:
                    raise LocalError(f"broker {self._settings.bootstrap_servers}: {err.str()}")

    def close(self) -> None:
        self._consumer.close()
