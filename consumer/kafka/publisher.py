"""Publishing results and dead letters with the input offsets, atomically.

One Kafka transaction at a time: every record goes into the open transaction and is also kept
in memory until the transaction commits together with the consumed offsets
(`send_offsets_to_transaction`). A reader with `isolation.level=read_committed` therefore sees a
result exactly when its input offset is committed, and never twice.

A commit that times out (a broker that stopped answering) is resumed in the phase that failed:
the offsets are not sent again while the commit is in progress, and it is retried with growing
pauses for as long as the broker stays away (the liveness check says when the loop is stuck).
When a commit fails with an abortable error (a transaction timeout), the transaction is aborted
and the same records are produced again in a new one, so nothing that was already sent to Meta
has to be sent again; records whose partitions are no longer ours are dropped instead (the new
owner processes those inputs again). A fatal error, above all a producer fenced by another one
with the same `transactional.id`, stops the instance (`FencedError`, `FatalError`): it never
fences the other back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from consumer.errors import FatalError, FencedError
from consumer.kafka.clients import FENCED, InputConsumer, TransactionalProducer

__all__ = ["OutRecord", "Publisher"]

log = logging.getLogger(__name__)

DeliveryCallback = Callable[[KafkaError | None, Message], None]


_RETRY_PAUSE_MAX_S = 5.0


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to produce in the open transaction, and the input partition it answers for."""

    topic: str
    key: bytes | None
    value: bytes | None
    source: tuple[str, int]  # the input partition this record answers for
    partition: int | None = None
    headers: list[tuple[str, str | bytes | None]] | None = None
    on_delivery: DeliveryCallback | None = None


class Publisher:
    """Results and dead letters in Kafka transactions committed with the input offsets; keeps
    each open transaction's records to produce them again when the transaction is lost."""

    def __init__(
        self,
        config: Mapping[str, Any],
        transactional_id: str,
        *,
        producer_factory: Callable[[dict[str, Any]], TransactionalProducer] = Producer,
    ) -> None:
        self._txn_log = _TransactionLog(config.get("logger") or logging.getLogger("librdkafka"))
        self._config = {
            "linger.ms": "5",
            "compression.type": "lz4",
            **config,
            "logger": self._txn_log,
            "transactional.id": transactional_id,
            "enable.idempotence": "true",
            "acks": "all",
        }
        self._transactional_id = transactional_id
        self._fenced = False
        self._producer_factory = producer_factory
        self._producer: TransactionalProducer | None = None
        self._pending: list[OutRecord] = []
        self._open = False
        self.commits = 0
        self.aborts = 0

    def start(self) -> None:
        self._producer = self._producer_factory(self._config)
        self._producer.init_transactions(60)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def produce(self, record: OutRecord) -> None:
        self._pending.append(record)
        self._send(record)

    def _send(self, record: OutRecord) -> None:
        producer = self._ensure_open()
        kwargs: dict[str, Any] = {"key": record.key, "value": record.value}
        if record.partition is not None:
            kwargs["partition"] = record.partition
        if record.headers:
            kwargs["headers"] = record.headers
        if record.on_delivery is not None:
            kwargs["on_delivery"] = record.on_delivery
        while True:
            try:
                producer.produce(record.topic, **kwargs)
                return
            except BufferError:
                producer.poll(0.05)

    def _ensure_open(self) -> TransactionalProducer:
        assert self._producer is not None, "publisher not started"
        if not self._open:
            self._producer.begin_transaction()
            self._open = True
        return self._producer

    def poll(self) -> None:
        if self._producer is not None:
            self._producer.poll(0)

    def commit(
        self,
        offsets: list[TopicPartition],
        consumer: InputConsumer,
        owned: Callable[[tuple[str, int]], bool],
    ) -> None:
        """Commit the open transaction with `offsets`; resume, abort and replay, as needed.

        `owned` says whether an input partition is still ours; records and offsets of
        partitions that are not are dropped when the transaction must be redone.
        """
        if not self._pending and not offsets:
            return
        offsets_sent = False
        pause = 0.5
        while True:
            producer = self._ensure_open()
            try:
                if offsets and not offsets_sent:
                    producer.send_offsets_to_transaction(
                        offsets, consumer.consumer_group_metadata(), 30
                    )
                    offsets_sent = True
                producer.commit_transaction(30)
            except KafkaException as exc:
                error = self._unless_fatal(exc)
                if error.retriable() and not error.txn_requires_abort():
                    # the phase that failed is resumed: offsets already sent are not sent again
                    log.warning(
                        "transaction commit not done yet (%s): retrying in %.1f s",
                        error.str(),
                        pause,
                    )
                    time.sleep(pause)
                    pause = min(pause * 2, _RETRY_PAUSE_MAX_S)
                    continue
                self.aborts += 1
                log.warning("transaction aborted (%s): producing its records again", error)
                self._abort_and_replay(owned)
                offsets = [tp for tp in offsets if owned((tp.topic, tp.partition))]
                offsets_sent = False
                continue
            self._open = False
            self._pending.clear()
            self.commits += 1
            return

    def _unless_fatal(self, exc: KafkaException) -> KafkaError:
        """The error of `exc`; raised as `FencedError` or `FatalError` when this producer is
        done (brokers report fencing as fatal or as abortable)."""
        error: KafkaError = exc.args[0]
        if error.fatal() or error.code() in FENCED or self._txn_log.fenced:
            raise self._fatal(error) from exc
        return error

    def _fatal(self, error: KafkaError) -> FatalError:
        self._fenced = True  # whatever the error, this producer is done
        if error.code() in FENCED or self._txn_log.fenced:
            return FencedError(
                f"producer fenced: another instance uses the transactional id "
                f"{self._transactional_id} (CAPI_INSTANCE_ID must differ between instances)"
            )
        return FatalError(f"transactional producer failed: {error}")

    def redo(
        self,
        owned: Callable[[tuple[str, int]], bool],
        lost: list[TopicPartition],
        consumer: InputConsumer,
    ) -> None:
        """Partitions were `lost`: abort the open transaction and produce again what is still
        ours. Lost partitions may mean this process stood still and was replaced by one with
        the same transactional id; the abort asks the coordinator, which refuses a fenced
        producer. With no transaction open, the lost partitions' committed offsets (unchanged)
        go to a transaction aborted at once, to ask it all the same: a fenced producer stops
        now, before it sends anything more to Meta, not at its next commit."""
        if not self._open:
            self._ask_coordinator(lost, consumer)
        if self._open:
            self._abort_and_replay(owned)

    def _ask_coordinator(self, lost: list[TopicPartition], consumer: InputConsumer) -> None:
        try:
            offsets = [tp for tp in consumer.committed(lost, timeout=10) if tp.offset >= 0]
        except KafkaException as exc:
            log.warning("committed offsets not read (%s): fencing checked at the next commit", exc)
            return
        if not offsets:
            return
        producer = self._ensure_open()
        try:
            producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        except KafkaException as exc:
            self._unless_fatal(exc)  # anything else (a stale generation) is not the question

    def _abort_and_replay(self, owned: Callable[[tuple[str, int]], bool]) -> None:
        assert self._producer is not None
        pause = 0.5
        while True:
            try:
                self._producer.abort_transaction(30)
                break
            except KafkaException as exc:
                self._producer.poll(0)  # librdkafka's log, where fencing may show (see below)
                error = self._unless_fatal(exc)
                if not error.retriable():
                    raise FatalError(f"transaction not aborted: {error}") from exc
                # resumed, never replaced: a new producer with this id would fence ours
                log.warning(
                    "transaction abort not done yet (%s): retrying in %.1f s", error.str(), pause
                )
                time.sleep(pause)
                pause = min(pause * 2, _RETRY_PAUSE_MAX_S)
        self._replay(owned)

    def _replay(self, owned: Callable[[tuple[str, int]], bool]) -> None:
        """The transaction is gone: produce its records again in a new one, but for those of
        partitions no longer ours."""
        self._open = False
        kept = [r for r in self._pending if owned(r.source)]
        dropped = len(self._pending) - len(kept)
        if dropped:
            log.warning("dropped %d records of partitions no longer ours", dropped)
        self._pending = []
        for record in kept:
            self.produce(record)

    def close(self) -> None:
        if self._producer is None:
            return
        if self._open and not self._fenced:  # a fenced producer can abort nothing
            try:
                self._producer.abort_transaction(10)
            except KafkaException as exc:
                log.warning("abort at close failed: %s", exc)
        if not self._fenced:  # a fenced producer's queue is lost with its transaction
            self._producer.flush(5)
        self._producer = None


class _TransactionLog:
    """librdkafka's log of the producer, passed on to `logger`, noting whether it reported the
    open transaction refused because another producer took the transactional id. A request
    librdkafka makes in the background (the offsets of a transaction) is refused so in its log
    alone; the abort that follows may then never be answered (the coordinator drops a fenced
    producer's connection), and only this note says why."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger
        self.fenced = False

    def log(self, level: int, message: str, *args: Any) -> None:
        """librdkafka's call: `message` formats (facility, client name, text)."""
        if len(args) == 3 and args[0] == "TXNERR" and "(_FENCED)" in str(args[2]):
            self.fenced = True
        self._logger.log(level, message, *args)
