import hashlib
import hmac
from typing import Any

import httpx
import orjson
import pytest

from consumer.errors import (
    AuthError,
    DatasetUnavailableError,
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
        (500, _error(1), RetryableError),
        (500, _error(2), RetryableError),
        (400, _error(100, is_transient=True), RetryableError),
        (503, None, RetryableError),
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
        (400, None, DatasetUnavailableError),
        (302, None, DatasetUnavailableError),
        (404, None, DatasetUnavailableError),
        (407, None, DatasetUnavailableError),
        (413, None, DatasetUnavailableError),
        (400, _error(100, 33), DatasetUnavailableError),
        (400, _error(100, 34), RejectedError),
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
