import gc
import hashlib
import hmac
import weakref
from typing import Any

import httpx
import orjson
import pytest

from consumer.errors import (
    AnswerLostError,
    AuthError,
    DatasetUnavailableError,
    LostAnswer,
    RejectedError,
    RestrictedRegionError,
    RetryableError,
    ThrottledError,
)
from consumer.meta.client import CapiClient, Credentials, classify_error, throttle_delay
from consumer.settings import Secret

EVENTS = [{"event_name": "LeadSubmitted"}]
CREDS = Credentials(Secret("EAAB-token"), Secret("app-secret"))


def _client(handler):
    return CapiClient(
        "https://graph.example",
        "v24.0",
        partner_agent="capi-consumer",
        transport=httpx.MockTransport(handler),
    )


def test_token_and_proof_travel_in_the_body_not_the_url():
    seen: dict[str, Any] = {}

    def handler(request):
        seen["url"] = str(request.url)
        seen["body"] = orjson.loads(request.content)
        return httpx.Response(200, json={"events_received": 1, "fbtrace_id": "T", "messages": []})

    response = _client(handler).send("ds-1", EVENTS, CREDS, "TEST1")
    assert response.events_received == 1
    assert seen["url"] == "https://graph.example/v24.0/ds-1/events"
    assert "EAAB" not in seen["url"]
    body = seen["body"]
    assert body["access_token"] == "EAAB-token"
    assert (
        body["appsecret_proof"]
        == hmac.new(b"app-secret", b"EAAB-token", hashlib.sha256).hexdigest()
    )
    assert body["test_event_code"] == "TEST1"
    assert body["partner_agent"] == "capi-consumer"
    assert body["data"] == EVENTS


def test_no_proof_without_app_secret_and_no_test_code_for_live_events():
    body = orjson.loads(_client(lambda r: None).body(EVENTS, Credentials(Secret("t")), None))
    assert "appsecret_proof" not in body
    assert "test_event_code" not in body


def _error(code, subcode=None, message="m", **extra):
    error = {"code": code, "message": message, "type": "OAuthException", **extra}
    if subcode is not None:
        error["error_subcode"] = subcode
    return error


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (500, _error(1), AnswerLostError),
        (503, _error(2), AnswerLostError),
        (400, _error(2), RetryableError),
        (400, _error(100, is_transient=True), RetryableError),
        (503, None, AnswerLostError),
        (429, None, RetryableError),
        (400, _error(4), ThrottledError),
        (400, _error(17), ThrottledError),
        (400, _error(32), ThrottledError),
        (400, _error(613), ThrottledError),
        (400, _error(80004), ThrottledError),
        (400, _error(341), ThrottledError),
        (400, _error(368), ThrottledError),
        (401, _error(190), AuthError),
        (400, _error(102), AuthError),
        (403, _error(10), AuthError),
        (403, _error(200), AuthError),
        (403, _error(299), AuthError),
        (400, _error(100, 2804066), RejectedError),
        (400, _error(100, 2804087), RejectedError),
        (400, _error(100, 2804003, "Invalid parameter"), RejectedError),
        (
            400,
            _error(100, message="(#100) Param data[3][event_name] must be a string"),
            RejectedError,
        ),
        (400, _error(100, error_user_msg="data[0].user_data.ph is not a hash"), RejectedError),
        (
            400,
            _error(100, message="Invalid appsecret_proof provided in the API argument"),
            AuthError,
        ),
        (
            400,
            _error(100, message="API calls from the server require an appsecret_proof argument"),
            AuthError,
        ),
        (400, _error(100, message="(#100) param data must be an array."), DatasetUnavailableError),
        (400, _error(100, message="(#100) Unknown parameters: foo"), DatasetUnavailableError),
        (400, _error(2635, message="(#2635) deprecated version"), DatasetUnavailableError),
        (400, _error(2500, message="An active access token must be used"), DatasetUnavailableError),
        (400, None, DatasetUnavailableError),
        (302, None, DatasetUnavailableError),
        (404, None, DatasetUnavailableError),
        (407, None, DatasetUnavailableError),
        (413, None, DatasetUnavailableError),
        (400, _error(100, 33), DatasetUnavailableError),
        (400, _error(100, 34), DatasetUnavailableError),
        (408, None, RetryableError),
        (
            400,
            _error(100, message="Messaging Event Within Messaging Restrictive Region"),
            RestrictedRegionError,
        ),
        (
            400,
            _error(100, error_user_title="messaging event within messaging restrictive region"),
            RestrictedRegionError,
        ),
    ],
)
def test_error_classification(status, error, kind):
    exc = classify_error(status, error, {})
    assert type(exc) is kind
    if error is not None:
        assert exc.meta is not None
        assert exc.meta.code == error["code"]


def test_timeout_and_dropped_connection_are_retryable_and_do_not_print_the_token():
    def timeout(request):
        raise httpx.ReadTimeout("slow", request=request)

    def dropped(request):
        raise httpx.RemoteProtocolError("peer closed", request=request)

    for handler in (timeout, dropped):
        with pytest.raises(RetryableError) as info:
            _client(handler).send("ds-1", EVENTS, CREDS)
        assert "EAAB" not in str(info.value)
        assert "EAAB" not in repr(info.value.__cause__)


def _raises(error_type):
    def handler(request):
        raise error_type("failed", request=request)

    return handler


@pytest.mark.parametrize(
    ("handler", "kind", "cause"),
    [
        # sent, and no answer: Meta may have taken the events
        (_raises(httpx.ReadTimeout), AnswerLostError, LostAnswer.TIMEOUT),
        (_raises(httpx.ReadError), AnswerLostError, LostAnswer.CONNECTION),
        (_raises(httpx.RemoteProtocolError), AnswerLostError, LostAnswer.CONNECTION),
        (lambda r: httpx.Response(502), AnswerLostError, LostAnswer.SERVER_ERROR),
        (
            lambda r: httpx.Response(200, json={"fbtrace_id": "F"}),
            AnswerLostError,
            LostAnswer.NO_EVENTS_RECEIVED,
        ),
        # not sent, or refused: Meta took nothing
        (_raises(httpx.ConnectTimeout), RetryableError, None),
        (_raises(httpx.ConnectError), RetryableError, None),
        (_raises(httpx.WriteTimeout), RetryableError, None),
        (_raises(httpx.PoolTimeout), RetryableError, None),
        (lambda r: httpx.Response(429), RetryableError, None),
        (lambda r: httpx.Response(400, json={"error": _error(17)}), ThrottledError, None),
    ],
    ids=[
        "read timeout",
        "reset",
        "closed unanswered",
        "5xx",
        "200 without events_received",
        "connect timeout",
        "refused connection",
        "write timeout",
        "no free connection",
        "429",
        "throttled",
    ],
)
def test_a_lost_answer_is_told_apart_from_a_request_meta_never_took(handler, kind, cause):
    with pytest.raises(RetryableError) as info:
        _client(handler).send("ds-1", EVENTS, CREDS)
    assert type(info.value) is kind
    assert getattr(info.value, "cause", None) == cause
    assert "EAAB" not in str(info.value)


def test_throttle_delay_honours_usage_headers():
    headers = {
        "x-business-use-case-usage": (
            '{"123": [{"type": "ads_management", "estimated_time_to_regain_access": 3}]}'
        )
    }
    assert throttle_delay(headers) == 180
    assert throttle_delay({}) == 60


def test_meta_error_fields_are_carried():
    exc = classify_error(
        400,
        _error(
            100,
            2804064,
            "Invalid parameter",
            error_user_title="T",
            error_user_msg="U",
            fbtrace_id="F",
        ),
        {},
    )
    assert exc.meta is not None
    assert (exc.meta.subcode, exc.meta.user_title, exc.meta.user_msg, exc.meta.fbtrace_id) == (
        2804064,
        "T",
        "U",
        "F",
    )


def test_an_answered_request_and_its_body_are_freed_without_a_garbage_collection():
    requests: list[weakref.ref[httpx.Request]] = []

    def handler(request):
        requests.append(weakref.ref(request))
        return httpx.Response(200, json={"events_received": 1})

    client = _client(handler)
    saved = gc.get_threshold()
    gc.collect()
    gc.set_threshold(0)  # only reference counting frees anything meanwhile
    try:
        client.send("ds-1", EVENTS, CREDS)
        assert len(requests) == 1
        assert requests[0]() is None  # no cycle keeps the request (and its body) alive
    finally:
        gc.set_threshold(*saved)
