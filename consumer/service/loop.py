"""The service: poll, triage, send, checkpoint; one turn after another.

Threads: the main loop owns the Kafka clients, the state store and every piece of bookkeeping;
HTTP requests run on a small pool (`CAPI_MAX_IN_FLIGHT_REQUESTS`, see `meta/senders.py`).

Delivery: results and dead letters are produced in a Kafka transaction that also commits the
input offsets (`checkpoint.py`), every `CAPI_COMMIT_INTERVAL_MS`. An offset is committed only
once the result of every earlier message of its partition is in the same or an earlier
transaction. Results go to the partition numbered like their input's, so the results topic
doubles as the dedup changelog (`store/recovery.py`). A crash therefore loses nothing and
publishes nothing twice; what it can repeat is the sending of events that were in flight (sent,
their transaction not committed).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable

from consumer.errors import ConfigError
from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.meta.client import CapiClient
from consumer.ops.metrics import Metrics
from consumer.ops.monitor import Monitor
from consumer.ops.progress import ProgressLog
from consumer.service.startup import Parts, StoppedWhileStarting, open_parts
from consumer.service.triage import AlreadyResolved, Recover, Resolved, Rewind, Send, Unpark
from consumer.settings import Settings
from consumer.store.reference_tables import ReferenceTables

__all__ = ["Service", "build_service", "codec_for", "registry_config"]

log = logging.getLogger(__name__)

_CONSUME_BATCH = 500
# How long a poll waits for its first message, in milliseconds (it returns at once with the
# messages that came with it): short while messages flow, shorter while a request is out (its
# answer is collected at the next turn), longer only when the last poll found nothing.
_POLL_WAIT_IDLE_MS = 50
_POLL_WAIT_FLOWING_MS = 10
_POLL_WAIT_IN_FLIGHT_MS = 5


class Service:
    """One consumer instance. `run()` blocks until `stop()` or a fatal error."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        codec: AvroCodec,
        client: CapiClient,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.tables = ReferenceTables.for_topics(codec, settings.topics)
        self.ready = threading.Event()
        self.monitor = Monitor(
            self.metrics, settings.topics.triggered, self.ready, lambda: codec.registry_problem
        )
        self._codec = codec
        self._client = client
        self._clock_ms = clock_ms
        self._on_ready = on_ready
        self._stop = threading.Event()
        self.progress = ProgressLog(self.metrics)
        self._flowing = False  # the last poll returned messages

    def stop(self) -> None:
        """Finish in-flight work (up to `CAPI_DRAIN_TIMEOUT_S`), commit, return from run()."""
        self._stop.set()

    def run(self) -> None:
        with contextlib.ExitStack() as stack:
            try:
                parts = open_parts(
                    stack,
                    self.settings,
                    codec=self._codec,
                    client=self._client,
                    reference=self.tables,
                    metrics=self.metrics,
                    monitor=self.monitor,
                    clock_ms=self._clock_ms,
                    stopping=self._stop,
                )
            except StoppedWhileStarting:
                log.info("stopped before taking traffic")
                return
            log.info(
                "consuming topic=%s group=%s instance=%s",
                self.settings.topics.triggered,
                self.settings.group_id,
                self.settings.instance_id,
            )
            if self._on_ready is not None:
                self._on_ready()
            self.ready.set()
            while not self._stop.is_set():
                self.turn(parts)
            parts.rebalance.drain()
            log.info("closing: the consumer leaves its group, the producer and the state close")
        self.progress.stopped()

    def turn(self, p: Parts) -> None:
        """One turn of the loop: tables, room, flow, poll, triage, retries, send, commit."""
        self.monitor.turned()
        # 1. the reference tables take their updates
        p.tables.poll()
        self.monitor.tables(p.tables)
        # 1b. the local state: the dedup window kept, room on its volume watched
        p.space.turn()
        # 2. partitions pause or resume (dedup restore, backpressure, schema waits, room)
        p.flow.turn(len(p.checkpoint), p.checkpoint.bytes)
        # 3. poll, until a batch lingers out, a retry or a commit is due at the latest
        msgs = p.rebalance.consume(p.consumer, _CONSUME_BATCH, self._poll_wait(p))
        self._flowing = bool(msgs)
        # 4. triage: each message resolved now, sent, recovered, skipped or rewound
        for verdict in p.triage.batch(msgs):
            if isinstance(verdict, Send):
                p.checkpoint.consumed(verdict.item.source, len(verdict.item.received.value or b""))
                self._send(p, verdict)
            elif isinstance(verdict, Resolved):
                p.checkpoint.consumed(verdict.result.source)
                p.checkpoint.resolve(verdict.result, verdict.dead_letter)
            elif isinstance(verdict, Rewind):
                p.flow.rewind(verdict.source, verdict.schema_unavailable)
            elif isinstance(verdict, Recover):
                p.checkpoint.recover(verdict.source)
            elif isinstance(verdict, AlreadyResolved):
                p.checkpoint.already_resolved(verdict.source)
        # 4b. parked events that are due come back: sent again, or resolved now
        for due in p.retries.turn():
            if isinstance(due, Send):
                self._send(p, due)
            elif isinstance(due, Unpark):
                p.checkpoint.end_parking(due.parked)
            elif due.parked is not None:
                p.checkpoint.resolve_parked(due.result, due.dead_letter, due.parked)
        # 5. send: batches go out, Meta's answers come back
        p.answers.collect(backlog=len(msgs) == _CONSUME_BATCH)
        # 6. checkpoint: results with their offsets, when due
        p.checkpoint.turn()
        self.metrics.flush()
        self.progress.turn()

    def _poll_wait(self, p: Parts) -> float:
        """Seconds the next poll may wait for messages, in whole milliseconds rounded up:
        librdkafka cuts the wait down to whole milliseconds, so a poll waiting 3.7 ms for a
        batch or a commit would return before it was due, and the next poll would not wait."""
        if p.sender.in_flight_requests():
            wait_ms = _POLL_WAIT_IN_FLIGHT_MS
        else:
            wait_ms = _POLL_WAIT_FLOWING_MS if self._flowing else _POLL_WAIT_IDLE_MS
        for due in (p.sender.next_wakeup(), p.checkpoint.next_commit_in()):
            if due is not None:
                wait_ms = min(wait_ms, math.ceil(due * 1000))
        return wait_ms / 1000

    def _send(self, p: Parts, verdict: Send) -> None:
        self.metrics.shift(self.metrics.in_flight, 1)
        p.sender.add(verdict.key, verdict.item)


def build_service(
    settings: Settings,
    metrics: Metrics | None = None,
    on_ready: Callable[[], None] | None = None,
) -> Service:
    """A `Service` with production collaborators built from `settings` (no I/O yet)."""
    codec = codec_for(settings)
    client = CapiClient(
        settings.graph_url,
        settings.graph_api_version,
        timeout_s=settings.request_timeout_s,
        partner_agent=settings.partner_agent,
        max_connections=settings.max_in_flight_requests * 2,
        throttle_backoff_s=settings.throttle_backoff_s,
    )
    return Service(settings, metrics=metrics, codec=codec, client=client, on_ready=on_ready)


def codec_for(settings: Settings) -> AvroCodec:
    """Single-object encoding, or Confluent framing through CAPI_SCHEMA_REGISTRY_URL."""
    if not settings.schema_registry_url:
        return AvroCodec(SchemaStore())
    from confluent_kafka.schema_registry import SchemaRegistryClient

    registry = SchemaRegistryClient(registry_config(settings))
    return AvroCodec(SchemaStore(), registry, auto_register=settings.schema_registry_auto_register)


def registry_config(settings: Settings) -> dict[str, str]:
    """The Schema Registry client's settings: its URL, and basic authentication when the
    credentials folder holds `CAPI_SCHEMA_REGISTRY_CREDENTIALS` (`user:password`)."""
    config = {"url": settings.schema_registry_url or ""}
    auth = settings.credentials_dir / settings.schema_registry_credentials
    if auth.is_file():
        user_info = auth.read_text(encoding="utf-8").strip()
        if ":" not in user_info:
            raise ConfigError(
                "CAPI_SCHEMA_REGISTRY_CREDENTIALS", f"{auth.name} must hold user:password"
            )
        config["basic.auth.user.info"] = user_info
    return config
