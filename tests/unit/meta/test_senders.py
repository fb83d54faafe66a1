import threading
import time
from typing import Any

import httpx
import orjson
from prometheus_client import CollectorRegistry

from consumer.events.policy import Approved
from consumer.events.records import Trigger
from consumer.events.results import RawMessage, SourceRef
from consumer.meta.batching import Batcher, BatchKey, OutgoingEvent
from consumer.meta.client import CapiClient, Credentials
from consumer.meta.dispatch import Dispatcher
from consumer.meta.senders import BACKLOG_LINGER_S, Sender
from consumer.ops.metrics import Metrics
from consumer.settings import Secret
from tests.factories import trigger_record

CREDS = Credentials(Secret("tok"))
THROTTLED_ANSWERS = threading.Event()  # the throttled dataset's answers wait for it
THROTTLED_ANSWERS.set()


def _item(offset, partition=0):
    trigger = Trigger.from_avro(trigger_record(event_id=f"e{partition}-{offset}"))
    return OutgoingEvent(
        SourceRef("t", partition, offset),
        trigger,
        Approved({"event_id": "x"}, "L", ()),
        RawMessage(None, None),
    )


def _handler(request):
    dataset = request.url.path.split("/")[2]
    if dataset == "ds-throttled":
        THROTTLED_ANSWERS.wait(10)
        return httpx.Response(400, json={"error": {"code": 80004, "message": "slow down"}})
    events = orjson.loads(request.content)["data"]
    return httpx.Response(200, json={"events_received": len(events), "fbtrace_id": "F"})


def _sender(max_size=2):
    client = CapiClient(
        "https://graph.example",
        "v24.0",
        transport=httpx.MockTransport(_handler),
        throttle_backoff_s=600,
    )
    dispatcher = Dispatcher(
        client, Metrics(CollectorRegistry()), retry_deadline_s=3600, retry_inline_s=3600
    )
    sender = Sender(dispatcher, Batcher(max_size, 0.0), max_in_flight=2)
    sender.start()
    return sender


def _collect(sender, want, timeout=10):
    done: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(done) < want and time.monotonic() < deadline:
        done += sender.step()
        time.sleep(0.01)
    return done


def test_a_throttled_dataset_waits_while_the_others_flow_and_its_new_events_park_at_once():
    sender = _sender()
    THROTTLED_ANSWERS.clear()  # both batches are on their way before Meta's first answer
    try:
        for i in range(4):
            sender.add(BatchKey("ds-throttled", CREDS, None), _item(i, 0))
            sender.add(BatchKey("ds-ok", CREDS, None), _item(i, 1))
        THROTTLED_ANSWERS.set()
        done = _collect(sender, 4)
        assert sorted(item.source.offset for item, _ in done) == [0, 1, 2, 3]
        assert {item.source.partition for item, _ in done} == {1}
        assert {o.status.value for _, o in done} == {"SENT"}
        time.sleep(0.1)
        assert sender.step() == []  # the throttled ones wait, none is failed or lost
        assert sender.events({("t", 0)}) == 4
        assert sender.next_wakeup() > 500
        # a new batch of the throttled dataset is parked at once, without a request: waiting
        # in place would hold back every later result of its partition
        sender.add(BatchKey("ds-throttled", CREDS, None), _item(9, 0))
        sender.flush()
        done = sender.step()
        assert [(item.source.offset, type(o).__name__, o.attempts) for item, o in done] == [
            (9, "Parking", 0)
        ]
        assert done[0][1].retry_after_s > 500  # due when the dataset's throttle is over
        assert sender.events({("t", 0)}) == 4  # the tried ones still wait their inline window
    finally:
        THROTTLED_ANSWERS.set()
        sender.close()


def test_drop_removes_waiting_and_batched_events_of_a_partition():
    sender = _sender(max_size=10)
    try:
        sender.add(BatchKey("ds-ok", CREDS, None), _item(0, 0))
        sender.add(BatchKey("ds-ok", CREDS, None), _item(0, 1))
        dropped = sender.leave({("t", 0)})
        assert [(i.source.partition, i.source.offset) for i in dropped] == [(0, 0)]
        sender.flush()
        done = _collect(sender, 1)
        assert [(i.source.partition, o.status.value) for i, o in done] == [(1, "SENT")]
    finally:
        sender.close()


def test_with_a_backlog_batches_wait_to_fill_up():
    now = [time.monotonic()]
    client = CapiClient("https://graph.example", "v24.0", transport=httpx.MockTransport(_handler))
    dispatcher = Dispatcher(
        client, Metrics(CollectorRegistry()), retry_deadline_s=3600, retry_inline_s=3600
    )
    sender = Sender(
        dispatcher, Batcher(1000, 0.05, clock=lambda: now[0]), max_in_flight=2, clock=lambda: now[0]
    )
    sender.start()
    try:
        for i in range(10):
            sender.add(BatchKey("ds-ok", CREDS, None), _item(i))
        now[0] += 0.1  # past the linger, but more events are waiting in Kafka
        assert sender.step(backlog=True) == []
        assert sender.in_flight_requests() == 0 and sender.events() == 10
        now[0] += BACKLOG_LINGER_S
        done = sender.step(backlog=True)  # waited long enough: goes, not full
        done += _collect(sender, 10 - len(done))
        assert sorted(item.source.offset for item, _ in done) == list(range(10))
        # without a backlog a batch goes as soon as it has lingered
        sender.add(BatchKey("ds-ok", CREDS, None), _item(10))
        now[0] += 0.06
        assert [item.source.offset for item, _ in _collect(sender, 1)] == [10]
    finally:
        sender.close()
