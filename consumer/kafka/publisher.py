"""Publishing results and dead letters with the input offsets, atomically.

One Kafka transaction at a time: every record goes into the open transaction and is also kept
in memory until the transaction commits together with the consumed offsets
(`send_offsets_to_transaction`). A reader with `isolation.level=read_committed` therefore sees a
result exactly when its input offset is committed, and never twice.

How a commit that fails goes on:
- Timed out (a broker that stopped answering): resumed in the phase that failed, the offsets not
  sent again, with growing pauses for as long as the broker stays away.
- Abortable (a transaction the broker refused): aborted, and the same records produced again in
  a new transaction, so nothing already sent to Meta has to be sent again; records of partitions
  no longer ours are dropped instead (the new owner processes those inputs again).
- The group moved on (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID: this member's
  session expired while the commit waited): aborted, and the records and offsets kept until the
  consumer has polled and rejoined; `commit` says False until then. Sending the same offsets
  with the same group metadata again could only fail again.
- The coordinator ended the producer's epoch itself (INVALID_PRODUCER_EPOCH: it aborted a
  transaction past `transaction.timeout.ms`): a new producer takes the transactional id and the
  records are produced again; a second such end within `_EPOCH_RESTART_SPACING_S` is taken for
  what it then is, another producer with the same id.
- An abort the broker leaves unanswered past `transaction.timeout.ms` (a broker back from a
  long stall may refuse the producer's epoch bump for ever): the coordinator has aborted the
  transaction itself by then, so a new producer takes the transactional id and the records are
  produced again.
- Fatal, above all a producer fenced by another one with the same `transactional.id`: the
  instance stops (`FencedError`, `FatalError`); it never fences the other back. A coordinator
  that closes the connection each time the commit or abort is tried again, instead of
  answering, is taken for fencing too (`_TransactionLog`): it is how some brokers answer a
  fenced producer, and waiting would be for ever.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from consumer.errors import FatalError, FencedError
from consumer.kafka.broker_wait import Pauses, until_answered
from consumer.kafka.clients import FENCED, GROUP_MOVED_ON, InputConsumer, TransactionalProducer

__all__ = ["OutRecord", "Publisher"]

log = logging.getLogger(__name__)

DeliveryCallback = Callable[[KafkaError | None, Message], None]


# a coordinator's abort of a timed-out transaction starts a new producer at most this often;
# another one sooner means another producer holds the transactional id
_EPOCH_RESTART_SPACING_S = 600.0
# librdkafka's description of INVALID_PRODUCER_EPOCH, kept in the message of the `_FENCED`
# error it reports it as
_OLD_EPOCH = "old epoch"
# librdkafka's line for a transaction coordinator that closed the connection (after connecting:
# "refused" is another line), and how many identical lines it left out before it
_COORDINATOR_CLOSED = re.compile(
    r"\]: TxnCoordinator: .*Disconnected: connection closed by peer"
    r"(?:.*?(\d+) identical error\(s\) suppressed)?"
)
# closes within one commit or abort taken for the coordinator's answer to a fenced producer
_CLOSES_TAKEN_FOR_FENCING = 3


class _Failure(enum.Enum):
    """What a failed commit calls for."""

    RESUME = "resume"  # timed out: call again, the phase that failed goes on
    REDO = "redo"  # abortable: abort, produce the records again
    REJOIN = "rejoin"  # the group moved on: abort, wait until the consumer has rejoined
    RESTART = "restart"  # the coordinator ended the producer's epoch: a new producer


@dataclass(slots=True)
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
        clock: Callable[[], float] = time.monotonic,
        report_wait: Callable[[str], None] = lambda what: None,
        count_transaction: Callable[[str], None] = lambda outcome: None,
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
        self._offsets: dict[tuple[str, int], TopicPartition] = {}
        self._open = False
        # the group metadata the offsets were refused with: nothing is produced or committed
        # until the consumer's differs (it has polled and rejoined)
        self._stale_group: Any = None
        self._clock = clock
        self._report_wait = report_wait  # told what the publisher waits for, at each pause
        self._count_transaction = count_transaction  # told "committed" or "aborted", each time
        self._restarted_at: float | None = None
        # an abort unanswered this long is given up: the coordinator has aborted it itself
        self._abort_patience_s = float(self._config.get("transaction.timeout.ms", 60_000)) / 1000

    def start(self) -> None:
        """A producer with the transactional id, its transactions initialized (fencing any
        earlier producer with the id); waits for a broker that does not answer."""
        producer = self._producer = self._producer_factory(self._config)
        try:
            until_answered(
                lambda: producer.init_transactions(60),
                "the broker to initialize transactions",
                self._report_wait,
                again=KafkaError.retriable,
            )
        except KafkaException as exc:
            raise FatalError(f"transactions not initialized: {exc.args[0]}") from exc

    @property
    def pending(self) -> int:
        return len(self._pending)

    def produce(self, record: OutRecord) -> None:
        self._pending.append(record)
        if self._stale_group is None:  # else produced when the consumer has rejoined
            self._send(record)

    def _send(self, record: OutRecord) -> None:
        producer = self._ensure_open()
        partition = -1 if record.partition is None else record.partition  # -1: the partitioner's
        while True:
            try:
                # every argument by position: the binding parses keywords, any one of them, at
                # a cost per record (topic, value, key, partition, callback: the binding's name
                # for on_delivery, on_delivery, timestamp: 0 for now, headers)
                producer.produce(
                    record.topic,
                    record.value,
                    record.key,
                    partition,
                    record.on_delivery,
                    None,
                    0,
                    record.headers or None,
                )
                return
            except BufferError:
                producer.poll(0.05)
            except KafkaException as exc:
                # a producer that hit a fatal error (fenced, most often, by a background
                # request of the transaction) refuses every record with `_FATAL`: its log,
                # served by a poll, says why, and the commit's own translation applies
                if exc.args[0].code() != KafkaError._FATAL:  # noqa: SLF001
                    raise
                producer.poll(0)
                raise self._fatal(exc.args[0]) from exc

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
    ) -> bool:
        """Commit the open transaction with `offsets`; resume, abort and replay, as needed.

        `owned` says whether an input partition is still ours; records and offsets of
        partitions that are not are dropped when the transaction must be redone. False when
        the group moved on without this member: the records and offsets are kept, and a
        commit after the consumer has polled and rejoined the group commits them.
        """
        self._offsets.update({(tp.topic, tp.partition): tp for tp in offsets})
        if not self._pending and not self._offsets:
            return True
        if self._stale_group is not None:
            if consumer.consumer_group_metadata() == self._stale_group:
                return False
            log.info("the consumer rejoined the group: producing the aborted records again")
            self._stale_group = None
            self._replay(owned)
        with self._txn_log.counting_closes():
            return self._commit_open(consumer, owned)

    def _commit_open(
        self, consumer: InputConsumer, owned: Callable[[tuple[str, int]], bool]
    ) -> bool:
        """`commit`'s tries, until the transaction commits or the group has moved on."""
        offsets_sent = False
        pauses = Pauses(self._report_wait)
        while True:
            producer = self._ensure_open()
            group = consumer.consumer_group_metadata()
            try:
                if not offsets_sent:
                    self._offsets = {k: tp for k, tp in self._offsets.items() if owned(k)}
                    if self._offsets:
                        positions = list(self._offsets.values())
                        producer.send_offsets_to_transaction(positions, group, 30)
                    offsets_sent = True
                producer.commit_transaction(30)
            except KafkaException as exc:
                producer.poll(0)  # librdkafka's log, where fencing may show (`_TransactionLog`)
                error = exc.args[0]
                failure = self._failure(error)
                if failure is _Failure.RESUME:
                    # the phase that failed is resumed: offsets already sent are not sent again
                    pauses.pause(f"the broker to commit the transaction ({error.str()})")
                    continue
                self._count_transaction("aborted")
                offsets_sent = False
                if failure is _Failure.RESTART:
                    self._restart(error)
                    self._replay(owned)
                    continue
                self._abort()
                if failure is _Failure.REJOIN:
                    log.warning(
                        "transaction aborted: the group moved on without this member (%s); "
                        "its %d records wait until the consumer has rejoined",
                        error.str(),
                        len(self._pending),
                    )
                    self._stale_group = group
                    return False
                log.warning("transaction aborted (%s): producing its records again", error)
                self._replay(owned)
                continue
            self._open = False
            self._pending.clear()
            self._offsets.clear()
            self._count_transaction("committed")
            return True

    def _failure(self, error: KafkaError) -> _Failure:
        """What a failed commit calls for; raises `FencedError` or `FatalError` when this
        producer is done."""
        if self._epoch_ended_by_coordinator(error):
            return _Failure.RESTART
        error = self._unless_fatal(error)
        if error.retriable() and not error.txn_requires_abort():
            return _Failure.RESUME
        if error.code() in GROUP_MOVED_ON:
            return _Failure.REJOIN
        return _Failure.REDO

    def _epoch_ended_by_coordinator(self, error: KafkaError) -> bool:
        """The coordinator aborted a transaction past its timeout and bumped the producer's
        epoch: librdkafka reports it as fencing, with the broker's INVALID_PRODUCER_EPOCH in
        its message, where another producer with this id gives PRODUCER_FENCED."""
        if error.code() == KafkaError.INVALID_PRODUCER_EPOCH:
            return True
        return error.code() in FENCED and _OLD_EPOCH in f"{error.str()} {self._txn_log.fenced_line}"

    def _restart(self, error: KafkaError) -> None:
        """A new producer for this transactional id, the old one's transaction aborted by the
        coordinator already; the second time within the spacing is fencing."""
        now = self._clock()
        if self._restarted_at is not None and now - self._restarted_at < _EPOCH_RESTART_SPACING_S:
            raise self._fatal(KafkaError(KafkaError.PRODUCER_FENCED, error.str(), fatal=True))
        self._restarted_at = now
        self._new_producer(
            f"the transaction coordinator aborted the open transaction ({error.str()})"
        )

    def _new_producer(self, why: str) -> None:
        """The open transaction is gone (`why`): a new producer takes the transactional id,
        fencing the old one, which is dropped; its records are produced again by the caller."""
        log.warning(
            "%s: a new producer takes the transactional id and produces its %d records again",
            why,
            len(self._pending),
        )
        self._txn_log.forget()
        self._open = False
        self._producer = None
        self.start()

    def _unless_fatal(self, error: KafkaError) -> KafkaError:
        """`error`, unless this producer is done: then raised as `FencedError` or `FatalError`
        (brokers report fencing as fatal or as abortable)."""
        if error.fatal() or error.code() in FENCED or self._txn_log.fencing():
            raise self._fatal(error)
        return error

    def _fatal(self, error: KafkaError) -> FatalError:
        self._fenced = True  # whatever the error, this producer is done
        said = self._txn_log.fencing()
        if said:
            log.error("taken for fencing, from librdkafka's log: %s", said)
        if error.code() in FENCED or said:
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
        if not self._open and self._stale_group is None:
            self._ask_coordinator(lost, consumer)
        self._abort()
        self._replay(owned)

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
            # fencing raises; a stale generation is not the question, the abort follows
            if self._failure(exc.args[0]) is _Failure.RESTART:
                self._restart(exc.args[0])

    def _abort(self) -> None:
        """Abort the open transaction, its records kept to be produced again. Resumed while
        the broker does not answer; given up for a new producer once the coordinator has
        aborted the transaction itself (past the transaction timeout)."""
        with self._txn_log.counting_closes():
            self._abort_open()

    def _abort_open(self) -> None:
        """`_abort`'s tries, until the transaction is aborted or given up."""
        pauses = Pauses(self._report_wait)
        started = self._clock()
        while self._open:
            assert self._producer is not None
            try:
                self._producer.abort_transaction(30)
                self._open = False
            except KafkaException as exc:
                self._producer.poll(0)  # librdkafka's log, where fencing may show (see below)
                error = exc.args[0]
                if self._failure(error) is _Failure.RESTART:
                    self._restart(error)  # the coordinator aborted it already
                    return
                if not error.retriable():
                    raise FatalError(f"transaction not aborted: {error}") from exc
                waited = self._clock() - started
                if waited >= self._abort_patience_s:
                    self._new_producer(
                        f"the transaction was not aborted in {waited:.0f} s ({error.str()}); "
                        f"the coordinator has aborted it by now"
                    )
                    return
                pauses.pause(f"the broker to abort the transaction ({error.str()})")

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
    """librdkafka's log of the producer, passed on to `logger`, keeping what says the producer
    was fenced (`fencing`):
    - the line that reported the open transaction refused as fenced (`fenced_line`). A request
      librdkafka makes in the background (the offsets of a transaction) is refused so in its
      log alone; the abort that follows may then never be answered, and only this line says
      why, and whether the broker's error was another producer's (PRODUCER_FENCED) or the
      coordinator's own abort (INVALID_PRODUCER_EPOCH);
    - the transaction coordinator closing the connection as a commit or abort is tried again,
      counted while the publisher tries one (`counting_closes`). Some brokers (the embedded one)
      answer a fenced producer's end of a transaction so, where Apache Kafka answers
      PRODUCER_FENCED; librdkafka tries again for ever and the call only times out. A broker
      that restarts closes the connection once, then refuses it; one that closes idle
      connections does so between commits, uncounted."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger
        self.fenced_line = ""
        self._closes: int | None = None  # None: no commit or abort is being tried

    @contextlib.contextmanager
    def counting_closes(self) -> Iterator[None]:
        """The coordinator's closes counted while a commit or abort is tried (an abort within
        a commit counts its own, then the commit's go on)."""
        outer, self._closes = self._closes, 0
        try:
            yield
        finally:
            self._closes = outer

    def fencing(self) -> str:
        """What the log says of this producer being fenced; empty when nothing."""
        if self.fenced_line:
            return self.fenced_line
        if self._closes is not None and self._closes >= _CLOSES_TAKEN_FOR_FENCING:
            return (
                f"the transaction coordinator closed the connection {self._closes} times "
                f"instead of answering (_FENCED)"
            )
        return ""

    def forget(self) -> None:
        """A new producer: nothing the old one's log said counts."""
        self.fenced_line = ""
        if self._closes is not None:
            self._closes = 0

    def log(self, level: int, message: str, *args: Any) -> None:
        """librdkafka's call: `message` formats (facility, client name, text)."""
        if len(args) == 3:
            self._note(str(args[0]), str(args[2]))
        self._logger.log(level, message, *args)

    def _note(self, facility: str, text: str) -> None:
        if facility == "TXNERR" and "(_FENCED)" in text:
            self.fenced_line = text
        elif facility == "FAIL" and self._closes is not None:
            closed = _COORDINATOR_CLOSED.search(text)
            if closed:
                self._closes += 1 + int(closed.group(1) or 0)
