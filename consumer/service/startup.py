"""The service's parts, opened in order and wired one way: triage and flow control read the
local state; checkpoint publishes; rebalance calls checkpoint and flow control. Beside them, on
a thread of its own, the signal-health refresh asks the ownership whether input partition 0 is
this instance's."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

from confluent_kafka import Consumer

from consumer.errors import (
    BrokerUnavailableError,
    DecodeError,
    FatalError,
    SchemaUnavailableError,
    StateFullError,
)
from consumer.events.policy import Rules
from consumer.kafka.clients import READ_AHEAD, InputConsumer, topic_partitions
from consumer.kafka.codec import AvroCodec
from consumer.kafka.publisher import Publisher
from consumer.kafka.registry_wait import REGISTRY_RETRY_S
from consumer.meta.batching import Batcher
from consumer.meta.breaker import CircuitBreaker
from consumer.meta.client import CapiClient
from consumer.meta.credentials import CredentialStore
from consumer.meta.dispatch import Dispatcher
from consumer.meta.senders import Sender
from consumer.ops.metrics import Metrics
from consumer.ops.monitor import Monitor
from consumer.service.answers import Answers
from consumer.service.checkpoint import Checkpoint
from consumer.service.flow import FlowControl
from consumer.service.ownership import Ownership
from consumer.service.rebalance import Rebalance
from consumer.service.retries import ParkedRetries
from consumer.service.retry_topic import RetryTopic
from consumer.service.signal_refresh import SignalHealthRefresh
from consumer.service.state_space import StateSpace
from consumer.service.triage import Triage
from consumer.settings import Settings
from consumer.store.dedup import Dedup
from consumer.store.outbox import Outbox
from consumer.store.parked import ParkedTable
from consumer.store.recovery import PartitionRecovery, Recovery
from consumer.store.reference_tables import Lookups, ReferenceTables
from consumer.store.signal_counts import SignalCounts
from consumer.store.signals_topic import read_signals_topic
from consumer.store.sqlite import StateStore
from consumer.store.table_reader import TableReader, TablesFeed

__all__ = ["LocalState", "Parts", "StoppedWhileStarting", "open_parts", "wire_parts"]

log = logging.getLogger(__name__)

_BROKER_WAIT_S = 5.0


@dataclass(frozen=True, slots=True)
class Parts:
    """What one turn of the loop works with (a unit test builds one from fakes)."""

    consumer: InputConsumer
    tables: TablesFeed
    triage: Triage
    retries: ParkedRetries
    sender: Sender
    checkpoint: Checkpoint
    flow: FlowControl
    rebalance: Rebalance
    answers: Answers
    space: StateSpace


class StoppedWhileStarting(Exception):
    """`stop()` came while the service waited for the broker or the registry to answer."""


@dataclass(frozen=True, slots=True)
class LocalState:
    """The state store and what lives in it, opened and caught up."""

    store: StateStore
    tables: TablesFeed
    dedup: Dedup
    parked: ParkedTable
    signals: SignalCounts
    restore: PartitionRecovery
    outbox: Outbox
    space: StateSpace


def open_parts(
    stack: contextlib.ExitStack,
    s: Settings,
    *,
    codec: AvroCodec,
    client: CapiClient,
    reference: ReferenceTables,
    metrics: Metrics,
    monitor: Monitor,
    clock_ms: Callable[[], int],
    stopping: threading.Event,
) -> Parts:
    """Open the state, the tables, the clients and wire the parts; `stack` closes them, in
    reverse order."""
    rdkafka_log: dict[str, Any] = {"logger": logging.getLogger("librdkafka")}
    consumer_config = {**s.kafka_config("consumer"), **rdkafka_log}
    admin_config = {**s.kafka_config("admin"), **rdkafka_log}
    producer_config = {**s.kafka_config("producer"), **rdkafka_log}
    local = _open_local_state(
        stack,
        s,
        codec=codec,
        reference=reference,
        consumer_config=consumer_config,
        admin_config=admin_config,
        transaction_timeout_s=float(producer_config.get("transaction.timeout.ms", 60_000)) / 1000,
        metrics=metrics,
        monitor=monitor,
        stopping=stopping,
    )
    publisher = _closing(
        stack,
        Publisher(
            producer_config,
            f"capi-consumer-{s.group_id}-{s.instance_id}",
            report_wait=monitor.waiting,
            count_transaction=lambda outcome: metrics.transactions.labels(outcome).inc(),
        ),
    )
    monitor.starting("starting the transactional producer")
    publisher.start()
    if s.schema_registry_url:
        monitor.starting("looking the result schema up in the schema registry")
        _wait_for_result_schema(codec, s.topics.results, stopping)
        if stopping.is_set():
            raise StoppedWhileStarting
    owned = Ownership()
    consumer = _closing(stack, Consumer(_consumer_config(s, consumer_config, monitor, owned)))
    parts = wire_parts(
        stack,
        s,
        local=local,
        consumer=consumer,
        owned=owned,
        publisher=publisher,
        codec=codec,
        client=client,
        reference=reference,
        metrics=metrics,
        monitor=monitor,
        clock_ms=clock_ms,
    )
    consumer.subscribe(
        [s.topics.triggered],
        on_assign=parts.rebalance.on_assign,
        on_revoke=parts.rebalance.on_revoke,
        on_lost=parts.rebalance.on_lost,
    )
    if s.signal_health_interval_s:
        refresh = SignalHealthRefresh(
            partial(read_signals_topic, consumer_config, s.topics.signals),
            lambda: (s.topics.triggered, 0) in owned,
            metrics.signal_health,
            interval_s=s.signal_health_interval_s,
            series=s.signal_health_series,
            clock_ms=clock_ms,
        )
        _closing(stack, refresh).start()
    return parts


def wire_parts(
    stack: contextlib.ExitStack,
    s: Settings,
    *,
    local: LocalState,
    consumer: InputConsumer,
    owned: Ownership,
    publisher: Publisher,
    codec: AvroCodec,
    client: CapiClient,
    reference: Lookups,
    metrics: Metrics,
    monitor: Monitor,
    clock_ms: Callable[[], int],
) -> Parts:
    """The parts of a turn, wired one way over what is open already (the local state, the
    clients); the sender's threads start, and `stack` stops them. A unit test wires them over
    fakes the same way."""
    breaker = CircuitBreaker(on_change=monitor.breaker)
    dispatcher = Dispatcher(
        client,
        metrics,
        retry_deadline_s=s.retry_deadline_s,
        retry_inline_s=s.retry_inline_s,
        breaker=breaker,
    )
    sender = Sender(
        dispatcher, Batcher(s.batch_size, s.batch_linger_ms / 1000), s.max_in_flight_requests
    )
    _closing(stack, sender).start()
    retry = RetryTopic(local.parked, s.topics.triggered, s.park_delays_s)
    checkpoint = Checkpoint(
        consumer=consumer,
        publisher=publisher,
        outbox=local.outbox,
        dedup=local.dedup,
        owned=owned,
        retry=retry,
        topics=s.topics,
        codec=codec,
        metrics=metrics,
        signals=local.signals,
        commit_interval_s=s.commit_interval_ms / 1000,
        clock_ms=clock_ms,
    )
    flow = FlowControl(
        consumer=consumer,
        restore=local.restore,
        owned=owned,
        max_pending=s.max_pending_events,
        max_pending_bytes=s.max_pending_bytes,
        breaker=breaker,
        metrics=metrics,
        space=local.space,
    )
    triage = Triage(
        codec=codec,
        dedup=local.dedup,
        parked=local.parked,
        restore=local.restore,
        outbox=local.outbox,
        tables=reference,
        credentials=CredentialStore(s.credentials_dir),
        rules=Rules.from_settings(s),
        owned=owned,
        metrics=metrics,
        clock_ms=clock_ms,
    )
    answers = Answers(sender=sender, checkpoint=checkpoint, triage=triage)
    rebalance = Rebalance(
        ownership=owned,
        checkpoint=checkpoint,
        flow=flow,
        sender=sender,
        answers=answers,
        restore=local.restore,
        topics=s.topics,
        drain_timeout_s=s.drain_timeout_s,
        session_timeout_s=float(s.kafka_config("consumer").get("session.timeout.ms", 45_000))
        / 1000,
        metrics=metrics,
        monitor=monitor,
    )
    stack.callback(metrics.flush)
    stack.callback(rebalance.closing)
    retries = ParkedRetries(
        retry=retry,
        triage=triage,
        restore=local.restore,
        dispatcher=dispatcher,
        owned=owned,
        metrics=metrics,
        max_taken=min(s.batch_size * s.max_in_flight_requests, s.max_pending_events // 2),
    )
    return Parts(
        consumer,
        local.tables,
        triage,
        retries,
        sender,
        checkpoint,
        flow,
        rebalance,
        answers,
        local.space,
    )


def _open_local_state(
    stack: contextlib.ExitStack,
    s: Settings,
    *,
    codec: AvroCodec,
    reference: ReferenceTables,
    consumer_config: dict[str, Any],
    admin_config: dict[str, Any],
    transaction_timeout_s: float,
    metrics: Metrics,
    monitor: Monitor,
    stopping: threading.Event,
) -> LocalState:
    """Open the state store, catch the reference tables up, open the dedup and parked tables
    and the outbox; each step that writes waits while the store has no room."""

    def while_full(step: Callable[[], T]) -> T:
        return _while_state_full(step, metrics, monitor, stopping)

    store = _closing(stack, StateStore(s.state_dir, max_bytes=s.state_max_bytes))
    while_full(store.open)
    tables = _closing(
        stack, TableReader(reference.all(), consumer_config, store, admin_config=admin_config)
    )
    _wait_for_broker(admin_config, stopping, monitor)
    if stopping.is_set():
        raise StoppedWhileStarting
    monitor.starting("catching the reference tables up")
    took = while_full(lambda: tables.bootstrap(report=monitor.starting))
    for table in tables.tables:
        metrics.table_bootstrap_seconds.labels(table.name).set(took)
    monitor.tables(tables)
    dedup = Dedup(store, s.topics.results)
    while_full(dedup.create_table)
    parked = ParkedTable(store, s.topics.retry)
    while_full(parked.create_table)
    signals = SignalCounts(s.topics.signals, s.topics.triggered)
    restore = Recovery(
        dedup,
        parked,
        codec,
        consumer_config,
        admin_config,
        input_topic=s.topics.triggered,
        signals=signals,
        transaction_timeout_s=transaction_timeout_s,
        report_wait=monitor.waiting,
    )
    while_full(_closing(stack, restore).open)
    outbox = Outbox(store)
    while_full(outbox.open)
    space = StateSpace(
        store=store,
        dedup=dedup,
        parked=parked,
        max_parked_bytes=s.max_parked_bytes,
        metrics=metrics,
    )
    return LocalState(store, tables, dedup, parked, signals, restore, outbox, space)


def _wait_for_broker(
    admin_config: dict[str, Any], stopping: threading.Event, monitor: Monitor
) -> None:
    """Ask the broker for its metadata before anything else: one line (and `/readyz`) naming
    the broker and what fails, every few seconds, while it does not answer."""
    while not stopping.is_set():
        try:
            topic_partitions(admin_config, _BROKER_WAIT_S)
            return
        except BrokerUnavailableError as exc:
            problem = f"Kafka broker {exc.bootstrap} does not answer: {exc.reason}"
            monitor.starting(problem)
            log.warning("waiting: %s", problem)
            stopping.wait(_BROKER_WAIT_S)


def _while_state_full(
    step: Callable[[], T], metrics: Metrics, monitor: Monitor, stopping: threading.Event
) -> T:
    """Run a step of the start that writes the state store; while the store has no room, say
    so (log, `/readyz`, `capi_state_full`) and try again every few seconds: a full volume is
    waited for, never a crash loop."""
    while True:
        try:
            result = step()
        except StateFullError as exc:
            problem = f"no room for the local state: {exc}"
            monitor.starting(problem)
            metrics.state_full.set(1)
            log.warning("waiting: %s", problem)
            if stopping.wait(_BROKER_WAIT_S):
                raise StoppedWhileStarting from exc
            continue
        metrics.state_full.set(0)
        return result


def _wait_for_result_schema(codec: AvroCodec, topic: str, stopping: threading.Event) -> None:
    """The result schema's id, before anything is consumed: wait while the registry does not
    answer (no crash loop); stop when it answers that the schema is not registered."""
    while not stopping.is_set():
        try:
            codec.schema_id("ConversionResult", topic)
            return
        except SchemaUnavailableError as exc:
            log.warning("waiting for the schema registry: %s", exc)
            stopping.wait(REGISTRY_RETRY_S)
        except DecodeError as exc:
            raise FatalError(str(exc)) from exc


def _consumer_config(
    s: Settings, config: dict[str, Any], monitor: Monitor, owned: Ownership
) -> dict[str, Any]:
    return {
        "group.id": s.group_id,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "fetch.wait.max.ms": "100",  # latency: a quiet partition answers soon
        **READ_AHEAD,
        **config,
        # offsets are committed by the transactions, nothing else
        "enable.auto.commit": "false",
        "isolation.level": "read_committed",
        "statistics.interval.ms": "5000",
        "stats_cb": lambda stats: monitor.on_stats(stats, owned),
        **({"group.instance.id": s.instance_id} if s.static_membership else {}),
    }


class _Closable(Protocol):
    def close(self) -> Any: ...


C = TypeVar("C", bound=_Closable)
T = TypeVar("T")


def _closing(stack: contextlib.ExitStack, closable: C) -> C:
    stack.callback(_quietly, closable.close)
    return closable


def _quietly(close: Callable[[], Any]) -> None:
    try:
        close()
    except Exception:  # closing must go on whatever one part says
        log.exception("error while closing %s", getattr(close, "__self__", close))
