"""Whole turns of the loop over fakes of Kafka (a consumer that hands out messages, a producer
that records transactions) and a mock Graph API: a trigger consumed in one turn has its result
committed with its offset a few turns later, and a copy of it is a duplicate."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import Message, TopicPartition

from consumer.kafka.publisher import Publisher
from consumer.meta.client import CapiClient
from consumer.ops.monitor import Monitor
from consumer.service.loop import Service
from consumer.service.ownership import Ownership
from consumer.service.startup import LocalState, Parts, wire_parts
from consumer.service.state_space import StateSpace
from consumer.settings import Settings
from consumer.store.dedup import Dedup
from consumer.store.outbox import Outbox
from consumer.store.parked import ParkedTable
from consumer.store.signal_counts import SignalCounts
from consumer.store.sqlite import StateStore
from tests.factories import NOW_MS, trigger_record
from tests.unit.service.fakes import (
    CODEC,
    IN,
    TOPICS,
    FakeConsumer,
    FakeProducer,
    FakeRestore,
    message,
    metrics,
    trigger_bytes,
)
from tests.unit.service.test_triage import _Tables


class _Consumer(FakeConsumer):
    """Hands out the messages a test queues, one batch a poll."""

    def __init__(self) -> None:
        super().__init__()
        self.queued: list[Message] = []
        self.waits: list[float] = []  # each poll's timeout

    def poll(self, timeout: float = -1) -> Message | None:
        self.waits.append(timeout)
        return self.queued.pop(0) if self.queued else None

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        assert timeout == 0, "the rest of a batch is taken without a wait"
        batch, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return batch


class _NoTables:
    tables: list[Any] = []

    def poll(self, max_messages: int = 1000) -> int:
        return 0

    def lag(self) -> dict[str, int]:
        return {}


def _meta(request: httpx.Request) -> httpx.Response:
    events = orjson.loads(request.content)["data"]
    return httpx.Response(200, json={"events_received": len(events), "fbtrace_id": "F"})


def _loop(
    tmp_path: Path, stack: contextlib.ExitStack, commit_interval_ms: int = 10
) -> tuple[Service, Parts, _Consumer, FakeProducer]:
    """The service's parts wired as `open_parts` wires them, over fakes of Kafka, a state
    folder and a mock Graph API."""
    m = metrics()
    store = StateStore(tmp_path / "state").open()
    dedup = Dedup(store, TOPICS.results, clock_ms=lambda: NOW_MS)
    dedup.create_table()
    parked = ParkedTable(store, TOPICS.retry, clock_ms=lambda: NOW_MS)
    parked.create_table()
    outbox = Outbox(store)
    outbox.open()
    space = StateSpace(store=store, dedup=dedup, parked=parked, max_parked_bytes=2**30, metrics=m)
    signals = SignalCounts(TOPICS.signals, IN)
    restore = FakeRestore(partitions=3)
    local = LocalState(store, _NoTables(), dedup, parked, signals, restore, outbox, space)
    consumer, producer = _Consumer(), FakeProducer()
    publisher = Publisher({}, "txn-1", producer_factory=lambda config: producer)
    publisher.start()
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "token-1").write_text("tok")
    settings = Settings.from_env(
        {
            **TOPICS.as_env(),
            "CAPI_CREDENTIALS_DIR": str(creds),
            "CAPI_BATCH_SIZE": "10",
            "CAPI_BATCH_LINGER_MS": "0",
            "CAPI_COMMIT_INTERVAL_MS": str(commit_interval_ms),
        },
        check_dirs=False,
    )
    client = CapiClient("https://graph.example", "v24.0", transport=httpx.MockTransport(_meta))
    owned = Ownership()
    parts = wire_parts(
        stack,
        settings,
        local=local,
        consumer=consumer,
        owned=owned,
        publisher=publisher,
        codec=CODEC,
        client=client,
        reference=_Tables(),
        metrics=m,
        monitor=Monitor(m, IN, threading.Event()),
        clock_ms=lambda: NOW_MS,
    )
    service = Service(settings, metrics=m, codec=CODEC, client=client)
    parts.rebalance.on_assign(consumer, [TopicPartition(IN, 0)])
    return service, parts, consumer, producer


def test_a_trigger_and_its_copy_go_through_whole_turns_to_their_committed_results(tmp_path):
    with contextlib.ExitStack() as stack:
        service, parts, consumer, producer = _loop(tmp_path, stack)
        value = trigger_bytes(trigger_record(event_id="evt-loop"))
        consumer.queued = [message(0, value), message(1, value)]
        deadline = time.monotonic() + 10
        while not (producer.committed and producer.committed[-1].offsets == [(IN, 0, 2)]):
            assert time.monotonic() < deadline  # the answer comes back from a sender thread
            service.turn(parts)
    results = []
    for txn in producer.committed:
        for topic, _, record in txn.records:
            if topic == TOPICS.results:
                r = CODEC.decode(record, "ConversionResult")
                results.append((r["source_offset"], r["status"], r["reason"]))
    assert sorted(results) == [(0, "SENT", None), (1, "SKIPPED", "DUPLICATE")]
    assert producer.committed[-1].offsets == [(IN, 0, 2)]
    assert (
        service.metrics.registry.get_sample_value(
            "capi_results_total", {"status": "SENT", "reason": ""}
        )
        == 1
    )


def test_the_poll_waits_long_only_after_a_poll_that_found_nothing(tmp_path):
    # a message that arrives while the poll waits is triaged only when it returns: while
    # messages flow, or a result waits for its commit, the wait is short
    with contextlib.ExitStack() as stack:
        service, parts, consumer, producer = _loop(tmp_path, stack)
        service.turn(parts)
        consumer.queued = [message(0, b"not avro")]  # resolved at once: a dead letter
        service.turn(parts)
        deadline = time.monotonic() + 10
        while not producer.committed:  # within the commit interval (10 ms)
            assert time.monotonic() < deadline
            service.turn(parts)
        service.turn(parts)  # its poll found nothing
        service.turn(parts)
    assert consumer.waits[:2] == [0.05, 0.05]
    assert consumer.waits[2] <= 0.01  # the last poll returned a message
    assert consumer.waits[-1] == 0.05


def test_a_poll_waits_no_longer_than_a_due_commit_in_whole_milliseconds(tmp_path):
    # librdkafka cuts a poll's wait down to whole milliseconds: a wait of 38.6 ms would end
    # before the commit is due, and the next poll would not wait at all
    with contextlib.ExitStack() as stack:
        service, parts, consumer, _ = _loop(tmp_path, stack, commit_interval_ms=45)
        service.turn(parts)  # commits nothing; the interval starts
        consumer.queued = [message(0, b"not avro")]  # resolved at once, held for the commit
        service.turn(parts)
        service.turn(parts)  # its poll found nothing
        service.turn(parts)
    assert consumer.waits[3] < 0.05  # the commit due sooner than the idle wait
    assert all(round(w * 1000, 6).is_integer() for w in consumer.waits)
