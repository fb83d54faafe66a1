"""Sending a batch to Meta and deciding each event's outcome.

- Accepted: every event is SENT with Meta's response.
- Retryable errors (timeouts, 5xx, codes 1 and 2) and throttling: exponential backoff with
  full jitter (throttling waits at least what Meta's usage headers ask), until the retry
  deadline, then FAILED/RETRIES_EXHAUSTED.
- Token or permission errors: every event FAILED/META_AUTH_ERROR.
- An invalid request: Meta rejects the whole batch for one bad event, so the batch is split in
  halves and each half resent until the offending events stand alone (FAILED/META_REJECTED).
- "Messaging Event Within Messaging Restrictive Region": split the same way; the lone event is
  SKIPPED/RESTRICTED_REGION and its asset is remembered so later events skip locally.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .batching import Batch, Pending
from .capi import CapiClient, MetaResponse
from .errors import (
    AuthError,
    CapiError,
    MetaErrorInfo,
    RejectedError,
    RestrictedRegionError,
    RetryableError,
    ThrottledError,
)
from .metrics import Metrics
from .policy import Reason
from .records import ResultStatus

__all__ = ["Dispatcher", "Outcome"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    status: ResultStatus
    reason: Reason | None = None
    detail: str | None = None
    meta_response: MetaResponse | None = None
    meta_error: MetaErrorInfo | None = None
    attempts: int = 1


class Dispatcher:
    """Delivers batches through a `CapiClient`; safe to call from several threads."""

    def __init__(
        self,
        client: CapiClient,
        metrics: Metrics,
        *,
        retry_deadline_s: float,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        on_restricted: Callable[[str], None] = lambda asset_id: None,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._deadline_s = retry_deadline_s
        self._base = backoff_base_s
        self._max = backoff_max_s
        self._clock = clock
        self._sleep = sleep
        self._on_restricted = on_restricted

    def deliver(self, batch: Batch) -> list[tuple[Pending, Outcome]]:
        """The outcome of every event of `batch`, in no particular order."""
        return self._deliver(batch, batch.items, self._clock() + self._deadline_s, 0)

    def _deliver(
        self, batch: Batch, items: Sequence[Pending], deadline: float, prior_attempts: int
    ) -> list[tuple[Pending, Outcome]]:
        key = batch.key
        attempts = prior_attempts
        error: CapiError
        while True:
            attempts += 1
            started = self._clock()
            try:
                response = self._client.send(
                    key.dataset_id, [i.event for i in items], key.credentials, key.test_event_code
                )
            except ThrottledError as exc:
                self._count(started, "throttled", exc.meta)
                delay = max(exc.retry_after, self._backoff(attempts))
                error, retry = exc, True
            except RetryableError as exc:
                self._count(started, "retryable", exc.meta)
                delay, error, retry = self._backoff(attempts), exc, True
            except AuthError as exc:
                self._count(started, "auth_error", exc.meta)
                log.error(
                    "meta refused credentials dataset=%s events=%d error=%s",
                    key.dataset_id, len(items), exc,
                )  # fmt: skip
                return self._all(items, ResultStatus.FAILED, "META_AUTH_ERROR", exc, attempts)
            except RestrictedRegionError as exc:
                self._count(started, "restricted_region", exc.meta)
                if len(items) > 1:
                    return self._split(batch, items, deadline, attempts)
                self._on_restricted(items[0].trigger.channel_account_id)
                return self._all(items, ResultStatus.SKIPPED, "RESTRICTED_REGION", exc, attempts)
            except RejectedError as exc:
                self._count(started, "rejected", exc.meta)
                if len(items) > 1:
                    return self._split(batch, items, deadline, attempts)
                log.warning(
                    "meta rejected event dataset=%s event_id=%s error=%s",
                    key.dataset_id, items[0].trigger.event_id, exc,
                )  # fmt: skip
                return self._all(items, ResultStatus.FAILED, "META_REJECTED", exc, attempts)
            else:
                self._count(started, "success", None)
                self._metrics.batch_size.observe(len(items))
                self._metrics.events_sent.labels(str(key.test_event_code is not None).lower()).inc(
                    len(items)
                )
                self._metrics.last_success.set(time.time())
                outcome = Outcome(ResultStatus.SENT, meta_response=response, attempts=attempts)
                return [(item, outcome) for item in items]
            assert retry
            if self._clock() + delay > deadline:
                log.error(
                    "retries exhausted dataset=%s events=%d attempts=%d error=%s",
                    key.dataset_id, len(items), attempts, error,
                )  # fmt: skip
                return self._all(items, ResultStatus.FAILED, "RETRIES_EXHAUSTED", error, attempts)
            self._metrics.retries.inc()
            log.warning(
                "retrying dataset=%s events=%d attempt=%d in=%.2fs error=%s",
                key.dataset_id, len(items), attempts, delay, error,
            )  # fmt: skip
            self._sleep(delay)

    def _split(
        self, batch: Batch, items: Sequence[Pending], deadline: float, attempts: int
    ) -> list[tuple[Pending, Outcome]]:
        half = len(items) // 2
        return self._deliver(batch, items[:half], deadline, attempts) + self._deliver(
            batch, items[half:], deadline, attempts
        )

    def _backoff(self, attempts: int) -> float:
        ceiling = min(self._max, self._base * 2 ** (attempts - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _count(self, started: float, outcome: str, meta: MetaErrorInfo | None) -> None:
        self._metrics.request_duration.observe(self._clock() - started)
        self._metrics.requests.labels(outcome, str(meta.code) if meta else "").inc()

    @staticmethod
    def _all(
        items: Sequence[Pending],
        status: ResultStatus,
        reason: Reason,
        error: Exception,
        attempts: int,
    ) -> list[tuple[Pending, Outcome]]:
        meta = getattr(error, "meta", None)
        outcome = Outcome(status, reason, str(error), meta_error=meta, attempts=attempts)
        return [(item, outcome) for item in items]
