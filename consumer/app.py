"""The service: poll, decode, deduplicate, enrich, decide, batch, send, publish, commit.

Threads: the main loop owns the Kafka clients, the state store and every piece of bookkeeping;
HTTP requests run on a small pool (`CAPI_MAX_IN_FLIGHT_REQUESTS`, see `sending.py`).

Delivery: results and dead letters are produced in a Kafka transaction that also commits the
input offsets (`publish.py`), every `CAPI_COMMIT_INTERVAL_MS`. An offset is committed only once
the result of every earlier message of its partition is in the same or an earlier transaction.
Results go to the partition numbered like their input's, so the results topic doubles as the
dedup changelog (`dedup.py`). A crash therefore loses nothing and publishes nothing twice; what
it can repeat is the sending of events that were in flight (sent, their transaction not
committed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from .batching import Batcher, BatchKey, Pending, SourceRef
from .capi import CapiClient
from .codec import AvroCodec, SchemaStore
from .config import Settings
from .credentials import CredentialStore, MissingCredentialsError
from .dedup import Dedup
from .dispatch import Dispatcher, Outcome
from .enrich import enrich, referral_key
from .errors import CapiConsumerError, DecodeError, SchemaUnavailableError
from .metrics import Metrics
from .monitor import Monitor
from .offsets import OffsetTracker
from .outbox import Outbox
from .policy import Reason, Refusal, Rules, decide
from .publish import OutRecord, Publisher
from .records import Channel, MetaConnection, ResultStatus, Trigger
from .reference import ReferenceTables
from .results import refused, resolved, undecodable
from .sending import Sender
from .state import StateStore
from .tables import TableReader

__all__ = ["DEAD_LETTER_REASONS", "REPLAY_HEADER", "App", "FatalError", "build_app"]

log = logging.getLogger(__name__)

Partition = tuple[str, int]

# FAILED results an operator can fix and replay get a dead-letter copy of their input.
DEAD_LETTER_REASONS: frozenset[Reason] = frozenset(
    {
        "UNDECODABLE",
        "UNKNOWN_CONNECTION",
        "ASSET_NOT_LINKED",
        "MISSING_CREDENTIALS",
        "META_AUTH_ERROR",
        "RETRIES_EXHAUSTED",
    }
)
# A replayed message may be processed again when its earlier outcome was FAILED.
REPLAY_HEADER = "capi.replay"
_SCHEMA_RETRY_S = 5.0
_CONSUME_BATCH = 500


class FatalError(CapiConsumerError):
    """The service cannot go on safely."""


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
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_ready = on_ready
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
        self.tables = ReferenceTables.for_topics(codec, settings.topics)
        self._window_ms = settings.attribution_window_s * 1000
        self._credentials = CredentialStore(settings.credentials_dir)
        self._restricted_assets: set[str] = set()
        self._stop = threading.Event()
        self._tracker = OffsetTracker()
        # what each resolved message will publish, held until every earlier message of its
        # partition is resolved: a result is never visible before its offset is committed
        self._held: dict[tuple[str, int, int], _Held] = {}
        self._owned: set[Partition] = set()
        self._paused = False  # backpressure
        self._schema_wait: dict[Partition, float] = {}  # registry unreachable: retry at
        self._closing = False
        self._pause_due = False
        self._last_commit = 0.0
        self._encode_result = codec.encoder("ConversionResult", settings.topics.results)
        dispatcher = Dispatcher(
            client,
            self.metrics,
            retry_deadline_s=settings.retry_deadline_s,
            on_restricted=self._restricted_assets.add,
        )
        self._sender = Sender(
            dispatcher,
            Batcher(settings.batch_size, settings.batch_linger_ms / 1000),
            settings.max_in_flight_requests,
        )
        self._store: StateStore | None = None
        self._tables: TableReader | None = None
        self._dedup: Dedup | None = None
        self._outbox: Outbox | None = None
        self._publisher: Publisher | None = None
        self._consumer: Consumer | None = None
        self.ready = threading.Event()
        self.monitor = Monitor(self.metrics, settings.topics.triggered, self.ready)

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish in-flight work (up to `CAPI_DRAIN_TIMEOUT_S`), commit, return from run()."""
        self._stop.set()

    def run(self) -> None:
        s = self.settings
        rdkafka_log: dict[str, Any] = {"logger": logging.getLogger("librdkafka")}
        consumer_config = {**s.kafka_config("consumer"), **rdkafka_log}
        admin_config = {**s.kafka_config("admin"), **rdkafka_log}
        try:
            self._store = StateStore(s.state_dir).open()
            self._tables = TableReader(
                self.tables.all(), consumer_config, self._store, admin_config=admin_config
            )
            took = self._tables.bootstrap()
            for table in self.tables.all():
                self.metrics.table_bootstrap_seconds.labels(table.name).set(took)
            self.monitor.tables(self._tables, self.tables.all(), counts=True)
            self._dedup = Dedup(
                self._store, s.topics.results, self._codec, consumer_config, admin_config
            )
            self._dedup.open()
            self._dedup.purge()
            self._outbox = Outbox(self._store)
            self._outbox.open()
            self._publisher = Publisher(
                {**s.kafka_config("producer"), **rdkafka_log},
                f"capi-consumer-{s.group_id}-{s.instance_id}",
            )
            self._publisher.start()
            self._sender.start()
            self._consumer = Consumer(
                {
                    "group.id": s.group_id,
                    "auto.offset.reset": "earliest",
                    "partition.assignment.strategy": "cooperative-sticky",
                    "fetch.wait.max.ms": "100",  # latency: a quiet partition answers soon
                    **consumer_config,
                    # offsets are committed by the transactions, nothing else
                    "enable.auto.commit": "false",
                    "isolation.level": "read_committed",
                    "statistics.interval.ms": "5000",
                    "stats_cb": lambda stats: self.monitor.on_stats(stats, self._owned),
                }
            )
            self._consumer.subscribe(
                [s.topics.triggered],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            log.info(
                "consuming topic=%s group=%s instance=%s",
                s.topics.triggered,
                s.group_id,
                s.instance_id,
            )
            if self._on_ready is not None:
                self._on_ready()
            self.ready.set()
            while not self._stop.is_set():
                self._step()
            self._drain()
        finally:
            self._close()

    def _close(self) -> None:
        self._closing = True
        self._sender.close()
        self.metrics.flush()
        for closer in (self._consumer, self._tables, self._dedup, self._publisher, self._store):
            if closer is not None:
                try:
                    closer.close()
                except Exception:  # closing must go on whatever one part says
                    log.exception("error while closing %s", type(closer).__name__)

    # -- the loop ----------------------------------------------------------------------------

    def _step(self) -> None:
        self.monitor.turned()
        assert self._consumer is not None and self._tables is not None
        assert self._dedup is not None and self._publisher is not None
        self._tables.poll()
        self.monitor.tables(self._tables, self.tables.all())
        self._restore()
        self._backpressure()
        self._retry_schema_waits()
        wait = self._sender.next_wakeup()
        # answers come back from the sender threads: look for them often while any is out
        idle = 0.005 if self._sender.in_flight_requests() else 0.05
        timeout = idle if wait is None else min(idle, wait)
        skip: set[Partition] = set()
        msgs = self._consumer.consume(num_messages=_CONSUME_BATCH, timeout=timeout)
        # decoded first, so that the batch's event ids are looked up in one query
        decoded = [self._decode(msg) for msg in msgs]
        self._dedup.look_up(
            d["event_id"]
            for d in decoded
            if isinstance(d, dict) and isinstance(d.get("event_id"), str)
        )
        for msg, data in zip(msgs, decoded, strict=True):
            if (msg.topic(), msg.partition()) not in skip and not self._handle(msg, data):
                skip.add((msg.topic() or "", msg.partition() or 0))
        self._dedup.forget_looked_up()
        for item, outcome in self._sender.step(backlog=len(msgs) == _CONSUME_BATCH):
            self._resolve(item, outcome)
        assert self._outbox is not None
        self._outbox.flush()
        self._publisher.poll()
        self._maybe_commit()
        self.metrics.flush()

    def _decode(self, msg: Message) -> dict[str, Any] | CapiConsumerError | None:
        """The message's record, or why it has none (None: not a record but an error event)."""
        if msg.error() is not None:
            return None
        try:
            data = self._codec.decode(msg.value(), "ConversionTriggered")
        except (SchemaUnavailableError, DecodeError) as exc:
            return exc
        return data

    def _handle(self, msg: Message, data: dict[str, Any] | CapiConsumerError | None) -> bool:
        """Process one message; False when its partition must be read again from it."""
        error = msg.error()
        if error is not None:
            if error.fatal():
                raise FatalError(f"consumer fatal error: {error}")
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error)
            return True
        assert data is not None
        source = _source(msg)
        assert self._dedup is not None
        if self._dedup.is_restoring(source.partition):
            # assigned a moment ago: its dedup entries are not restored yet
            self._rewind(source)
            return False
        if self._dedup.already_resolved(source.partition, source.offset):
            # resolved by an instance that died before committing: its result stands
            self._tracker.track(source.topic, source.partition, source.offset)
            self._tracker.done(source.topic, source.partition, source.offset)
            self.metrics.already_resolved.inc()
            return True
        assert self._outbox is not None
        if self._outbox.has(source.topic, source.partition, source.offset):
            self._recover(source)
            return True
        now_ms = self._clock_ms()
        if isinstance(data, SchemaUnavailableError):
            log.warning(
                "schema registry unavailable topic=%s partition=%d offset=%d: %s",
                source.topic,
                source.partition,
                source.offset,
                data,
            )
            self._schema_wait[(source.topic, source.partition)] = time.monotonic() + _SCHEMA_RETRY_S
            self._rewind(source)
            return False
        self._track(source)
        if isinstance(data, CapiConsumerError):  # a DecodeError
            self._undecodable(msg, source, str(data), now_ms)
            return True
        try:
            trigger = Trigger.from_avro(data)
        except (KeyError, ValueError, TypeError) as exc:
            self._undecodable(msg, source, f"bad record: {exc!r}"[:200], now_ms)
            return True
        prior = self._dedup_seen(trigger.event_id, msg)
        if prior is not None:
            refusal = Refusal(True, "DUPLICATE", f"event_id was already processed ({prior})")
            self._publish(source, refused(source, trigger, refusal, now_ms))
            return True
        assert self._dedup is not None
        self._dedup.begin(trigger.event_id)
        trigger = self._enrich(trigger)
        connection = self.tables.connections.get(trigger.connection_id)
        try:
            decision = decide(
                trigger,
                connection,
                now_ms,
                self._rules,
                self._restricted_assets,
            )
        except Exception as exc:  # an unforeseen rule break must not stop the partition
            log.exception(
                "rule evaluation failed topic=%s partition=%d offset=%d event_id=%s",
                source.topic,
                source.partition,
                source.offset,
                trigger.event_id,
            )
            detail = f"unexpected error evaluating the event: {type(exc).__name__}"
            record = refused(source, trigger, Refusal(False, "INVALID_EVENT", detail), now_ms)
            self._publish(source, record, trigger.event_id, dead_letter=(msg.key(), msg.value()))
            return True
        if isinstance(decision, Refusal):
            letter = (msg.key(), msg.value()) if decision.reason in DEAD_LETTER_REASONS else None
            record = refused(source, trigger, decision, now_ms)
            self._publish(source, record, trigger.event_id, dead_letter=letter)
            return True
        assert connection is not None  # decide() approves only with a connection
        self._enqueue(Pending(source, trigger, decision, msg.key(), msg.value()), connection)
        return True

    def _recover(self, source: SourceRef) -> None:
        """Meta answered this message before a crash: publish that answer, send nothing."""
        assert self._outbox is not None and self._dedup is not None
        records, dedup = self._outbox.take(source.topic, source.partition, source.offset)
        results = self.settings.topics.results
        records = [
            replace(r, on_delivery=self._result_delivered) if r.topic == results else r
            for r in records
        ]
        self._tracker.track(source.topic, source.partition, source.offset)
        self._tracker.done(source.topic, source.partition, source.offset)
        if dedup is not None:
            self._dedup.begin(dedup[0])
        self._held[(source.topic, source.partition, source.offset)] = _Held(records, dedup)
        self.metrics.outbox_recovered.inc()

    def _track(self, source: SourceRef) -> None:
        self._tracker.track(source.topic, source.partition, source.offset)
        self.metrics.tally(self.metrics.consumed, source.topic)

    def _rewind(self, source: SourceRef) -> None:
        """Read the partition again from this message once it may go on (it stays paused)."""
        assert self._consumer is not None
        self._set_paused()
        self._consumer.seek(TopicPartition(source.topic, source.partition, source.offset))

    def _undecodable(self, msg: Message, source: SourceRef, detail: str, now_ms: int) -> None:
        record = undecodable(source, detail, now_ms)
        self._publish(source, record, None, dead_letter=(msg.key(), msg.value()), key=b"")

    def _dedup_seen(self, event_id: str, msg: Message) -> str | None:
        assert self._dedup is not None
        prior = self._dedup.seen(event_id)
        if prior == ResultStatus.FAILED.value and _is_replay(msg):
            return None
        return prior

    def _enrich(self, trigger: Trigger) -> Trigger:
        contact = self.tables.contacts.get(trigger.contact_id)
        referral = None
        wants_referral = trigger.channel is Channel.WHATSAPP and not trigger.ctwa_clid
        if wants_referral:
            referral = self.tables.referrals.get(referral_key(trigger))
        result = enrich(trigger, contact, referral, self._window_ms)
        m = self.metrics
        m.tally(m.enrichment, "contacts", _lookup(contact, result.contact_used))
        if wants_referral:
            m.tally(m.enrichment, "referrals", _lookup(referral, result.referral_used))
        return result.trigger

    def _enqueue(self, item: Pending, connection: MetaConnection) -> None:
        trigger, approved = item.trigger, item.approved
        for entry in approved.dropped:
            field_key, _, reason = entry.partition(":")
            self.metrics.tally(self.metrics.fields_dropped, field_key, reason)
        try:
            credentials = self._credentials.for_connection(connection)
        except MissingCredentialsError as exc:
            refusal = Refusal(False, "MISSING_CREDENTIALS", str(exc))
            record = refused(item.source, trigger, refusal, self._clock_ms())
            self._publish(
                item.source, record, trigger.event_id, dead_letter=(item.raw_key, item.raw_value)
            )
            return
        self.metrics.in_flight.inc()
        self._sender.add(BatchKey(trigger.dataset_id, credentials, trigger.test_event_code), item)

    def _resolve(self, item: Pending, outcome: Outcome) -> None:
        self.metrics.in_flight.dec()
        record = resolved(item.source, item.trigger, item.approved, outcome, self._clock_ms())
        letter = None
        if outcome.reason in DEAD_LETTER_REASONS:
            letter = (item.raw_key, item.raw_value)
        self._publish(item.source, record, item.trigger.event_id, dead_letter=letter)
        held = self._held.get((item.source.topic, item.source.partition, item.source.offset))
        if held is not None:
            assert self._outbox is not None
            src = item.source
            self._outbox.add(src.topic, src.partition, src.offset, held.records, held.dedup)

    # -- results and offsets -----------------------------------------------------------------

    def _publish(
        self,
        source: SourceRef,
        record: dict[str, Any],
        event_id: str | None = None,
        *,
        dead_letter: tuple[bytes | None, bytes | None] | None = None,
        key: bytes | None = None,
    ) -> None:
        """Hold the result (and its dead letter) until it can go out with its offset."""
        assert self._publisher is not None and self._dedup is not None
        partition = (source.topic, source.partition)
        if partition not in self._owned:
            log.info(
                "result dropped: partition %s[%d] is no longer ours offset=%d",
                source.topic,
                source.partition,
                source.offset,
            )
            if event_id:
                self._dedup.abandon(event_id)
            return
        topics = self.settings.topics
        status, reason = record["status"], record.get("reason")
        if key is None:
            key = (record.get("event_id") or "").encode("utf-8")
        out = [
            OutRecord(
                topics.results,
                key,
                self._encode_result(record),
                partition,
                partition=source.partition,
                on_delivery=self._result_delivered,
            )
        ]
        dedup = (event_id, status) if event_id and reason != "DUPLICATE" else None
        if dead_letter is not None:
            headers: list[tuple[str, str | bytes | None]] = [
                ("capi.error", f"{reason}: {record.get('detail') or ''}".encode()),
                ("capi.source.topic", source.topic.encode()),
                ("capi.source.partition", str(source.partition).encode()),
                ("capi.source.offset", str(source.offset).encode()),
            ]
            out.append(
                OutRecord(topics.dlq, dead_letter[0], dead_letter[1], partition, headers=headers)
            )
            self.metrics.tally(self.metrics.dead_letters, reason or "")
        self._held[(source.topic, source.partition, source.offset)] = _Held(out, dedup)
        self._tracker.done(source.topic, source.partition, source.offset)
        self.metrics.tally(self.metrics.results, status, reason or "")

    def _result_delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is None and self._dedup is not None:
            self._dedup.delivered(msg.partition() or 0, msg.offset() or 0)

    def _maybe_commit(self, force: bool = False) -> None:
        assert self._publisher is not None and self._consumer is not None
        now = time.monotonic()
        due = now - self._last_commit >= self.settings.commit_interval_ms / 1000
        if not (force or due or self._publisher.pending >= 10_000):
            return
        assert self._dedup is not None and self._outbox is not None
        self._outbox.flush()
        offsets = []
        all_released = self._tracker.release()
        for (topic, partition), released in all_released.items():
            for offset in released:
                held = self._held.pop((topic, partition, offset), None)
                if held is None:
                    continue
                for record in held.records:
                    self._publisher.produce(record)
                if held.dedup is not None:
                    self._dedup.record(held.dedup[0], held.dedup[1], partition)
            if (topic, partition) in self._owned:
                offsets.append(TopicPartition(topic, partition, released[-1] + 1))
        self._publisher.commit(offsets, self._consumer, self._owned.__contains__)
        self.monitor.transactions(self._publisher.commits, self._publisher.aborts)
        self._dedup.committed()
        self._outbox.committed(all_released)
        self._last_commit = now

    # -- flow control ------------------------------------------------------------------------

    def _backpressure(self) -> None:
        pending = len(self._tracker)
        limit = self.settings.max_pending_events
        if not self._paused and pending >= limit:
            self._paused = True
            self._set_paused()
        elif self._paused and pending <= limit // 2:
            self._paused = False
            self._set_paused()

    def _set_paused(self) -> None:
        """Pause what must wait (backpressure, restore, schema), resume the rest."""
        assert self._consumer is not None and self._dedup is not None
        restoring = self._dedup.restoring()
        pause: list[TopicPartition] = []
        resume: list[TopicPartition] = []
        for topic, partition in self._owned:
            tp = TopicPartition(topic, partition)
            waiting = (
                self._paused or partition in restoring or (topic, partition) in self._schema_wait
            )
            (pause if waiting else resume).append(tp)
        self.metrics.paused_partitions.set(len(pause))
        if pause:
            self._consumer.pause(pause)
        if resume:
            self._consumer.resume(resume)

    def _restore(self) -> None:
        assert self._dedup is not None
        if self._dedup.restore_step() or self._pause_due:
            self._pause_due = False
            self._set_paused()

    def _retry_schema_waits(self) -> None:
        now = time.monotonic()
        due = [p for p, at in self._schema_wait.items() if at <= now]
        for partition in due:
            del self._schema_wait[partition]
        if due:
            self._set_paused()

    # -- rebalancing and shutdown ------------------------------------------------------------

    def _finish(self, partitions: set[Partition] | None, timeout_s: float) -> None:
        """Send what is batched and wait for outcomes (of `partitions`, or all), committing."""
        self._sender.flush()
        deadline = time.monotonic() + timeout_s
        while self._sender.events(partitions) and time.monotonic() < deadline:
            for item, outcome in self._sender.step():
                self._resolve(item, outcome)
            assert self._publisher is not None
            self._publisher.poll()
            self._maybe_commit()
            time.sleep(0.01)
        for item, outcome in self._sender.step():
            self._resolve(item, outcome)
        left = self._sender.events(partitions)
        if left:
            log.warning(
                "drain timed out: %d events left unresolved; their input will be processed again",
                left,
            )

    def _drain(self) -> None:
        log.info("draining pending=%d", len(self._tracker))
        assert self._consumer is not None
        self._consumer.pause([TopicPartition(t, p) for t, p in self._owned])
        self._finish(None, self.settings.drain_timeout_s)
        self._maybe_commit(force=True)

    def _release(self, partitions: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        assert self._dedup is not None
        for item in self._sender.drop(gone):
            self._dedup.abandon(item.trigger.event_id)
            self.metrics.in_flight.dec()
        self._owned -= gone
        for key in [k for k in self._held if (k[0], k[1]) in gone]:
            held = self._held.pop(key)
            if held.dedup is not None:
                self._dedup.abandon(held.dedup[0])
        for topic, partition in gone:
            self._tracker.forget(topic, partition)
            self.monitor.released(topic, partition)
            if self._outbox is not None:
                self._outbox.forget(topic, partition)
            self._schema_wait.pop((topic, partition), None)
        self._dedup.forget([p for _, p in gone])

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", _names(partitions))
        self.metrics.rebalances.labels("assign").inc()
        assert self._dedup is not None
        too_high = [tp.partition for tp in partitions if tp.partition >= self._dedup.partitions]
        if too_high:
            raise FatalError(
                f"{self.settings.topics.results} has {self._dedup.partitions} partitions; it needs "
                f"at least as many as {self.settings.topics.triggered} (partition {too_high[0]})"
            )
        self._owned |= {(tp.topic, tp.partition) for tp in partitions}
        committed = consumer.committed(partitions, timeout=30) if partitions else []
        assert self._outbox is not None
        log.info("committed input offsets %s", _offsets(committed))
        for tp in committed:
            self._outbox.load(tp.topic, tp.partition, max(tp.offset, 0))
        self._dedup.restore({tp.partition: max(tp.offset, 0) for tp in committed})
        # the assignment takes effect after this callback: pause on the next turn; a message
        # fetched before that is rewound by _handle
        self._pause_due = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("revoked %s", _names(partitions))
        self.metrics.rebalances.labels("revoke").inc()
        if not self._closing:
            revoked = {(tp.topic, tp.partition) for tp in partitions}
            self._finish(revoked, self.settings.drain_timeout_s)
            self._maybe_commit(force=True)
        self._release(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning(
            "lost %s; their uncommitted messages will be processed again", _names(partitions)
        )
        self.metrics.rebalances.labels("lost").inc()
        self._release(partitions)
        assert self._publisher is not None and self._dedup is not None
        self._dedup.drop_uncommitted({tp.partition for tp in partitions})
        self._publisher.redo(self._owned.__contains__)


@dataclass(frozen=True, slots=True)
class _Held:
    """What a resolved message publishes, and the dedup entry it makes, once released."""

    records: list[OutRecord]
    dedup: tuple[str, str] | None


def _lookup(record: object, used: bool) -> str:
    if record is None:
        return "miss"
    return "hit" if used else "unused"


def _is_replay(msg: Message) -> bool:
    headers = msg.headers() or []
    items = headers.items() if isinstance(headers, dict) else headers
    return any(name == REPLAY_HEADER for name, _ in items)


def _offsets(partitions: list[TopicPartition]) -> str:
    return " ".join(f"{tp.topic}[{tp.partition}]={tp.offset}" for tp in partitions) or "-"


def _names(partitions: list[TopicPartition]) -> str:
    return ",".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "-"


def _source(msg: Message) -> SourceRef:
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None
    return SourceRef(topic, partition, offset)


def build_app(
    settings: Settings,
    metrics: Metrics | None = None,
    on_ready: Callable[[], None] | None = None,
) -> App:
    """An `App` with production collaborators built from `settings` (no I/O yet)."""
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
    return App(settings, metrics=metrics, codec=codec, client=client, on_ready=on_ready)
