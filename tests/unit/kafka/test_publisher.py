"""The publisher's transactions, with a fake producer that fails as librdkafka does: a commit
that times out is resumed, an abortable one replayed once in a new transaction, a fenced
producer stops the instance and fences nobody back, and an abort never answered after
librdkafka logged the producer fenced stops it too."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from consumer.errors import FencedError
from consumer.kafka.publisher import OutRecord, Publisher
from tests.unit.service.fakes import IN, TOPICS, FakeConsumer, FakeProducer

TIMED_OUT = KafkaError(KafkaError._TIMED_OUT, "slow", retriable=True)
ABORTABLE = KafkaError(KafkaError._STATE, "abort", txn_requires_abort=True)


class World:
    def __init__(self) -> None:
        self.producer = FakeProducer()
        self.producers_made = 0
        self.producer_config: dict[str, Any] = {}
        self.consumer = FakeConsumer()

        def make(config: dict[str, Any]) -> FakeProducer:
            self.producers_made += 1
            self.producer_config = config
            return self.producer

        self.publisher = Publisher({}, "txn-1", producer_factory=make)
        self.publisher.start()

    def publish(self, offset: int = 0) -> None:
        """A result of input partition 0 into the open transaction, committed with its offset."""
        self.publisher.produce(
            OutRecord(TOPICS.results, b"e", b"r%d" % offset, (IN, 0), partition=0)
        )
        self.publisher.commit([TopicPartition(IN, 0, offset + 1)], self.consumer, lambda p: True)

    def committed_values(self) -> list[bytes | None]:
        return [value for txn in self.producer.committed for _, _, value in txn.records]


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


def test_an_abort_never_answered_after_librdkafka_logged_the_producer_fenced_stops_it(world):
    """A request librdkafka makes in the background (a transaction's offsets) refused as
    fenced shows in its log alone, and the abort that follows may never be answered (Tansu
    drops a fenced producer's connection): lost partitions then stop the instance as fenced,
    instead of retrying the abort for ever."""
    world.publisher.produce(OutRecord(TOPICS.results, None, b"r", (IN, 0)))  # a transaction open
    world.producer_config["logger"].log(
        40,
        "%s [%s] %s",
        "TXNERR",
        "rdkafka#producer-1",
        "Current transaction failed in state InTransaction: Failed to commit offsets to "
        "transaction (Broker: There is a newer producer with the same transactionalId) (_FENCED)",
    )
    world.producer.fail_aborts = [TIMED_OUT] * 100
    with pytest.raises(FencedError, match="CAPI_INSTANCE_ID"):
        world.publisher.redo(lambda p: False, [TopicPartition(IN, 0)], world.consumer)
    assert len(world.producer.fail_aborts) == 99  # stopped at the first unanswered abort
    assert world.producers_made == 1
    assert world.producer.committed == []


def test_other_librdkafka_log_lines_do_not_stop_an_unanswered_abort(world):
    world.publisher.produce(OutRecord(TOPICS.results, None, b"r", (IN, 0)))
    world.producer_config["logger"].log(
        40, "%s [%s] %s", "FAIL", "rdkafka#producer-1", "Disconnected (_TRANSPORT)"
    )
    world.producer.fail_aborts = [TIMED_OUT]
    world.publisher.redo(lambda p: False, [TopicPartition(IN, 0)], world.consumer)
    assert world.producer.transactions[0].state == "aborted"  # resumed, then done
