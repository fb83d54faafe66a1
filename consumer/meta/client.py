"""The Conversions API client: one POST per batch, Graph API errors classified.

The access token and `appsecret_proof` travel in the JSON body, never in the URL, so that
HTTP logs and exception messages (which print URLs) cannot leak them.

A refusal is about one event when Meta's answer points into `data` (a Conversions API
subcode, 2804xxx, or a message naming `data[i]`): the dispatcher splits the batch to find it.
Any other refusal is about the request itself (its credentials, its dataset, its own
parameters) and fails the batch as it is. A request sent whose answer is lost (a read timeout,
a connection reset or closed unanswered, an HTTP 5xx, a 200 without `events_received`) is an
`AnswerLostError`: Meta may have taken its events.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from consumer.errors import (
    AnswerLostError,
    AuthError,
    CapiError,
    DatasetUnavailableError,
    LostAnswer,
    MetaErrorInfo,
    RejectedError,
    RestrictedRegionError,
    RetryableError,
    ThrottledError,
)
from consumer.events.results import MetaResponse
from consumer.settings import Secret

__all__ = [
    "RESTRICTIVE_REGION_MESSAGE",
    "CapiClient",
    "Credentials",
    "appsecret_proof",
    "classify_error",
]

RESTRICTIVE_REGION_MESSAGE = "Messaging Event Within Messaging Restrictive Region"
_TRANSIENT_CODES = frozenset({1, 2})
# code 100, subcode 33: "Object with ID ... does not exist, cannot be loaded due to missing
# permissions, or does not support this operation" (the dataset)
_INVALID_PARAMETER = 100
_UNKNOWN_OBJECT = 33
_THROTTLE_CODES = frozenset({4, 17, 32, 613, 80004, 341, 368})
_AUTH_CODES = frozenset({190, 102, 10}) | frozenset(range(200, 300))
# code 100 "Invalid appsecret_proof provided in the API argument" (the app secret was rotated)
# and "API calls from the server require an appsecret_proof argument" (the app requires one)
_APPSECRET_PROOF_REFUSALS = ("invalid appsecret_proof", "require an appsecret_proof")
# the Conversions API's own subcodes, about an event's fields (2804003 too old, 2804064 ...)
_EVENT_SUBCODES = range(2_804_000, 2_805_000)
_EVENT_POINTER = re.compile(r"\bdata\[\d+\]")
# what an answered response keeps as its stream once its body is read (see `CapiClient.send`)
_ALREADY_READ = httpx.ByteStream(b"")
DEFAULT_THROTTLE_BACKOFF_S = 60.0


@dataclass(frozen=True, slots=True, eq=False)
class Credentials:
    """What a connection sends with: its access token and, when it has one, the app secret.

    Compared by identity, as a batch key's part that is hashed for every event: the credential
    store gives a connection the same object as long as its files hold the same secrets
    (`same_as` compares the secrets)."""

    access_token: Secret
    app_secret: Secret | None = None

    def same_as(self, other: Credentials) -> bool:
        return self.access_token == other.access_token and self.app_secret == other.app_secret


def appsecret_proof(access_token: str, app_secret: str) -> str:
    """Lowercase hex HMAC-SHA256 of the token keyed with the app secret."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


class CapiClient:
    """POSTs server events to `{graph_url}/{version}/{dataset_id}/events`. Thread-safe."""

    def __init__(
        self,
        graph_url: str,
        version: str,
        *,
        timeout_s: float = 10.0,
        partner_agent: str | None = None,
        transport: httpx.BaseTransport | None = None,
        max_connections: int = 16,
        throttle_backoff_s: float = DEFAULT_THROTTLE_BACKOFF_S,
    ) -> None:
        self._base = f"{graph_url.rstrip('/')}/{version}"
        self._throttle_backoff_s = throttle_backoff_s
        self._partner_agent = partner_agent
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            limits=httpx.Limits(max_connections=max_connections),
            headers={"Content-Type": "application/json"},
        )

    def close(self) -> None:
        self._http.close()

    def body(
        self,
        events: Sequence[Mapping[str, Any]],
        credentials: Credentials,
        test_event_code: str | None,
    ) -> bytes:
        """The request body: events, token, and the optional fields."""
        token = credentials.access_token.reveal()
        payload: dict[str, Any] = {"data": events, "access_token": token}
        if credentials.app_secret is not None:
            payload["appsecret_proof"] = appsecret_proof(token, credentials.app_secret.reveal())
        if test_event_code:
            payload["test_event_code"] = test_event_code
        if self._partner_agent:
            payload["partner_agent"] = self._partner_agent
        return orjson.dumps(payload)

    def send(
        self,
        dataset_id: str,
        events: Sequence[Mapping[str, Any]],
        credentials: Credentials,
        test_event_code: str | None = None,
    ) -> MetaResponse:
        """Send one batch; raise a `CapiError` subclass when Meta does not accept it."""
        url = f"{self._base}/{dataset_id}/events"
        content = self.body(events, credentials, test_event_code)
        try:
            response = self._http.post(url, content=content)
        except httpx.ReadTimeout as exc:
            raise AnswerLostError(
                f"no answer from dataset {dataset_id} within the timeout", LostAnswer.TIMEOUT
            ) from exc
        except httpx.TimeoutException as exc:  # connecting, or the body not written: not sent
            raise RetryableError(f"timeout posting to dataset {dataset_id}") from exc
        except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
            raise AnswerLostError(
                f"connection lost waiting for the answer of dataset {dataset_id}: "
                f"{type(exc).__name__}",
                LostAnswer.CONNECTION,
            ) from exc
        except httpx.TransportError as exc:
            raise RetryableError(
                f"connection error posting to dataset {dataset_id}: {type(exc).__name__}"
            ) from exc
        try:
            return parse_response(
                response.status_code, response.content, response.headers, self._throttle_backoff_s
            )
        finally:
            # httpx's response and the stream its body came in refer to each other (httpx
            # issue 3733): the stream, read and closed by now, is let go, so that the response
            # and its request, with the request's body (~0.5 MB for 1,000 events), are freed at
            # once by reference counting, not by a later garbage collection
            response.stream = _ALREADY_READ


def parse_response(
    status: int,
    content: bytes,
    headers: Mapping[str, str],
    throttle_backoff_s: float = DEFAULT_THROTTLE_BACKOFF_S,
) -> MetaResponse:
    try:
        body = orjson.loads(content) if content else {}
    except orjson.JSONDecodeError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if status == 200 and "error" not in body:
        try:
            return MetaResponse(
                events_received=int(body["events_received"]),
                fbtrace_id=str(body.get("fbtrace_id", "")),
                messages=tuple(str(m) for m in body.get("messages", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AnswerLostError(
                f"unexpected 200 answer without events_received: {exc}",
                LostAnswer.NO_EVENTS_RECEIVED,
            ) from exc
    raise classify_error(status, body.get("error"), headers, throttle_backoff_s)


def classify_error(
    status: int,
    error: Any,
    headers: Mapping[str, str],
    throttle_backoff_s: float = DEFAULT_THROTTLE_BACKOFF_S,
) -> CapiError:
    """The `CapiError` subclass for a Graph API error answer."""
    if not isinstance(error, dict):
        if status >= 500 or status in (408, 429):
            return _temporary(status, f"HTTP {status} without a Graph API error")
        # a redirect, a proxy's 407, a 404 or 413 page: not the Graph API answering for events
        return DatasetUnavailableError(
            f"HTTP {status} without a Graph API error: is CAPI_GRAPH_URL the Graph API?"
        )
    info = _error_info(error)
    text = f"Graph API error {info.code}"
    if info.subcode is not None:
        text += f"/{info.subcode}"
    text += f" (HTTP {status}): {info.message or ''}".rstrip(": ")
    if (
        RESTRICTIVE_REGION_MESSAGE.lower()
        in " ".join(
            str(error.get(k, "")) for k in ("message", "error_user_title", "error_user_msg")
        ).lower()
    ):
        return RestrictedRegionError(text, info)
    if info.code in _THROTTLE_CODES:
        return ThrottledError(text, info, throttle_delay(headers, throttle_backoff_s))
    if info.code in _TRANSIENT_CODES or error.get("is_transient") is True:
        return _temporary(status, text, info)
    if info.code in _AUTH_CODES or _refuses_the_proof(info):
        return AuthError(text, info)
    if info.code == _INVALID_PARAMETER and info.subcode == _UNKNOWN_OBJECT:
        return DatasetUnavailableError(text, info)  # the dataset, whatever the events
    if status >= 500:
        return _temporary(status, text, info)
    if _names_an_event(info):
        return RejectedError(text, info)  # one event: the dispatcher splits the batch
    return DatasetUnavailableError(text, info)  # the request itself: splitting cannot help


def _temporary(status: int, text: str, info: MetaErrorInfo | None = None) -> RetryableError:
    """A temporary failure; an HTTP 5xx may come after Meta stored the events."""
    if status >= 500:
        return AnswerLostError(text, LostAnswer.SERVER_ERROR, info)
    return RetryableError(text, info)


def _refuses_the_proof(info: MetaErrorInfo) -> bool:
    """Meta refused the request's `appsecret_proof`, wrong or missing."""
    message = (info.message or "").lower()
    return any(refusal in message for refusal in _APPSECRET_PROOF_REFUSALS)


def _names_an_event(info: MetaErrorInfo) -> bool:
    """Meta's refusal points at an event of `data`: a Conversions API subcode, or a message
    that names `data[i]`."""
    if any(c is not None and c in _EVENT_SUBCODES for c in (info.subcode, info.code)):
        return True
    text = " ".join(t for t in (info.message, info.user_title, info.user_msg) if t)
    return _EVENT_POINTER.search(text) is not None


def _error_info(error: Mapping[str, Any]) -> MetaErrorInfo:
    def opt_int(value: Any) -> int | None:
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    def opt_str(value: Any) -> str | None:
        return str(value) if value is not None else None

    return MetaErrorInfo(
        code=opt_int(error.get("code")) or 0,
        subcode=opt_int(error.get("error_subcode")),
        type=opt_str(error.get("type")),
        message=opt_str(error.get("message")),
        user_title=opt_str(error.get("error_user_title")),
        user_msg=opt_str(error.get("error_user_msg")),
        fbtrace_id=opt_str(error.get("fbtrace_id")),
    )


def throttle_delay(
    headers: Mapping[str, str], default_s: float = DEFAULT_THROTTLE_BACKOFF_S
) -> float:
    """Seconds to wait from the usage headers' `estimated_time_to_regain_access` (minutes)."""
    minutes = 0.0
    for name in ("x-business-use-case-usage", "x-ad-account-usage", "x-app-usage"):
        raw = headers.get(name)
        if not raw:
            continue
        try:
            minutes = max(minutes, _max_regain_minutes(orjson.loads(raw)))
        except orjson.JSONDecodeError:
            continue
    return minutes * 60 if minutes > 0 else default_s


def _max_regain_minutes(node: Any) -> float:
    if isinstance(node, dict):
        own = node.get("estimated_time_to_regain_access")
        value = float(own) if isinstance(own, int | float) else 0.0
        return max([value, *(_max_regain_minutes(v) for v in node.values())])
    if isinstance(node, list):
        return max([0.0, *(_max_regain_minutes(v) for v in node)])
    return 0.0
