"""Sending a batch to Meta and deciding each event's outcome. Never sleeps: a batch that must
be tried again comes back with the time it may be tried (`Attempt.not_before`), so a worker is
never held by a backoff and one throttled dataset does not stall the others.

- Accepted: every event is SENT with Meta's response.
- Retryable errors (timeouts, dropped connections, 5xx, codes 1 and 2): exponential backoff with
  jitter; throttling (4, 17, 32, 613, 80004, 341, 368) waits at least what Meta's usage headers
  ask and holds back the whole dataset. A wait that would end past `CAPI_RETRY_INLINE_S` after
  the first try parks the events instead (`Parking`, see `events/parking.py`), and so does any
  failure of a batch of a dataset that keeps failing (`FAILING_AFTER`) or is throttled; past the
  operator's `CAPI_RETRY_DEADLINE_S` since an event's first try: FAILED/RETRIES_EXHAUSTED.
  A retried request whose answer was lost (`AnswerLostError`) may have been taken by Meta: it
  is counted in `capi_requests_outcome_unknown_total`, as its events may now count twice.
- Token, app-secret proof or permission errors: every event FAILED/META_AUTH_ERROR, in one
  request, not split.
- A request refused as a whole (an unknown dataset, code 100/33; a refusal that names no event,
  about the request's own parameters; an answer that is not the Graph API's: a redirect, a
  proxy, a 404 or 413 page): every event FAILED/DATASET_UNAVAILABLE, in one request, not split.
- An invalid event (Meta's answer points into `data`): Meta rejects the whole batch for it, so
  the batch is split in halves and each half resent (as soon as a worker is free) until the
  offending events stand alone (FAILED/META_REJECTED).
- "Messaging Event Within Messaging Restrictive Region": split the same way; the lone event is
  SKIPPED/RESTRICTED_REGION (triage remembers the asset from that answer, on the main loop).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import httpx

from consumer.errors import (
    AnswerLostError,
    AuthError,
    CapiError,
    DatasetUnavailableError,
    MetaErrorInfo,
    RejectedError,
    RestrictedRegionError,
    RetryableError,
    ThrottledError,
)
from consumer.events.records import ResultStatus
from consumer.events.results import ConversionResult, MetaResponse, Reason
from consumer.meta.batching import Batch, OutgoingEvent
from consumer.meta.breaker import CircuitBreaker
from consumer.meta.client import CapiClient
from consumer.ops.metrics import Metrics

__all__ = [
    "FAILING_AFTER",
    "Attempt",
    "Delivery",
    "Dispatcher",
    "Outcome",
    "Parking",
    "RequestOutcome",
]

log = logging.getLogger(__name__)

# After this many temporary failures in a row a dataset is failing: its new batches are parked
# at their first failure, not retried in place (each would hold back the later results of its
# partitions for the whole inline window). An answer from Meta for the dataset ends it.
FAILING_AFTER = 3
# Likewise a new batch of a dataset Meta is throttling, unless the throttle ends this soon.
THROTTLE_WAIT_IN_PLACE_S = 1.0


class RequestOutcome(StrEnum):
    """How Meta answered one request: the `outcome` label of `capi_requests_total`."""

    SUCCESS = "success"
    RETRYABLE = "retryable"
    THROTTLED = "throttled"
    REJECTED = "rejected"
    AUTH_ERROR = "auth_error"
    RESTRICTED_REGION = "restricted_region"
    DATASET_UNAVAILABLE = "dataset_unavailable"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one event at Meta: its result's status, reason and Meta's answer."""

    status: ResultStatus
    reason: Reason | None = None
    detail: str | None = None
    meta_response: MetaResponse | None = None
    meta_error: MetaErrorInfo | None = None
    attempts: int = 1

    def result_for(self, item: OutgoingEvent, processed_at: int) -> ConversionResult:
        return ConversionResult(
            item.source,
            self.status,
            processed_at,
            self.reason,
            self.detail,
            item.trigger,
            item.approved.user_data_keys,
            self.meta_response,
            self.meta_error,
            self.attempts + item.attempts_before,
        )


@dataclass(frozen=True, slots=True)
class Parking:
    """An event to park: Meta did not take it within the inline retry window, or its dataset
    is throttled and it was not tried yet."""

    attempts: int
    error: str
    retry_after_s: float  # what Meta asked for (throttling), or the backoff due


@dataclass(slots=True)
class Attempt:
    """A batch on its way to Meta: how often it was tried, until when it may be retried in
    place (`park_at`), and until when at all (`deadline`)."""

    batch: Batch
    deadline: float  # the latest of its events' own deadlines
    park_at: float
    attempts: int = 0  # requests that carried these events (splits included)
    started: float = 0.0  # when the first attempt was made (the loop's monotonic clock)
    not_before: float = 0.0
    last_error: CapiError | None = None
    failures: int = 0  # temporary failures so far: what the backoff grows with


@dataclass(slots=True)
class Delivery:
    """What one try of a batch produced: outcomes now, and attempts to make later."""

    done: list[tuple[OutgoingEvent, Outcome | Parking]] = field(default_factory=list)
    retry: list[Attempt] = field(default_factory=list)


class Dispatcher:
    """Delivers batches through a `CapiClient`; safe to call from several threads."""

    def __init__(
        self,
        client: CapiClient,
        metrics: Metrics,
        *,
        retry_deadline_s: float,
        retry_inline_s: float = 30.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._deadline_s = retry_deadline_s
        self._inline_s = retry_inline_s
        self._base = backoff_base_s
        self._max = backoff_max_s
        self._clock = clock
        self.breaker = breaker or CircuitBreaker(clock=clock)
        self._throttled: dict[str, float] = {}
        self._failures_in_row: dict[str, int] = {}
        self._lock = threading.Lock()

    def attempt(self, batch: Batch) -> Attempt:
        """A first attempt for `batch`: retried in place for the inline window, and at all
        until the retry deadline, which each event counts from when it was first parked: the
        attempt lasts until its freshest event's, and when it gives up, only the events past
        their own deadline fail (`give_up`)."""
        now = self._clock()
        tried_for = min((i.parked_for_s() for i in batch.items), default=0.0)
        dataset = batch.key.dataset_id
        with self._lock:
            failing = self._failures_in_row.get(dataset, 0) >= FAILING_AFTER
            throttled = self._throttled.get(dataset, 0.0) > now + THROTTLE_WAIT_IN_PLACE_S
        # no inline window: an event waiting in place holds back its partition's later results
        inline_s = 0.0 if failing or throttled else self._inline_s
        return Attempt(batch, now + self._deadline_s - tried_for, now + inline_s, started=now)

    def throttled_until(self, dataset_id: str) -> float:
        with self._lock:
            return self._throttled.get(dataset_id, 0.0)

    def throttled_datasets(self) -> list[str]:
        """Datasets Meta asked to wait, and the wait is not over."""
        now = self._clock()
        with self._lock:
            return [d for d, until in self._throttled.items() if until > now]

    def deliver(self, attempt: Attempt) -> Delivery:
        """Try `attempt` once (splitting it when Meta rejects it); never sleeps."""
        delivery = Delivery()
        self._try(attempt, delivery)
        return delivery

    def give_up(
        self, attempt: Attempt, wait_s: float
    ) -> list[tuple[OutgoingEvent, Outcome | Parking]]:
        """The attempt may not wait `wait_s` more in place: its events are parked, or past the
        retry deadline, FAILED/RETRIES_EXHAUSTED."""
        now = self._clock()
        past = [
            i
            for i in attempt.batch.items
            if self._tried_for(i, attempt, now) + wait_s > self._deadline_s
        ]
        if past:
            log.error(
                "retries exhausted dataset=%s events=%d attempts=%d error=%s",
                attempt.batch.key.dataset_id,
                len(past),
                attempt.attempts,
                attempt.last_error,
            )
        expired: list[tuple[OutgoingEvent, Outcome | Parking]] = []
        expired += self.expire(attempt, past)
        gone = {id(i) for i in past}
        waiting = [i for i in attempt.batch.items if id(i) not in gone]
        if not waiting:
            return expired
        key = attempt.batch.key
        error = str(attempt.last_error or f"dataset {key.dataset_id} throttled by Meta")
        log.warning(
            "parked dataset=%s events=%d attempts=%d for at least %.0f s error=%s",
            attempt.batch.key.dataset_id,
            len(attempt.batch),
            attempt.attempts,
            wait_s,
            error,
        )
        parking = Parking(attempt.attempts, error[:200], wait_s)
        return expired + [(item, parking) for item in waiting]

    def expire(
        self, attempt: Attempt, items: list[OutgoingEvent] | None = None
    ) -> list[tuple[OutgoingEvent, Outcome]]:
        """The outcome of an attempt's events (`items`, default all) whose deadline passed
        while they waited."""
        if items is not None and not items:
            return []
        error = attempt.last_error or RetryableError("retry deadline passed")
        return self._all(
            attempt.batch.items if items is None else items,
            ResultStatus.FAILED,
            Reason.RETRIES_EXHAUSTED,
            error,
            attempt.attempts,
        )

    def _try(self, attempt: Attempt, delivery: Delivery) -> None:
        batch, items = attempt.batch, attempt.batch.items
        key = batch.key
        attempt.attempts += 1
        started = self._clock()
        try:
            response = self._client.send(
                key.dataset_id, [i.event for i in items], key.credentials, key.test_event_code
            )
        except ThrottledError as exc:
            self._count(key.dataset_id, started, RequestOutcome.THROTTLED, exc.meta)
            # the dataset waits what Meta asks; this batch also backs off on its own count
            with self._lock:
                until = self._clock() + exc.retry_after
                self._throttled[key.dataset_id] = max(until, self._throttled.get(key.dataset_id, 0))
            attempt.failures += 1
            delay = max(exc.retry_after, self._backoff(attempt.failures))
            self._retry(attempt, delay, exc, delivery)
        except RetryableError as exc:
            self._count(key.dataset_id, started, RequestOutcome.RETRYABLE, exc.meta)
            if isinstance(exc, AnswerLostError):  # sent again below: Meta may count it twice
                self._metrics.outcome_unknown.labels(exc.cause.value).inc()
            unreachable = isinstance(exc.__cause__, httpx.TransportError)
            self.breaker.failed(key.dataset_id, unreachable=unreachable)
            attempt.failures += 1
            self._retry(attempt, self._backoff(attempt.failures), exc, delivery)
        except (DatasetUnavailableError, AuthError, RestrictedRegionError, RejectedError) as exc:
            self._refused(attempt, exc, started, delivery)
        else:
            self._count(key.dataset_id, started, RequestOutcome.SUCCESS, None)
            self._metrics.batch_size.observe(len(items))
            test = str(key.test_event_code is not None).lower()
            self._metrics.events_sent.labels(test).inc(len(items))
            self._metrics.last_success.set(time.time())
            outcome = Outcome(ResultStatus.SENT, meta_response=response, attempts=attempt.attempts)
            delivery.done += [(item, outcome) for item in items]

    def _refused(
        self,
        attempt: Attempt,
        exc: DatasetUnavailableError | AuthError | RestrictedRegionError | RejectedError,
        started: float,
        delivery: Delivery,
    ) -> None:
        """Meta answered and refused: the request as a whole or its credentials (every event
        fails alike, in this one request), or one event (found by splitting the batch)."""
        items, key = attempt.batch.items, attempt.batch.key
        if isinstance(exc, DatasetUnavailableError):
            self._count(key.dataset_id, started, RequestOutcome.DATASET_UNAVAILABLE, exc.meta)
            log.error(
                "meta refused the request as a whole dataset=%s events=%d error=%s",
                key.dataset_id,
                len(items),
                exc,
            )
            delivery.done += self._all(
                items, ResultStatus.FAILED, Reason.DATASET_UNAVAILABLE, exc, attempt.attempts
            )
        elif isinstance(exc, AuthError):
            self._count(key.dataset_id, started, RequestOutcome.AUTH_ERROR, exc.meta)
            log.error(
                "meta refused credentials dataset=%s events=%d error=%s",
                key.dataset_id,
                len(items),
                exc,
            )
            delivery.done += self._all(
                items, ResultStatus.FAILED, Reason.META_AUTH_ERROR, exc, attempt.attempts
            )
        elif isinstance(exc, RestrictedRegionError):
            self._count(key.dataset_id, started, RequestOutcome.RESTRICTED_REGION, exc.meta)
            if len(items) > 1:
                self._split(attempt, delivery)
                return
            delivery.done += self._all(
                items, ResultStatus.SKIPPED, Reason.RESTRICTED_REGION, exc, attempt.attempts
            )
        else:
            self._count(key.dataset_id, started, RequestOutcome.REJECTED, exc.meta)
            if len(items) > 1:
                self._split(attempt, delivery)
                return
            log.warning(
                "meta rejected event dataset=%s event_id=%s error=%s",
                key.dataset_id,
                items[0].trigger.event_id,
                exc,
            )
            delivery.done += self._all(
                items, ResultStatus.FAILED, Reason.META_REJECTED, exc, attempt.attempts
            )

    def _retry(self, attempt: Attempt, delay: float, error: CapiError, delivery: Delivery) -> None:
        attempt.last_error = error
        if self._clock() + delay > min(attempt.park_at, attempt.deadline):
            delivery.done += self.give_up(attempt, delay)
            return
        self._metrics.retries.inc()
        log.warning(
            "retry dataset=%s events=%d attempt=%d in=%.2fs error=%s",
            attempt.batch.key.dataset_id,
            len(attempt.batch),
            attempt.attempts,
            delay,
            error,
        )
        attempt.not_before = self._clock() + delay
        delivery.retry.append(attempt)

    def _split(self, attempt: Attempt, delivery: Delivery) -> None:
        """Both halves come back to be sent at once, each on its own: the events of a half
        Meta accepts are resolved without waiting for the search in the other half."""
        items = attempt.batch.items
        half = len(items) // 2
        for part in (items[:half], items[half:]):
            delivery.retry.append(
                Attempt(
                    Batch(attempt.batch.key, attempt.batch.opened_at, list(part)),
                    attempt.deadline,
                    attempt.park_at,
                    attempt.attempts,
                    started=attempt.started,
                    failures=attempt.failures,
                )
            )

    @staticmethod
    def _tried_for(item: OutgoingEvent, attempt: Attempt, now: float) -> float:
        """Seconds `item` has been tried: since it was first parked, or since this attempt
        began for an event never parked."""
        return item.parked_for_s() if item.parked is not None else now - attempt.started

    def _backoff(self, attempts: int) -> float:
        ceiling = min(self._max, self._base * 2 ** (attempts - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _count(
        self,
        dataset_id: str,
        started: float,
        outcome: RequestOutcome,
        meta: MetaErrorInfo | None,
    ) -> None:
        """A request's outcome: in the metrics, the breaker and the dataset's failures in a row
        (a temporary failure adds one; an answer other than a throttle, ruled on its own, ends
        the row)."""
        with self._lock:
            if outcome is RequestOutcome.RETRYABLE:
                self._failures_in_row[dataset_id] = self._failures_in_row.get(dataset_id, 0) + 1
            elif outcome is not RequestOutcome.THROTTLED:
                self._failures_in_row.pop(dataset_id, None)
        if outcome is not RequestOutcome.RETRYABLE:
            self.breaker.answered()
        self._metrics.request_duration.observe(self._clock() - started)
        self._metrics.requests.labels(outcome.value, str(meta.code) if meta else "").inc()

    @staticmethod
    def _all(
        items: Sequence[OutgoingEvent],
        status: ResultStatus,
        reason: Reason,
        error: Exception,
        attempts: int,
    ) -> list[tuple[OutgoingEvent, Outcome]]:
        meta = getattr(error, "meta", None)
        outcome = Outcome(status, reason, str(error), meta_error=meta, attempts=attempts)
        return [(item, outcome) for item in items]
