"""Whole turns of the loop over fakes of Kafka (a consumer that hands out messages, a producer
that records transactions) and a mock Graph API: a trigger consumed in one turn has its result
committed with its offset a few turns later, and a copy of it is a duplicate."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import Message, TopicPartition

from consumer.events.policy import Rules
from consumer.kafka.publisher import Publisher
from consumer.meta.batching import Batcher
from consumer.meta.breaker import CircuitBreaker
from consumer.meta.client import CapiClient
from consumer.meta.credentials import CredentialStore
from consumer.meta.dispatch import Dispatcher
from consumer.meta.senders import Sender
from consumer.ops.monitor import Monitor
from consumer.service.answers import Answers
from consumer.service.checkpoint import Checkpoint
from consumer.service.flow import FlowControl
from consumer.service.loop import Service
from consumer.service.ownership import Ownership
from consumer.service.rebalance import Rebalance
from consumer.service.retries import ParkedRetries
from consumer.service.retry_topic import RetryTopic
from consumer.service.startup import Parts
from consumer.service.state_space import StateSpace
from consumer.service.triage import Triage
from consumer.settings import DEFAULT_RESTRICTED_COUNTRIES, Settings
from consumer.store.dedup import Dedup
from consumer.store.outbox import Outbox
from consumer.store.parked import ParkedTable
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

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
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


def _loop(tmp_path: Path) -> tuple[Service, Parts, _Consumer, FakeProducer]:
    m = metrics()
    store = StateStore(tmp_path / "state").open()
    dedup = Dedup(store, TOPICS.results, clock_ms=lambda: NOW_MS)
    dedup.create_table()
    parked = ParkedTable(store, TOPICS.retry, clock_ms=lambda: NOW_MS)
    parked.create_table()
    outbox = Outbox(store)
    outbox.open()
    consumer, producer, restore = _Consumer(), FakeProducer(), FakeRestore(partitions=3)
    owned = Ownership()
    publisher = Publisher({}, "txn-1", producer_factory=lambda config: producer)
    publisher.start()
    monitor = Monitor(m, IN, threading.Event())
    retry = RetryTopic(parked, IN)
    checkpoint = Checkpoint(
        consumer=consumer,
        publisher=publisher,
        outbox=outbox,
        dedup=dedup,
        retry=retry,
        owned=owned,
        topics=TOPICS,
        encode_result=CODEC.encoder("ConversionResult", TOPICS.results),
        metrics=m,
        monitor=monitor,
        commit_interval_s=0.0,
        clock_ms=lambda: NOW_MS,
    )
    breaker = CircuitBreaker()
    client = CapiClient("https://graph.example", "v24.0", transport=httpx.MockTransport(_meta))
    dispatcher = Dispatcher(client, m, retry_deadline_s=3600, breaker=breaker)
    sender = Sender(dispatcher, Batcher(10, 0.0), 2)
    sender.start()
    space = StateSpace(store=store, dedup=dedup, parked=parked, max_parked_bytes=2**30, metrics=m)
    flow = FlowControl(
        consumer=consumer,
        restore=restore,
        owned=owned,
        max_pending=1000,
        max_pending_bytes=2**30,
        breaker=breaker,
        metrics=m,
        space=space,
    )
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "token-1").write_text("tok")
    triage = Triage(
        codec=CODEC,
        dedup=dedup,
        parked=parked,
        restore=restore,
        outbox=outbox,
        tables=_Tables(),
        credentials=CredentialStore(creds),
        rules=Rules(restricted_countries=DEFAULT_RESTRICTED_COUNTRIES),
        owned=owned,
        metrics=m,
        clock_ms=lambda: NOW_MS,
    )
    answers = Answers(sender=sender, checkpoint=checkpoint, triage=triage)
    rebalance = Rebalance(
        ownership=owned,
        checkpoint=checkpoint,
        flow=flow,
        sender=sender,
        answers=answers,
        restore=restore,
        outbox=outbox,
        topics=TOPICS,
        drain_timeout_s=10,
        session_timeout_s=60,
        metrics=m,
    )
    retries = ParkedRetries(
        retry=retry,
        triage=triage,
        restore=restore,
        dispatcher=dispatcher,
        owned=owned,
        metrics=m,
        max_taken=100,
    )
    parts = Parts(
        consumer, _NoTables(), triage, retries, sender, checkpoint, flow, rebalance, answers, space
    )
    service = Service(
        Settings.from_env({}, check_dirs=False), metrics=m, codec=CODEC, client=client
    )
    rebalance.on_assign(consumer, [TopicPartition(IN, 0)])
    return service, parts, consumer, producer


def test_a_trigger_and_its_copy_go_through_whole_turns_to_their_committed_results(tmp_path):
    service, parts, consumer, producer = _loop(tmp_path)
    value = trigger_bytes(trigger_record(event_id="evt-loop"))
    consumer.queued = [message(0, value), message(1, value)]
    try:
        for _ in range(200):  # the answer comes back from a sender thread
            service.turn(parts)
            if producer.committed and producer.committed[-1].offsets == [(IN, 0, 2)]:
                break
    finally:
        parts.sender.close()
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
