import time
from dataclasses import replace

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from consumer.events.parking import ParkedEvent
from consumer.events.policy import Approved
from consumer.events.records import Trigger
from consumer.events.results import DEAD_LETTER_REASONS, RawMessage, SourceRef
from consumer.meta.batching import Batch, BatchKey, OutgoingEvent
from consumer.meta.client import CapiClient, Credentials
from consumer.meta.dispatch import FAILING_AFTER, Dispatcher, Parking
from consumer.ops.metrics import Metrics
from consumer.settings import Secret
from tests.factories import trigger_record

OK = {"events_received": 0, "fbtrace_id": "F", "messages": []}


class FakeTime:
    def __init__(self):
        self.now = 0.0

    def clock(self):
        return self.now


def _batch(n, account="page-1", dataset="ds-1"):
    items = [
        OutgoingEvent(
            SourceRef("t", 0, i),
            Trigger.from_avro(trigger_record(event_id=f"e{i}", channel_account_id=account)),
            Approved({"event_id": f"e{i}"}, "LeadSubmitted", ("em",)),
            RawMessage(None, None),
        )
        for i in range(n)
    ]
    return Batch(BatchKey(dataset, Credentials(Secret("tok")), None), 0.0, items)


def _dispatcher(handler, deadline=60.0, inline=None):
    """`inline` (default: the deadline, no parking) is how long a batch is retried in place."""
    t = FakeTime()
    client = CapiClient("https://graph.example", "v24.0", transport=httpx.MockTransport(handler))
    metrics = Metrics(CollectorRegistry())
    dispatcher = Dispatcher(
        client,
        metrics,
        retry_deadline_s=deadline,
        retry_inline_s=deadline if inline is None else inline,
        clock=t.clock,
    )
    return dispatcher, t, metrics


def _run(dispatcher, t, batch):
    """Deliver until every event has an outcome, moving the clock to each retry's time."""
    done, waits = [], []
    attempts = [dispatcher.attempt(batch)]
    while attempts:
        attempt = attempts.pop(0)
        if attempt.not_before > t.now:
            waits.append(attempt.not_before - t.now)
            t.now = attempt.not_before
        delivery = dispatcher.deliver(attempt)
        done += delivery.done
        attempts += delivery.retry
    return done, waits


def _ids(request):
    return [e["event_id"] for e in orjson.loads(request.content)["data"]]


def test_success_sends_each_event_once():
    calls = []

    def handler(request):
        calls.append(_ids(request))
        return httpx.Response(200, json={**OK, "events_received": len(calls[-1])})

    dispatcher, t, metrics = _dispatcher(handler)
    outcomes, waits = _run(dispatcher, t, _batch(5))
    assert calls == [["e0", "e1", "e2", "e3", "e4"]]
    assert waits == []
    assert {o.status.value for _, o in outcomes} == {"SENT"}
    assert outcomes[0][1].meta_response.events_received == 5
    assert metrics.registry.get_sample_value("capi_events_sent_total", {"test": "false"}) == 5


def test_retryable_errors_come_back_with_a_backoff_then_succeed():
    answers = [
        httpx.Response(500, json={"error": {"code": 2, "message": "temporary"}}),
        httpx.Response(503),
        httpx.Response(200, json={**OK, "events_received": 2}),
    ]
    dispatcher, t, _ = _dispatcher(lambda r: answers.pop(0))
    outcomes, waits = _run(dispatcher, t, _batch(2))
    assert [o.status.value for _, o in outcomes] == ["SENT", "SENT"]
    assert outcomes[0][1].attempts == 3
    assert len(waits) == 2
    assert 0.25 <= waits[0] <= 0.5
    assert 0.5 <= waits[1] <= 1.0


def test_retries_stop_at_the_deadline():
    dispatcher, t, _ = _dispatcher(lambda r: httpx.Response(500), deadline=5.0)
    outcomes, _ = _run(dispatcher, t, _batch(3))
    assert {(o.status.value, o.reason) for _, o in outcomes} == {("FAILED", "RETRIES_EXHAUSTED")}
    assert outcomes[0][1].attempts > 2
    assert t.now <= 5.0


def test_throttling_waits_what_meta_asks_and_holds_the_dataset_back():
    answers = [
        httpx.Response(
            400,
            json={"error": {"code": 80004, "message": "too many"}},
            headers={
                "X-Business-Use-Case-Usage": '{"1": [{"estimated_time_to_regain_access": 2}]}'
            },
        ),
        httpx.Response(200, json={**OK, "events_received": 1}),
    ]
    dispatcher, t, _ = _dispatcher(lambda r: answers.pop(0), deadline=600)
    attempt = dispatcher.attempt(_batch(1))
    delivery = dispatcher.deliver(attempt)
    assert delivery.done == []
    assert delivery.retry[0].not_before == 120.0
    assert dispatcher.throttled_until("ds-1") == 120.0
    assert dispatcher.throttled_until("ds-other") == 0.0
    t.now = 120.0
    assert dispatcher.deliver(delivery.retry[0]).done[0][1].status.value == "SENT"


@pytest.mark.parametrize(
    "error",
    [
        {"code": 100, "error_subcode": 2804064, "message": "Invalid"},
        {"code": 100, "message": "(#100) Param data[0][custom_data][value] must be a number"},
    ],
    ids=["conversions api subcode", "message naming data[i]"],
)
def test_one_bad_event_is_isolated_and_the_rest_is_sent(error):
    sent = []

    def handler(request):
        ids = _ids(request)
        if "e5" in ids:
            return httpx.Response(400, json={"error": error})
        sent.extend(ids)
        return httpx.Response(200, json={**OK, "events_received": len(ids)})

    dispatcher, t, _ = _dispatcher(handler)
    outcomes, _ = _run(dispatcher, t, _batch(8))
    by_id = {item.trigger.event_id: o for item, o in outcomes}
    assert sorted(sent) == ["e0", "e1", "e2", "e3", "e4", "e6", "e7"]
    assert (by_id["e5"].status.value, by_id["e5"].reason) == ("FAILED", "META_REJECTED")
    assert by_id["e5"].meta_error.subcode == error.get("error_subcode")
    assert all(by_id[f"e{i}"].status.value == "SENT" for i in (0, 1, 2, 3, 4, 6, 7))


def test_restrictive_region_answer_is_skipped():
    def handler(request):
        message = "Messaging Event Within Messaging Restrictive Region"
        return httpx.Response(400, json={"error": {"code": 100, "message": message}})

    dispatcher, t, _ = _dispatcher(handler)
    outcomes, _ = _run(dispatcher, t, _batch(1, account="page-9"))
    assert (outcomes[0][1].status.value, outcomes[0][1].reason) == ("SKIPPED", "RESTRICTED_REGION")


def test_auth_error_fails_the_batch_without_retrying():
    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(401, json={"error": {"code": 190, "message": "Invalid OAuth"}})

    dispatcher, t, _ = _dispatcher(handler)
    outcomes, _ = _run(dispatcher, t, _batch(4))
    assert len(calls) == 1
    assert {o.reason for _, o in outcomes} == {"META_AUTH_ERROR"}
    assert outcomes[0][1].meta_error.code == 190


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (
            400,
            {
                "error": {
                    "code": 100,
                    "error_subcode": 33,
                    "message": "Object with ID 'ds-1' "
                    "does not exist, cannot be loaded due to missing permissions",
                }
            },
            "application/json",
        ),
        (404, "<html><body>Not Found</body></html>", "text/html"),
        (302, "", "text/html"),
        (407, "<html>Proxy Authentication Required</html>", "text/html"),
        (413, "<html>Request Entity Too Large</html>", "text/html"),
    ],
    ids=["unknown dataset", "404 page", "redirect", "proxy", "too large"],
)
def test_a_request_refused_as_a_whole_fails_its_batch_in_one_request(status, body, content_type):
    requests = []

    def handler(request):
        requests.append(request)
        if isinstance(body, dict):
            return httpx.Response(status, json=body)
        return httpx.Response(status, text=body, headers={"content-type": content_type})

    dispatcher, t, _ = _dispatcher(handler)
    done, _ = _run(dispatcher, t, _batch(1000))
    assert len(requests) == 1  # not split into ~2,000 requests
    assert {(o.status.value, o.reason) for _, o in done} == {("FAILED", "DATASET_UNAVAILABLE")}
    assert len(done) == 1000


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("Invalid appsecret_proof provided in the API argument", "META_AUTH_ERROR"),
        ("API calls from the server require an appsecret_proof argument", "META_AUTH_ERROR"),
        ("(#100) param data must be an array.", "DATASET_UNAVAILABLE"),
        ("(#100) Unknown parameters: partner_agent", "DATASET_UNAVAILABLE"),
    ],
    ids=["app secret rotated", "proof required", "malformed request", "unknown parameter"],
)
def test_a_code_100_refusal_of_the_request_fails_every_event_alike_in_one_request(message, reason):
    """Not about one event: splitting would cost ~2N requests and end every event
    META_REJECTED without a dead letter; each gets the same reason and a dead letter, to be
    replayed once the operator fixed the cause."""
    requests = []

    def handler(request):
        requests.append(request)
        error = {"code": 100, "type": "GraphMethodException", "message": message}
        return httpx.Response(400, json={"error": error})

    dispatcher, t, metrics = _dispatcher(handler)
    done, _ = _run(dispatcher, t, _batch(1000))
    assert len(requests) == 1
    assert len(done) == 1000
    assert {(o.status.value, o.reason) for _, o in done} == {("FAILED", reason)}
    assert reason in DEAD_LETTER_REASONS
    assert {(o.meta_error.code, o.meta_error.message) for _, o in done} == {(100, message)}
    assert metrics.registry.get_sample_value("capi_request_retries_total") == 0


def test_past_the_inline_window_a_failing_batch_is_parked_not_failed():
    dispatcher, t, _ = _dispatcher(lambda r: httpx.Response(503), deadline=3600, inline=5.0)
    outcomes, _ = _run(dispatcher, t, _batch(3))
    assert [type(o).__name__ for _, o in outcomes] == ["Parking"] * 3
    parking = outcomes[0][1]
    assert parking.attempts > 2  # tried in place first
    assert "HTTP 503" in parking.error
    assert t.now <= 5.0


def test_a_failing_dataset_parks_its_new_batches_at_their_first_failure():
    """Each batch retried in place would hold back its partitions' later results for the whole
    window; once a dataset failed FAILING_AFTER times in a row its new batches park at once,
    other datasets are retried in place as before, and an answer from Meta ends it."""
    healthy = {"ds-1": False, "ds-2": False}

    def handler(request):
        dataset = request.url.path.split("/")[2]
        return httpx.Response(200, json=OK) if healthy[dataset] else httpx.Response(500)

    dispatcher, t, _ = _dispatcher(handler, deadline=3600, inline=30.0)
    first, _ = _run(dispatcher, t, _batch(1))  # fails in place until its window ends
    assert first[0][1].attempts >= FAILING_AFTER
    started = t.now
    parked, waits = _run(dispatcher, t, _batch(2))
    assert [(type(o).__name__, o.attempts) for _, o in parked] == [("Parking", 1)] * 2
    assert waits == [] and t.now == started  # no wait in place
    other, waits = _run(dispatcher, t, _batch(1, dataset="ds-2"))
    assert other[0][1].attempts > 1 and waits  # another dataset: retried in place
    healthy["ds-1"] = True
    assert dispatcher.attempt(_batch(1)).park_at == t.now  # still failing until Meta answers
    sent, _ = _run(dispatcher, t, _batch(1))
    assert sent[0][1].status.value == "SENT"
    healthy["ds-1"] = False
    again, waits = _run(dispatcher, t, _batch(1))
    assert again[0][1].attempts > 1 and waits  # the answer ended it: in place again


def test_a_throttle_longer_than_the_inline_window_parks_at_once_for_what_meta_asks():
    throttled = httpx.Response(
        400,
        json={"error": {"code": 17, "message": "slow down"}},
        headers={"X-Business-Use-Case-Usage": '{"1": [{"estimated_time_to_regain_access": 3}]}'},
    )
    dispatcher, t, _ = _dispatcher(lambda r: throttled, deadline=86400, inline=30)
    outcomes, _ = _run(dispatcher, t, _batch(2))
    assert [(type(o).__name__, o.attempts, o.retry_after_s) for _, o in outcomes] == [
        ("Parking", 1, 180.0)
    ] * 2
    assert t.now == 0.0  # no wait in place


def _first_parked_almost_600_s_ago(batch: Batch) -> None:
    """The batch's first event: parked 599.9 s ago, tried 4 times over 3 parkings."""
    first = batch.items[0]
    parked = ParkedEvent(
        "e0",
        "ds-1",
        first.source,
        first.received,
        attempts=4,
        parkings=3,
        first_parked_at=int(time.time() * 1000) - 599_900,
        parked_at=0,
        due_at=0,
    )
    batch.items[0] = replace(first, parked=parked)


def test_the_retry_deadline_counts_from_when_an_event_was_first_parked():
    dispatcher, t, _ = _dispatcher(lambda r: httpx.Response(503), deadline=600, inline=5.0)
    batch = _batch(1)
    _first_parked_almost_600_s_ago(batch)
    outcomes, _ = _run(dispatcher, t, batch)
    assert [(o.status.value, o.reason, o.attempts) for _, o in outcomes] == [
        ("FAILED", "RETRIES_EXHAUSTED", 1)
    ]
    assert outcomes[0][1].result_for(batch.items[0], 0).attempts == 5  # counted across parking


def test_a_fresh_event_batched_with_a_nearly_expired_one_keeps_its_own_deadline():
    dispatcher, t, _ = _dispatcher(lambda r: httpx.Response(503), deadline=600, inline=5.0)
    batch = _batch(2)
    _first_parked_almost_600_s_ago(batch)
    outcomes, _ = _run(dispatcher, t, batch)
    by_id = {item.trigger.event_id: outcome for item, outcome in outcomes}
    assert (by_id["e0"].status.value, by_id["e0"].reason) == ("FAILED", "RETRIES_EXHAUSTED")
    assert isinstance(by_id["e1"], Parking)  # parked for later, not failed with the old one


def test_a_request_whose_answer_was_lost_is_sent_again_and_counted_by_cause():
    """Meta may have taken a request whose answer was lost: sending it again may count its
    events twice, so each such request is counted once; retries Meta surely refused are not."""

    def read_timeout(request):
        raise httpx.ReadTimeout("no answer", request=request)

    def refused(request):
        raise httpx.ConnectError("refused", request=request)

    answers = [
        read_timeout,
        lambda r: httpx.Response(503),
        lambda r: httpx.Response(200, json={"fbtrace_id": "F"}),
        refused,
        lambda r: httpx.Response(429),
        lambda r: httpx.Response(200, json={**OK, "events_received": 3}),
    ]
    dispatcher, t, metrics = _dispatcher(lambda r: answers.pop(0)(r))
    outcomes, _ = _run(dispatcher, t, _batch(3))
    assert [(o.status.value, o.attempts) for _, o in outcomes] == [("SENT", 6)] * 3
    counted = {
        cause: metrics.registry.get_sample_value(
            "capi_requests_outcome_unknown_total", {"cause": cause}
        )
        for cause in ("timeout", "connection", "server_error", "no_events_received")
    }
    assert counted == {
        "timeout": 1,
        "connection": 0,
        "server_error": 1,
        "no_events_received": 1,
    }
    assert metrics.registry.get_sample_value("capi_request_retries_total") == 5
