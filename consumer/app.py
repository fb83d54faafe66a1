"""The service: poll, decode, decide, batch, send, publish results, store offsets.

Threads: the main loop owns the Kafka clients, the batcher and the offset tracker. Sending
runs on a small pool (`CAPI_MAX_IN_FLIGHT_REQUESTS`); finished batches come back through a
queue and their results are published from the main loop. A partition's offset is stored only
once the result of every earlier message of that partition is acknowledged by the broker
(idempotent producer, `acks=all`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from .batching import Batch, Batcher, BatchKey, Pending, SourceRef
from .capi import CapiClient
from .codec import AvroCodec
from .config import Settings, Topics
from .credentials import CredentialStore, MissingCredentialsError
from .dispatch import Dispatcher, Outcome
from .enrich import enrich, referral_key
from .errors import CapiConsumerError, DecodeError
from .metrics import Metrics
from .offsets import OffsetTracker
from .policy import Approved, Refusal, Rules, decide
from .records import AdReferral, Channel, Contact, MetaConnection, ResultStatus, Trigger
from .results import refused, resolved, undecodable
from .state import StateStore
from .tables import Table, TableReader

__all__ = ["App", "FatalError", "ReferenceTables", "build_app"]

log = logging.getLogger(__name__)

_DEDUP_WINDOW_S = 7 * 24 * 3600
_DEDUP_MAX_KEYS = 2_000_000


class FatalError(CapiConsumerError):
    """The service cannot go on safely (a result could not be published)."""


class App:
    """One consumer instance. `run()` blocks until `stop()` or a fatal error."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        codec: AvroCodec,
        client: CapiClient,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._codec = codec
        self._client = client
        self._clock_ms = clock_ms
        self._rules = Rules(
            restricted_countries=settings.restricted_countries,
            max_event_age_s=settings.max_event_age_s,
            future_skew_s=settings.future_skew_s,
            default_phone_region=settings.default_phone_region,
        )
        topics = settings.topics
        self.tables = ReferenceTables.for_topics(codec, topics)
        self.connections = self.tables.connections
        self._window_ms = settings.attribution_window_s * 1000
        self._credentials = CredentialStore(settings.credentials_dir)
        self._restricted_assets: set[str] = set()
        self._stop = threading.Event()
        self._completed: queue.SimpleQueue[list[tuple[Pending, Outcome]]] = queue.SimpleQueue()
        self._in_flight: set[Future[None]] = set()
        self._batcher = Batcher(settings.batch_size, settings.batch_linger_ms / 1000)
        self._tracker = OffsetTracker()
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._fatal: str | None = None
        self._paused = False
        self._max_pending = settings.batch_size * (settings.max_in_flight_requests + 2)
        self._encode_result = codec.encoder("ConversionResult", topics.results)
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._tables: TableReader | None = None
        self._store: StateStore | None = None
        self._metrics_due = (0.0, 0.0)
        self._pool: ThreadPoolExecutor | None = None
        self._dispatcher = Dispatcher(
            client,
            self.metrics,
            retry_deadline_s=settings.retry_deadline_s,
            sleep=self._stop.wait,
            on_restricted=self._restricted_assets.add,
        )
        self.ready = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish in-flight work, publish results, commit and return."""
        self._stop.set()

    def run(self) -> None:
        s = self.settings
        rdkafka_log: dict[str, Any] = {"logger": logging.getLogger("librdkafka")}
        self._producer = Producer(
            {
                "linger.ms": "5",
                "compression.type": "lz4",
                **s.kafka_config("producer"),
                **rdkafka_log,
                # never lose or reorder a result: not overridable
                "enable.idempotence": "true",
                "acks": "all",
            }
        )
        base = {**s.kafka_config("consumer"), **rdkafka_log}
        self._store = StateStore(s.state_dir).open()
        self._tables = TableReader(
            self.tables.all(), base, self._store, admin_config=s.kafka_config("admin")
        )
        took = self._tables.bootstrap()
        for table in self.tables.all():
            self.metrics.table_bootstrap_seconds.labels(table.name).set(took)
        self._update_table_metrics(counts=True)
        self._consumer = Consumer(
            {
                "group.id": s.group_id,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": "true",
                "enable.auto.offset.store": "false",
                "partition.assignment.strategy": "cooperative-sticky",
                "isolation.level": "read_committed",
                **base,
            }
        )
        self._consumer.subscribe(
            [s.topics.triggered], on_assign=self._on_assign, on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )  # fmt: skip
        self._pool = ThreadPoolExecutor(s.max_in_flight_requests, thread_name_prefix="capi-send")
        log.info("consuming topic=%s group=%s", s.topics.triggered, s.group_id)
        self.ready.set()
        try:
            while not self._stop.is_set():
                self._step()
                if self._fatal:
                    raise FatalError(self._fatal)
            self._drain()
        finally:
            self._close()

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._consumer is not None:
            self._consumer.close()
        if self._producer is not None:
            self._producer.flush(10)
        if self._tables is not None:
            self._tables.close()
        if self._store is not None:
            self._store.close()

    # -- the loop ----------------------------------------------------------------------------

    def _step(self) -> None:
        assert self._consumer is not None and self._producer is not None
        assert self._tables is not None
        self._tables.poll()
        self._update_table_metrics()
        self._backpressure()
        wait = self._batcher.next_due_in()
        timeout = 0.1 if wait is None else min(0.1, wait)
        for msg in self._consumer.consume(num_messages=500, timeout=timeout):
            self._handle(msg)
        for batch in self._batcher.due():
            self._submit(batch)
        self._publish_completed()
        self._producer.poll(0)
        self._store_offsets()

    def _handle(self, msg: Message) -> None:
        error = msg.error()
        if error is not None:
            if error.fatal():
                self._fatal = f"consumer fatal error: {error}"
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error)
            return
        source = _source(msg)
        self._tracker.track(source.topic, source.partition, source.offset)
        self.metrics.consumed.labels(source.topic).inc()
        self.metrics.in_flight.inc()
        now_ms = self._clock_ms()
        try:
            trigger = Trigger.from_avro(self._codec.decode(msg.value(), "ConversionTriggered"))
        except (DecodeError, KeyError, ValueError, TypeError) as exc:
            detail = str(exc) if isinstance(exc, DecodeError) else f"bad record: {exc!r}"[:200]
            self._dead_letter(msg, "UNDECODABLE", detail)
            self._publish(source, undecodable(source, detail, now_ms), key=b"")
            return
        if self._is_duplicate(trigger.event_id):
            refusal = Refusal(True, "DUPLICATE", "event_id was already processed")
            self._publish(source, refused(source, trigger, refusal, now_ms))
            return
        trigger = self._enrich(trigger)
        try:
            decision = decide(
                trigger,
                self.connections.get(trigger.connection_id),
                now_ms,
                self._rules,
                self._restricted_assets,
            )
        except Exception as exc:  # an unforeseen rule break must not stop the partition
            log.exception(
                "rule evaluation failed topic=%s partition=%d offset=%d event_id=%s",
                source.topic, source.partition, source.offset, trigger.event_id,
            )  # fmt: skip
            detail = f"unexpected error evaluating the event: {type(exc).__name__}"
            self._dead_letter(msg, "INVALID_EVENT", detail)
            decision = Refusal(False, "INVALID_EVENT", detail)
        if isinstance(decision, Refusal):
            self._publish(source, refused(source, trigger, decision, now_ms))
            return
        self._enqueue(source, trigger, decision)

    def _enrich(self, trigger: Trigger) -> Trigger:
        contact = self.tables.contacts.get(trigger.contact_id)
        referral = None
        wants_referral = trigger.channel is Channel.WHATSAPP and not trigger.ctwa_clid
        if wants_referral:
            referral = self.tables.referrals.get(referral_key(trigger))
        result = enrich(trigger, contact, referral, self._window_ms)
        lookups = self.metrics.enrichment
        lookups.labels("contacts", _lookup(contact, result.contact_used)).inc()
        if wants_referral:
            lookups.labels("referrals", _lookup(referral, result.referral_used)).inc()
        return result.trigger

    def _update_table_metrics(self, counts: bool = False) -> None:
        """Lag every few seconds; key counts (a scan) every minute."""
        assert self._tables is not None
        now = time.monotonic()
        lag_due, count_due = self._metrics_due
        if now >= lag_due:
            for name, lag in self._tables.lag().items():
                self.metrics.table_lag.labels(name).set(lag)
            lag_due = now + 5
        if counts or now >= count_due:
            for table in self.tables.all():
                self.metrics.table_keys.labels(table.name).set(len(table))
            count_due = now + 60
        self._metrics_due = (lag_due, count_due)

    def _enqueue(self, source: SourceRef, trigger: Trigger, approved: Approved) -> None:
        connection = self.connections.get(trigger.connection_id)
        assert connection is not None
        for entry in approved.dropped:
            field_key, _, reason = entry.partition(":")
            self.metrics.fields_dropped.labels(field_key, reason).inc()
        try:
            credentials = self._credentials.for_connection(connection)
        except MissingCredentialsError as exc:
            refusal = Refusal(False, "MISSING_CREDENTIALS", str(exc))
            self._publish(source, refused(source, trigger, refusal, self._clock_ms()))
            return
        key = BatchKey(trigger.dataset_id, credentials, trigger.test_event_code)
        full = self._batcher.add(key, Pending(source, trigger, approved))
        if full is not None:
            self._submit(full)

    def _is_duplicate(self, event_id: str) -> bool:
        now = time.monotonic()
        seen = self._seen
        while seen:
            oldest_id, at = next(iter(seen.items()))
            if now - at < _DEDUP_WINDOW_S and len(seen) < _DEDUP_MAX_KEYS:
                break
            del seen[oldest_id]
        if event_id in seen:
            return True
        seen[event_id] = now
        return False

    # -- sending -----------------------------------------------------------------------------

    def _submit(self, batch: Batch) -> None:
        assert self._pool is not None
        future = self._pool.submit(self._send, batch)
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)

    def _send(self, batch: Batch) -> None:
        try:
            outcomes = self._dispatcher.deliver(batch)
        except Exception as exc:  # never lose a batch to a bug in a worker thread
            log.exception("batch delivery crashed dataset=%s", batch.key.dataset_id)
            outcomes = [
                (
                    item,
                    Outcome(ResultStatus.FAILED, "RETRIES_EXHAUSTED", f"internal error: {exc!r}"),
                )
                for item in batch.items
            ]
        self._completed.put(outcomes)

    def _publish_completed(self) -> None:
        while True:
            try:
                outcomes = self._completed.get_nowait()
            except queue.Empty:
                return
            now_ms = self._clock_ms()
            for item, outcome in outcomes:
                record = resolved(item.source, item.trigger, item.approved, outcome, now_ms)
                self._publish(item.source, record)

    # -- results and offsets -----------------------------------------------------------------

    def _publish(self, source: SourceRef, record: dict[str, Any], key: bytes | None = None) -> None:
        assert self._producer is not None
        value = self._encode_result(record)
        if key is None:
            key = (record.get("event_id") or "").encode("utf-8")
        self.metrics.results.labels(record["status"], record.get("reason") or "").inc()

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self._fatal = f"result for {source.topic}[{source.partition}]@{source.offset} "
                self._fatal += f"not delivered: {err}"
                return
            self._tracker.done(source.topic, source.partition, source.offset)
            self.metrics.in_flight.dec()

        self._produce(self.settings.topics.results, key, value, delivered)

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        assert self._producer is not None
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, on_delivery=on_delivery, headers=headers
                )
                return
            except BufferError:
                self._producer.poll(0.05)

    def _dead_letter(self, msg: Message, reason: str, detail: str) -> None:
        source = _source(msg)
        headers: list[tuple[str, str | bytes | None]] = [
            ("capi.error", f"{reason}: {detail}".encode()),
            ("capi.source.topic", source.topic.encode()),
            ("capi.source.partition", str(source.partition).encode()),
            ("capi.source.offset", str(source.offset).encode()),
        ]
        self.metrics.dead_letters.labels(reason).inc()
        self._produce(self.settings.topics.dlq, msg.key(), msg.value(), None, headers)

    def _store_offsets(self) -> None:
        assert self._consumer is not None
        ready = self._tracker.committable()
        if ready:
            self._consumer.store_offsets(
                offsets=[TopicPartition(t, p, o) for (t, p), o in ready.items()]
            )

    def _backpressure(self) -> None:
        assert self._consumer is not None
        pending = len(self._tracker)
        if not self._paused and pending >= self._max_pending:
            self._consumer.pause(self._consumer.assignment())
            self._paused = True
        elif self._paused and pending <= self._max_pending // 2:
            self._consumer.resume(self._consumer.assignment())
            self._paused = False

    # -- rebalancing and shutdown ------------------------------------------------------------

    def _finish_in_flight(self, timeout_s: float = 60.0) -> None:
        """Send what is batched, wait for every request, publish and acknowledge results."""
        assert self._producer is not None
        for batch in self._batcher.flush():
            self._submit(batch)
        deadline = time.monotonic() + timeout_s
        while (self._in_flight or len(self._tracker)) and time.monotonic() < deadline:
            self._publish_completed()
            self._producer.poll(0.05)
        self._publish_completed()
        self._producer.flush(max(0.0, deadline - time.monotonic()))

    def _drain(self) -> None:
        log.info("draining pending=%d", len(self._tracker))
        self._finish_in_flight()
        self._store_offsets()
        self._commit()

    def _commit(self) -> None:
        assert self._consumer is not None
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("commit failed: %s", exc)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", _names(partitions))
        if self._paused and partitions:
            consumer.pause(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("revoked %s; finishing in-flight work", _names(partitions))
        self._finish_in_flight()
        self._store_offsets()
        self._commit()
        for tp in partitions:
            self._tracker.forget(tp.topic, tp.partition)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("lost %s; their uncommitted messages will be redelivered", _names(partitions))
        for tp in partitions:
            self._tracker.forget(tp.topic, tp.partition)


def _lookup(record: object, used: bool) -> str:
    if record is None:
        return "miss"
    return "hit" if used else "unused"


@dataclass(frozen=True, slots=True)
class ReferenceTables:
    """The three tables of DESIGN.md, decoded from their compacted topics."""

    connections: Table[MetaConnection]
    contacts: Table[Contact]
    referrals: Table[AdReferral]

    @classmethod
    def for_topics(cls, codec: AvroCodec, topics: Topics) -> ReferenceTables:
        return cls(
            connections=Table(
                "connections",
                topics.connections,
                lambda b: codec.decode(b, "MetaConnection"),
                MetaConnection.from_avro,
                cache_size=10_000,
            ),
            contacts=Table(
                "contacts", topics.contacts, lambda b: codec.decode(b, "Contact"), Contact.from_avro
            ),
            referrals=Table(
                "referrals",
                topics.referrals,
                lambda b: codec.decode(b, "AdReferral"),
                AdReferral.from_avro,
            ),
        )

    def all(self) -> list[Table[Any]]:
        return [self.connections, self.contacts, self.referrals]


def _names(partitions: list[TopicPartition]) -> str:
    return ",".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "-"


def build_app(settings: Settings, metrics: Metrics | None = None) -> App:
    """An `App` with production collaborators built from `settings` (no I/O yet)."""
    from .codec import SchemaStore

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
    )
    return App(settings, metrics=metrics, codec=codec, client=client)


def _source(msg: Message) -> SourceRef:
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None
    return SourceRef(topic, partition, offset)
