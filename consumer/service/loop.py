"""The service: poll, triage, send, checkpoint; one turn after another.

Threads: the main loop owns the Kafka clients, the state store and every piece of bookkeeping;
HTTP requests run on a small pool (`CAPI_MAX_IN_FLIGHT_REQUESTS`, see `meta/senders.py`).

Delivery: results and dead letters are produced in a Kafka transaction that also commits the
input offsets (`checkpoint.py`), every `CAPI_COMMIT_INTERVAL_MS`. An offset is committed only
once the result of every earlier message of its partition is in the same or an earlier
transaction. Results go to the partition numbered like their input's, so the results topic
doubles as the dedup changelog (`store/dedup_restore.py`). A crash therefore loses nothing and
publishes nothing twice; what it can repeat is the sending of events that were in flight (sent,
their transaction not committed).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from confluent_kafka import Consumer

from consumer.events.policy import Rules
from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.kafka.publisher import Publisher
from consumer.meta.attempt import Dispatcher
from consumer.meta.batching import Batcher
from consumer.meta.client import CapiClient
from consumer.meta.credentials import CredentialStore
from consumer.meta.senders import Sender
from consumer.ops.metrics import Metrics
from consumer.ops.monitor import Monitor
from consumer.service.checkpoint import Checkpoint, Partition
from consumer.service.flow import FlowControl
from consumer.service.rebalance import Rebalance
from consumer.service.triage import AlreadyResolved, Recover, Resolved, Rewind, Send, Triage
from consumer.settings import Settings
from consumer.store.dedup import Dedup
from consumer.store.dedup_restore import DedupRestore
from consumer.store.outbox import Outbox
from consumer.store.reference_tables import ReferenceTables
from consumer.store.sqlite import StateStore
from consumer.store.table_reader import TableReader

__all__ = ["Service", "build_service"]

log = logging.getLogger(__name__)

_CONSUME_BATCH = 500


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
        self.monitor = Monitor(self.metrics, settings.topics.triggered, self.ready)
        self._codec = codec
        self._client = client
        self._clock_ms = clock_ms
        self._on_ready = on_ready
        self._stop = threading.Event()

    def stop(self) -> None:
        """Finish in-flight work (up to `CAPI_DRAIN_TIMEOUT_S`), commit, return from run()."""
        self._stop.set()

    def run(self) -> None:
        with contextlib.ExitStack() as stack:
            loop = self._open(stack)
            log.info("consuming topic=%s group=%s instance=%s", self.settings.topics.triggered,
                     self.settings.group_id, self.settings.instance_id)  # fmt: skip
            if self._on_ready is not None:
                self._on_ready()
            self.ready.set()
            while not self._stop.is_set():
                loop.turn()
            loop.rebalance.drain()

    def _open(self, stack: contextlib.ExitStack) -> _Loop:
        """Open the state, the tables, the clients; wire the loop. Closed by `stack`, in reverse."""
        s, metrics = self.settings, self.metrics
        rdkafka_log: dict[str, Any] = {"logger": logging.getLogger("librdkafka")}
        consumer_config = {**s.kafka_config("consumer"), **rdkafka_log}
        admin_config = {**s.kafka_config("admin"), **rdkafka_log}
        store = _closing(stack, StateStore(s.state_dir).open())
        tables = _closing(
            stack, TableReader(self.tables.all(), consumer_config, store, admin_config=admin_config)
        )
        took = tables.bootstrap()
        for table in self.tables.all():
            metrics.table_bootstrap_seconds.labels(table.name).set(took)
        self.monitor.tables(tables, self.tables.all(), counts=True)
        dedup = Dedup(store, s.topics.results)
        dedup.create_table()
        restore = DedupRestore(dedup, self._codec, consumer_config, admin_config)
        restore.open()
        stack.callback(_quietly, restore.close)
        dedup.purge()
        outbox = Outbox(store)
        outbox.open()
        publisher = Publisher(
            {**s.kafka_config("producer"), **rdkafka_log},
            f"capi-consumer-{s.group_id}-{s.instance_id}",
        )
        publisher.start()
        stack.callback(_quietly, publisher.close)
        owned: set[Partition] = set()
        consumer = _closing(
            stack, Consumer(_consumer_config(s, consumer_config, self.monitor, owned))
        )
        restricted_assets: set[str] = set()
        dispatcher = Dispatcher(self._client, metrics, retry_deadline_s=s.retry_deadline_s,
                                on_restricted=restricted_assets.add)  # fmt: skip
        sender = Sender(dispatcher, Batcher(s.batch_size, s.batch_linger_ms / 1000),
                        s.max_in_flight_requests)  # fmt: skip
        sender.start()
        stack.callback(_quietly, sender.close)
        encode_result = self._codec.encoder("ConversionResult", s.topics.results)
        checkpoint = Checkpoint(
            consumer=consumer, publisher=publisher, outbox=outbox, dedup=dedup, owned=owned,
            topics=s.topics, encode_result=encode_result,
            metrics=metrics, monitor=self.monitor, commit_interval_s=s.commit_interval_ms / 1000,
            clock_ms=self._clock_ms,
        )  # fmt: skip
        flow = FlowControl(consumer=consumer, restore=restore, owned=owned,
                           max_pending=s.max_pending_events, metrics=metrics)  # fmt: skip
        rebalance = Rebalance(
            owned=owned, checkpoint=checkpoint, flow=flow, sender=sender, dedup=dedup,
            restore=restore, outbox=outbox, topics=s.topics, drain_timeout_s=s.drain_timeout_s,
            metrics=metrics,
        )  # fmt: skip
        stack.callback(metrics.flush)
        stack.callback(rebalance.closing)
        triage = Triage(
            codec=self._codec, dedup=dedup, restore=restore, outbox=outbox, tables=self.tables,
            credentials=CredentialStore(s.credentials_dir), rules=_rules(s),
            restricted_assets=restricted_assets, attribution_window_s=s.attribution_window_s,
            metrics=metrics, clock_ms=self._clock_ms,
        )  # fmt: skip
        consumer.subscribe([s.topics.triggered], on_assign=rebalance.on_assign,
                           on_revoke=rebalance.on_revoke, on_lost=rebalance.on_lost)  # fmt: skip
        return _Loop(consumer, tables, self.tables, triage, sender, checkpoint, flow, rebalance,
                     metrics, self.monitor)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Loop:
    """One turn: poll, triage, send, checkpoint."""

    consumer: Consumer
    tables: TableReader
    reference: ReferenceTables
    triage: Triage
    sender: Sender
    checkpoint: Checkpoint
    flow: FlowControl
    rebalance: Rebalance
    metrics: Metrics
    monitor: Monitor

    def turn(self) -> None:
        self.monitor.turned()
        # 1. the reference tables take their updates
        self.tables.poll()
        self.monitor.tables(self.tables, self.reference.all())
        # 2. partitions pause or resume (dedup restore, backpressure, schema waits)
        self.flow.turn(len(self.checkpoint))
        # 3. poll: answers come back from the sender threads, so look often while any is out
        wait = self.sender.next_wakeup()
        idle = 0.005 if self.sender.in_flight_requests() else 0.05
        msgs = self.consumer.consume(
            num_messages=_CONSUME_BATCH, timeout=idle if wait is None else min(idle, wait)
        )
        # 4. triage: each message resolved now, sent, recovered, skipped or rewound
        for verdict in self.triage.batch(msgs):
            if isinstance(verdict, Send):
                self.checkpoint.consumed(verdict.item.source)
                self.metrics.in_flight.inc()
                self.sender.add(verdict.key, verdict.item)
            elif isinstance(verdict, Resolved):
                self.checkpoint.consumed(verdict.result.source)
                self.checkpoint.resolve(verdict.result, verdict.dead_letter)
            elif isinstance(verdict, Rewind):
                self.flow.rewind(verdict.source, verdict.schema_unavailable)
            elif isinstance(verdict, Recover):
                self.checkpoint.recover(verdict.source)
            elif isinstance(verdict, AlreadyResolved):
                self.checkpoint.already_resolved(verdict.source)
        # 5. send: batches go out, Meta's answers come back
        for item, outcome in self.sender.step(backlog=len(msgs) == _CONSUME_BATCH):
            self.checkpoint.answered(item, outcome)
        # 6. checkpoint: results with their offsets, when due
        self.checkpoint.turn()
        self.metrics.flush()


def _consumer_config(
    s: Settings, config: dict[str, Any], monitor: Monitor, owned: set[Partition]
) -> dict[str, Any]:
    return {
        "group.id": s.group_id,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "fetch.wait.max.ms": "100",  # latency: a quiet partition answers soon
        **config,
        # offsets are committed by the transactions, nothing else
        "enable.auto.commit": "false",
        "isolation.level": "read_committed",
        "statistics.interval.ms": "5000",
        "stats_cb": lambda stats: monitor.on_stats(stats, owned),
    }


def _rules(s: Settings) -> Rules:
    return Rules(
        restricted_countries=s.restricted_countries,
        max_event_age_s=s.max_event_age_s,
        future_skew_s=s.future_skew_s,
        default_phone_region=s.default_phone_region,
    )


class _Closable(Protocol):
    def close(self) -> Any: ...


C = TypeVar("C", bound=_Closable)


def _closing(stack: contextlib.ExitStack, closable: C) -> C:
    stack.callback(_quietly, closable.close)
    return closable


def _quietly(close: Callable[[], Any]) -> None:
    try:
        close()
    except Exception:  # closing must go on whatever one part says
        log.exception("error while closing %s", getattr(close, "__self__", close))


def build_service(
    settings: Settings,
    metrics: Metrics | None = None,
    on_ready: Callable[[], None] | None = None,
) -> Service:
    """A `Service` with production collaborators built from `settings` (no I/O yet)."""
    registry = None
    if settings.schema_registry_url:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        registry = SchemaRegistryClient({"url": settings.schema_registry_url})
    codec = AvroCodec(SchemaStore(), registry)
    client = CapiClient(
        settings.graph_url,
        settings.graph_api_version,
        timeout_s=settings.request_timeout_s,
        partner_agent=settings.partner_agent,
        max_connections=settings.max_in_flight_requests * 2,
        throttle_backoff_s=settings.throttle_backoff_s,
    )
    return Service(settings, metrics=metrics, codec=codec, client=client, on_ready=on_ready)
