"""The broker-facing steps of the local walkthrough: from `make run` to `capi-consumer run`.

`broker` runs the embedded Tansu broker on its own, `topics create` creates the service's
topics, `seed` loads the reference tables, `produce` writes triggers and `tail` reads results or
dead letters (README, "From the demo to a running service"; the commands are in `local_cli.py`).
Every operational failure is a `LocalError`: one line for the user, never a traceback. Clients
use short timeouts, so an unreachable broker is named within seconds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    Message,
    TopicPartition,
)

from consumer.errors import CapiConsumerError
from consumer.kafka import clients
from consumer.kafka.bulk import UndeliveredError, produce_all
from consumer.kafka.clients import ALL_BROKERS_DOWN, PARTITION_EOF
from consumer.kafka.topics import create_topics as create_planned
from consumer.kafka.topics import topic_plan
from consumer.settings import Settings

__all__ = [
    "LocalError",
    "Tail",
    "create_topics",
    "produce",
    "require_topics",
    "topic_partitions",
]

_TIMEOUT_S = 5.0  # a broker that has not answered by then is named as unreachable


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
    config = {**_config(settings, "producer"), "linger.ms": "20", "message.timeout.ms": "10000"}
    try:
        produce_all(config, ((topic, key, value, None) for topic, key, value in messages), 15)
    except UndeliveredError as exc:
        raise LocalError(f"broker {settings.bootstrap_servers}: {exc}") from exc


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
                elif err.fatal() or err.code() == ALL_BROKERS_DOWN:
                    raise LocalError(f"broker {self._settings.bootstrap_servers}: {err.str()}")

    def close(self) -> None:
        self._consumer.close()
