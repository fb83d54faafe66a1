"""The exception tree of the service.

    CapiConsumerError
    ├── ConfigError            a setting is invalid; the service stops with exit code 2
    ├── FatalError             the service cannot go on safely (a fatal Kafka error, a topic
    │   │                      with too few partitions); it stops, the orchestrator restarts it
    │   └── FencedError        another instance took this one's transactional id; exit code 3
    ├── BrokerUnavailableError the Kafka broker did not answer in time (named, with why)
    ├── DecodeError            bytes that are not a message we can read (-> UNDECODABLE)
    ├── SchemaUnavailableError the Schema Registry did not answer; the message waits
    ├── StateFullError         the state volume (or CAPI_STATE_MAX_BYTES) is full; what was to
    │                          be written waits in memory, the input pauses
    └── CapiError              the Graph API refused or could not be reached
        ├── RetryableError     temporary: timeouts, 5xx, codes 1 and 2
        │   ├── ThrottledError rate limited; carries the time to wait
        │   └── AnswerLostError  the request may have reached Meta but its answer did not
        │                      come back; carries why (`LostAnswer`)
        └── PermanentError     never retried
            ├── AuthError          token, app-secret proof or permission (META_AUTH_ERROR)
            ├── DatasetUnavailableError  the request as a whole: an unknown dataset, a
            │                      refusal that names no event, or an answer that is not the
            │                      Graph API's (DATASET_UNAVAILABLE)
            ├── RejectedError      one event of the request is invalid (META_REJECTED)
            └── RestrictedRegionError  the asset is in a messaging-restrictive region

Messages never contain customer information or access tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "AnswerLostError",
    "AuthError",
    "BrokerUnavailableError",
    "CapiConsumerError",
    "CapiError",
    "ConfigError",
    "DatasetUnavailableError",
    "DecodeError",
    "FatalError",
    "FencedError",
    "LostAnswer",
    "MetaErrorInfo",
    "PermanentError",
    "RejectedError",
    "RestrictedRegionError",
    "RetryableError",
    "SchemaUnavailableError",
    "StateFullError",
    "ThrottledError",
]


class CapiConsumerError(Exception):
    """Root of every error this service raises on purpose."""


class ConfigError(CapiConsumerError):
    """A setting is missing or invalid. The message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class FatalError(CapiConsumerError):
    """The service cannot go on safely."""


class FencedError(FatalError):
    """Another instance runs with this one's transactional id: this one stops, never fences the
    other back."""


class BrokerUnavailableError(CapiConsumerError):
    """The Kafka broker did not answer in time; the message names it and says why."""

    def __init__(self, bootstrap: str, reason: str) -> None:
        super().__init__(f"broker {bootstrap}: does not answer ({reason})")
        self.bootstrap = bootstrap
        self.reason = reason


class DecodeError(CapiConsumerError):
    """The bytes of a message cannot be read as the expected Avro record."""


class SchemaUnavailableError(CapiConsumerError):
    """The Schema Registry could not be reached: a passing condition, not a bad message."""


class StateFullError(CapiConsumerError):
    """A write of the local state found no room: the volume is full, or the store reached
    `CAPI_STATE_MAX_BYTES`. The write was rolled back; the caller keeps what it wanted to
    write and tries again (`StateStore.may_write`)."""


@dataclass(frozen=True, slots=True)
class MetaErrorInfo:
    """The `error` object of a Graph API answer, as the result record carries it."""

    code: int
    subcode: int | None = None
    type: str | None = None
    message: str | None = None
    user_title: str | None = None
    user_msg: str | None = None
    fbtrace_id: str | None = None


class CapiError(CapiConsumerError):
    """The Graph API did not accept a request."""

    def __init__(self, message: str, meta: MetaErrorInfo | None = None) -> None:
        super().__init__(message)
        self.meta = meta


class RetryableError(CapiError):
    """Worth trying again later: network trouble, 5xx, transient Graph API codes."""


class ThrottledError(RetryableError):
    """Rate limited: back off at least `retry_after` seconds."""

    def __init__(self, message: str, meta: MetaErrorInfo | None, retry_after: float) -> None:
        super().__init__(message, meta)
        self.retry_after = retry_after


class LostAnswer(StrEnum):
    """Why the answer to a request that reached Meta is missing: the `cause` label of
    `capi_requests_outcome_unknown_total`."""

    TIMEOUT = "timeout"  # sent, and no answer within the request timeout
    CONNECTION = "connection"  # sent, then the connection was reset or closed unanswered
    SERVER_ERROR = "server_error"  # an HTTP 5xx: Meta may have stored the events first
    NO_EVENTS_RECEIVED = "no_events_received"  # a 200 that does not say how many it took


class AnswerLostError(RetryableError):
    """The request was sent but its answer was lost: Meta may have taken its events, and
    sending them again may count them twice."""

    def __init__(self, message: str, cause: LostAnswer, meta: MetaErrorInfo | None = None) -> None:
        super().__init__(message, meta)
        self.cause = cause


class PermanentError(CapiError):
    """Trying again cannot help."""


class AuthError(PermanentError):
    """The access token is invalid or lacks a permission (codes 190, 102, 10, 200-299), or its
    `appsecret_proof` is wrong or missing (code 100: the app secret was rotated, or the app
    requires a proof the connection has no secret for)."""


class DatasetUnavailableError(PermanentError):
    """Meta refused the request whatever its events: the dataset is unknown or the token has no
    right to it, the refusal names no event (a parameter of the request itself), or what
    answered is not the Graph API. Splitting the batch would not help."""


class RejectedError(PermanentError):
    """One event of the request is invalid: Meta's answer points into `data` (a Conversions
    API subcode, 2804xxx, or a message naming `data[i]`). Splitting the batch finds it."""


class RestrictedRegionError(PermanentError):
    """Messaging Event Within Messaging Restrictive Region."""
