"""The publisher's transactions, with a fake producer that fails as librdkafka does: a commit
that times out is resumed, an abortable one replayed once in a new transaction, one refused
because the group moved on waits for the consumer to rejoin, one whose epoch the coordinator
ended goes on with a new producer, a fenced producer stops the instance and fences nobody
back, and an abort never answered after librdkafka logged the producer fenced stops it too, as
does a coordinator that closes the connection at each try of a commit or abort.

The embedded broker never refuses a transaction's offsets for a stale generation nor aborts a
timed-out transaction itself (it is not Apache Kafka): these errors are raised here with
librdkafka's own codes and flags, as its transaction manager reports them."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from consumer.errors import FencedError
from consumer.kafka.publisher import OutRecord, Publisher
from tests.unit.service.fakes import IN, TOPICS, FakeConsumer, FakeProducer

TIMED_OUT = KafkaError(KafkaError._TIMED_OUT, "slow", retriable=True)
ABORTABLE = KafkaError(KafkaError._STATE, "abort", txn_requires_abort=True)


class World:
    def __init__(self) -> None:
        self.producers: list[FakeProducer] = []
        self.producer_config: dict[str, Any] = {}
        self.consumer = FakeConsumer()
        self.now = 0.0
        self.transactions: list[str] = []  # what the publisher counted, in order

        def make(config: dict[str, Any]) -> FakeProducer:
            self.producers.append(FakeProducer())
            self.producer_config = config
            return self.producers[-1]

        self.publisher = Publisher(
            {},
            "txn-1",
            producer_factory=make,
            clock=lambda: self.now,
            count_transaction=self.transactions.append,
        )
        self.publisher.start()

    @property
    def producer(self) -> FakeProducer:
        return self.producers[-1]

    @property
    def producers_made(self) -> int:
        return len(self.producers)

    def publish(self, offset: int = 0, partition: int = 0, owned: Any = lambda p: True) -> bool:
        """A result of an input partition into the open transaction, committed with its
        offset."""
        self.publisher.produce(
            OutRecord(TOPICS.results, b"e", b"r%d" % offset, (IN, partition), partition=partition)
        )
        return self.publisher.commit(
            [TopicPartition(IN, partition, offset + 1)], self.consumer, owned
        )

    def committed_values(self) -> list[bytes | None]:
        return [value for p in self.producers for txn in p.committed for _, _, value in txn.records]


@pytest.fixture
def world() -> World:
    return World()


@pytest.mark.parametrize(
    ("errors", "transactions", "offsets_sent"),
    [
        ([TIMED_OUT], ["committed"], 1),
        ([TIMED_OUT, TIMED_OUT, TIMED_OUT], ["committed"], 1),
        ([ABORTABLE], ["aborted", "committed"], 2),
        ([TIMED_OUT, ABORTABLE], ["aborted", "committed"], 2),
    ],
    ids=[
        "timed out: the commit resumed, the offsets not sent again",
        "a broker away for a while: resumed until it answers",
        "abortable: replayed in a new transaction",
        "timed out, then aborted by the broker: replayed",
    ],
)
def test_a_failed_commit_publishes_the_same_records_once(world, errors, transactions, offsets_sent):
    world.producer.fail_commits = list(errors)
    world.publish()
    assert [t.state for t in world.producer.transactions] == transactions
    assert world.committed_values() == [b"r0"]
    assert world.producer.committed[0].offsets == [(IN, 0, 1)]
    assert world.producer.offsets_sent == offsets_sent


@pytest.mark.parametrize(
    "error",
    [
        KafkaError(KafkaError._FENCED, "fenced", fatal=True),
        KafkaError(KafkaError._FENCED, "fenced", txn_requires_abort=True),  # as Tansu reports it
        KafkaError(KafkaError.PRODUCER_FENCED, "fenced", txn_requires_abort=True),
    ],
    ids=["fatal", "abortable", "producer fenced"],
)
def test_a_fenced_producer_stops_the_instance_and_fences_nobody_back(world, error):
    world.producer.fail_commits = [error]
    with pytest.raises(FencedError, match="CAPI_INSTANCE_ID"):
        world.publish()
    assert world.producers_made == 1  # no new producer with the same transactional id
    assert world.producer.committed == []


def test_an_abort_that_times_out_is_resumed_not_replaced(world):
    world.producer.fail_commits = [ABORTABLE]
    world.producer.fail_aborts = [TIMED_OUT]
    world.publish()
    assert world.producers_made == 1
    assert [t.state for t in world.producer.transactions] == ["aborted", "committed"]
    assert world.committed_values() == [b"r0"]


def test_an_abort_unanswered_past_the_transaction_timeout_goes_on_with_a_new_producer(world):
    """A broker back from a stall longer than the transaction timeout may refuse the old
    producer's epoch bump for ever (the embedded broker answers it with an unknown error, and
    librdkafka's abort times out each time): the coordinator has aborted the transaction by
    then, so a new producer takes the id and the records are committed once."""
    stuck = world.producer
    stuck.fail_commits = [ABORTABLE]
    stuck.fail_aborts = [TIMED_OUT] * 100
    abort = stuck.abort_transaction

    def abort_taking_30_s(timeout: float = -1) -> None:
        world.now += 30  # librdkafka's abort waits out its timeout
        abort(timeout)

    stuck.abort_transaction = abort_taking_30_s
    assert world.publish()
    assert len(stuck.fail_aborts) == 98  # given up at 60 s, the transaction timeout
    assert world.producers_made == 2
    assert world.committed_values() == [b"r0"]
    assert world.producer.committed[0].offsets == [(IN, 0, 1)]


def _fenced_in_the_background(world: World, why: str) -> None:
    """A transaction open, and librdkafka's log saying that a request it made for it in the
    background was refused as fenced (`why`)."""
    world.publisher.produce(OutRecord(TOPICS.results, None, b"r", (IN, 0)))
    world.producer_config["logger"].log(40, "%s [%s] %s", "TXNERR", "rdkafka#producer-1", why)


def test_an_abort_never_answered_after_librdkafka_logged_the_producer_fenced_stops_it(world):
    """A request librdkafka makes in the background (a transaction's offsets) refused as
    fenced shows in its log alone, and the abort that follows may never be answered (Tansu
    drops a fenced producer's connection): lost partitions then stop the instance as fenced,
    instead of retrying the abort for ever."""
    _fenced_in_the_background(
        world,
        "Current transaction failed in state InTransaction: Failed to commit offsets to "
        "transaction (Broker: There is a newer producer with the same transactionalId) (_FENCED)",
    )
    world.producer.fail_aborts = [TIMED_OUT] * 100
    with pytest.raises(FencedError, match="CAPI_INSTANCE_ID"):
        world.publisher.redo(lambda p: False, [TopicPartition(IN, 0)], world.consumer)
    assert len(world.producer.fail_aborts) == 99  # stopped at the first unanswered abort
    assert world.producers_made == 1
    assert world.producer.committed == []


def test_a_record_refused_after_a_background_request_was_fenced_stops_it_as_fenced(world):
    """librdkafka refuses every record with `_FATAL` once a request of the transaction made in
    the background (its partitions added) was refused as fenced: the produce stops the
    instance as fenced, as a commit would, instead of ending it with the binding's exception."""
    _fenced_in_the_background(
        world,
        "Fatal transaction error: Failed to add partitions to transaction: Local: This instance "
        "has been fenced by a newer instance (_FENCED)",
    )

    def refused(*args: Any, **kwargs: Any) -> None:
        raise KafkaException(KafkaError(KafkaError._FATAL, "Unable to produce message"))

    world.producer.produce = refused
    with pytest.raises(FencedError, match="CAPI_INSTANCE_ID"):
        world.publisher.produce(OutRecord(TOPICS.results, None, b"r", (IN, 0)))
    assert world.producers_made == 1  # no new producer with the same transactional id


def test_other_librdkafka_log_lines_do_not_stop_an_unanswered_abort(world):
    world.publisher.produce(OutRecord(TOPICS.results, None, b"r", (IN, 0)))
    world.producer_config["logger"].log(
        40, "%s [%s] %s", "FAIL", "rdkafka#producer-1", "Disconnected (_TRANSPORT)"
    )
    world.producer.fail_aborts = [TIMED_OUT]
    world.publisher.redo(lambda p: False, [TopicPartition(IN, 0)], world.consumer)
    assert world.producer.transactions[0].state == "aborted"  # resumed, then done


def _coordinator_closes(world: World, suppressed: int = 0) -> None:
    """librdkafka's line for a transaction coordinator that closed the connection, as it
    writes it after `suppressed` identical ones."""
    left_out = f", {suppressed} identical error(s) suppressed" if suppressed else ""
    world.producer_config["logger"].log(
        20,
        "%s [%s] %s",
        "FAIL",
        "rdkafka#producer-1",
        "[thrd:TxnCoordinator]: TxnCoordinator: 127.0.0.1:9092: Disconnected: connection closed "
        f"by peer: receive 0 after POLLIN (after 0ms in state UP{left_out})",
    )


def _closing_at_each_try(world: World, call: str, suppressed: int) -> None:
    """Each try of the producer's `call` (commit or abort) that fails times out while
    librdkafka logs the coordinator closing the connection, `suppressed` more times left out
    of the line."""
    stuck = world.producer
    made = getattr(stuck, call)
    failures = "fail_commits" if call == "commit_transaction" else "fail_aborts"

    def closed_then(timeout: float = -1) -> None:
        if getattr(stuck, failures):  # read at each try: a test may give the list anew
            _coordinator_closes(world, suppressed)
        made(timeout)

    setattr(stuck, call, closed_then)


def test_a_commit_the_coordinator_closes_the_connection_on_stops_it_as_fenced(world):
    """The embedded broker closes the connection of a producer fenced by another with its
    transactional id each time it ends the transaction, where Apache Kafka answers
    PRODUCER_FENCED; librdkafka tries again for ever and the commit only times out. Seen in
    the two-instances chaos test, the first instance frozen in the middle of a commit: three
    closes within one commit stop the instance as fenced, and nobody is fenced back."""
    world.producer.fail_commits = [TIMED_OUT] * 100
    _closing_at_each_try(world, "commit_transaction", suppressed=9)
    with pytest.raises(FencedError, match="CAPI_INSTANCE_ID"):
        world.publish()
    assert len(world.producer.fail_commits) == 99  # stopped at the first try that said so
    assert world.producers_made == 1
    assert world.producer.committed == []


def test_an_abort_the_coordinator_closes_the_connection_on_stops_it_as_fenced(world):
    """The same answer to an abort: the instance stops as fenced, where a wait past the
    transaction timeout would have started a new producer and fenced the other back."""
    world.producer.fail_commits = [ABORTABLE]
    world.producer.fail_aborts = [TIMED_OUT] * 100
    _closing_at_each_try(world, "abort_transaction", suppressed=0)
    with pytest.raises(FencedError, match="CAPI_INSTANCE_ID"):
        world.publish()
    assert len(world.producer.fail_aborts) == 97  # the third close
    assert world.producers_made == 1


def test_a_coordinator_closing_the_connection_twice_in_each_commit_is_waited_for(world):
    """A broker that restarts closes the connection once, then refuses it: the commit waits as
    for any broker away, and the closes of one commit do not add up with the next one's."""
    _closing_at_each_try(world, "commit_transaction", suppressed=1)
    for offset in range(2):
        world.producer.fail_commits = [TIMED_OUT]  # two closes, one of them left out
        assert world.publish(offset)
    assert world.committed_values() == [b"r0", b"r1"]
    assert world.producers_made == 1


def test_closes_of_an_idle_connection_between_commits_do_not_count(world):
    """A broker closes connections idle for long (Kafka's `connections.max.idle.ms`): closes
    between commits, however many, are not counted, and a commit that then times out waits."""
    for _ in range(3):
        _coordinator_closes(world)
    world.producer.fail_commits = [TIMED_OUT]
    assert world.publish()
    assert world.committed_values() == [b"r0"]


GROUP_MOVED_ON = [
    KafkaError(KafkaError.ILLEGAL_GENERATION, "stale generation", txn_requires_abort=True),
    KafkaError(KafkaError.UNKNOWN_MEMBER_ID, "unknown member", txn_requires_abort=True),
    KafkaError(KafkaError.FENCED_INSTANCE_ID, "instance fenced", txn_requires_abort=True),
]


@pytest.mark.parametrize("error", GROUP_MOVED_ON, ids=lambda e: e.name())
def test_offsets_refused_because_the_group_moved_on_wait_for_the_consumer_to_rejoin(world, error):
    """A session that expired while the commit waited for the broker: the same offsets with
    the same group metadata can only be refused again, so nothing is produced or sent until
    the consumer has polled and rejoined; then the same records commit once."""
    world.producer.fail_offsets = [error]
    assert world.publish(0) is False
    assert [t.state for t in world.producer.transactions] == ["aborted"]
    assert world.transactions.count("aborted") == 1
    # the loop goes on turning: more results, commits due, the consumer not rejoined yet
    for offset in (1, 2, 3):
        assert world.publish(offset) is False
    assert [t.state for t in world.producer.transactions] == ["aborted"]  # no busy loop
    assert world.producer.offsets_sent == 1
    world.consumer.generation += 1  # polled: rejoined with a new generation
    assert world.publisher.commit([], world.consumer, lambda p: True) is True
    assert world.committed_values() == [b"r0", b"r1", b"r2", b"r3"]
    assert world.producer.committed[0].offsets == [(IN, 0, 4)]
    assert world.publisher.pending == 0


def test_partitions_lost_while_the_group_moved_on_are_not_committed(world):
    world.producer.fail_offsets = [GROUP_MOVED_ON[0]]
    world.publish(0, partition=0)
    world.publish(7, partition=1)
    still_ours = {(IN, 1)}.__contains__
    world.publisher.redo(still_ours, [TopicPartition(IN, 0)], world.consumer)  # on_lost
    world.consumer.generation += 1
    assert world.publisher.commit([], world.consumer, still_ours) is True
    assert world.committed_values() == [b"r7"]
    assert world.producer.committed[0].offsets == [(IN, 1, 8)]


EPOCH_ENDED = [
    KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, "old epoch", fatal=True),
    # as librdkafka reports it: normalized to _FENCED, the broker's error in the message
    KafkaError(
        KafkaError._FENCED,
        "Failed to end transaction: Broker: Producer attempted an operation with an old epoch",
        fatal=True,
    ),
]


@pytest.mark.parametrize("error", EPOCH_ENDED, ids=["INVALID_PRODUCER_EPOCH", "_FENCED"])
def test_a_transaction_the_coordinator_aborted_goes_on_with_a_new_producer(world, error):
    """A broker stall past `transaction.timeout.ms`: the coordinator aborted the transaction
    and bumped the epoch. That is no other instance: a new producer takes the id and the same
    records commit once, instead of the instance stopping as fenced."""
    world.producer.fail_commits = [error]
    assert world.publish(0) is True
    assert world.producers_made == 2
    assert world.committed_values() == [b"r0"]
    assert world.producer.committed[0].offsets == [(IN, 0, 1)]
    assert world.transactions.count("aborted") == 1


def test_the_epoch_ended_again_soon_after_a_new_producer_is_fencing(world):
    """Two producers with the same transactional id end each other's epochs: the second end
    within ten minutes stops this one as fenced instead of fencing the other back; one long
    after is a coordinator's abort again."""
    world.producer.fail_commits = [EPOCH_ENDED[0]]
    world.publish(0)
    world.now += 700
    world.producer.fail_commits = [EPOCH_ENDED[0]]
    world.publish(1)
    assert world.producers_made == 3
    world.now += 60
    world.producer.fail_commits = [EPOCH_ENDED[0]]
    with pytest.raises(FencedError, match="CAPI_INSTANCE_ID"):
        world.publish(2)
    assert world.producers_made == 3
    assert world.committed_values() == [b"r0", b"r1"]


def test_a_producer_fenced_by_another_is_still_reported_as_fencing(world):
    world.producer.fail_commits = [
        KafkaError(
            KafkaError._FENCED,
            "Broker: There is a newer producer with the same transactionalId which fences the "
            "current one",
            fatal=True,
        )
    ]
    with pytest.raises(FencedError):
        world.publish(0)
    assert world.producers_made == 1


def test_init_transactions_waits_for_a_broker_that_does_not_answer(world):
    producer = FakeProducer()
    producer.fail_inits = [TIMED_OUT]
    publisher = Publisher({}, "txn-2", producer_factory=lambda c: producer)
    publisher.start()
    assert producer.fail_inits == []
