"""Sending: batches to attempts, attempts to a bounded pool of sender threads, retries held
until their time, outcomes back to the main loop.

The main loop calls `add` for each approved event and `step` on every turn; `step` returns the
outcomes that arrived. Nothing here touches Kafka. A dataset that Meta throttles is held back
as a whole while the others keep flowing: its new batches get no inline window
(`Dispatcher.attempt`) and are parked at once rather than wait in place; retries wait within
their window.

A partition the instance gives up (`leave`) gets nothing more sent: its batched events and those
waiting for a retry are handed back at once, and retries or split halves of its events that come
back from requests in flight are handed back too (`take_abandoned`) instead of being sent.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from consumer.errors import RetryableError
from consumer.events.results import Partition
from consumer.meta.batching import Batch, Batcher, BatchKey, OutgoingEvent
from consumer.meta.dispatch import Attempt, Delivery, Dispatcher, Outcome, Parking

__all__ = ["BACKLOG_LINGER_S", "Sender"]

log = logging.getLogger(__name__)


# With a backlog, batches wait up to this long to fill up: latency is the queue's then, and
# fuller requests cost Meta's rate limits and this process less per event (a few datasets
# sharing 6,000 events/s fill 1,000-event batches within a second; smaller datasets and test
# events still go within a second).
BACKLOG_LINGER_S = 1.0


class Sender:
    """Schedules batches onto a bounded pool of sender threads and holds retries until due;
    used from the main loop only (the threads hand answers back through a queue)."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        batcher: Batcher,
        max_in_flight: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dispatcher = dispatcher
        self._batcher = batcher
        self._max_in_flight = max_in_flight
        self._clock = clock
        self._pool: ThreadPoolExecutor | None = None
        self._waiting: list[tuple[float, int, Attempt]] = []  # heap by not_before
        self._seq = itertools.count()
        self._in_flight: dict[Future[None], Attempt] = {}
        self._completed: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
        self._left: set[Partition] = set()  # partitions given up: nothing more is sent for them
        self._abandoned: list[OutgoingEvent] = []

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self._max_in_flight, thread_name_prefix="capi-send")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # -- intake ------------------------------------------------------------------------------

    def add(self, key: BatchKey, item: OutgoingEvent) -> None:
        full = self._batcher.add(key, item)
        if full is not None:
            self._schedule(self._dispatcher.attempt(full))

    def flush(self) -> None:
        """Send every open batch now, whatever its size."""
        for batch in self._batcher.flush():
            self._schedule(self._dispatcher.attempt(batch))

    # -- the loop ----------------------------------------------------------------------------

    def step(self, backlog: bool = False) -> list[tuple[OutgoingEvent, Outcome | Parking]]:
        """Move batches along; return the outcomes that came back since the last call.

        `backlog`: the input has more waiting; batches may then linger longer and fill up.
        """
        free = self._max_in_flight - len(self._in_flight)
        if free > 0:
            # lingered batches go when a worker is free; while all are busy (a slow Graph
            # API) they keep growing, up to the batch size, and slow answers cost no throughput
            linger = BACKLOG_LINGER_S if backlog else None
            for batch in self._batcher.due(limit=free, linger_s=linger):
                self._schedule(self._dispatcher.attempt(batch))
        now = self._clock()
        while self._waiting and self._waiting[0][0] <= now:
            _, _, attempt = heapq.heappop(self._waiting)
            self._schedule(attempt)
        done: list[tuple[OutgoingEvent, Outcome | Parking]] = []
        while True:
            try:
                delivery = self._completed.get_nowait()
            except queue.Empty:
                break
            done += delivery.done
            for attempt in delivery.retry:
                if self._left:
                    self._abandoned += attempt.batch.take(self._left)
                if attempt.batch.items:
                    self._schedule(attempt)
        return done

    def take_abandoned(self) -> list[OutgoingEvent]:
        """Events of partitions given up that came back for another try: not sent again."""
        abandoned, self._abandoned = self._abandoned, []
        return abandoned

    def next_wakeup(self) -> float | None:
        """Seconds until a batch lingers out or a retry is due; None when nothing waits."""
        candidates = []
        if len(self._in_flight) < self._max_in_flight:
            candidates.append(self._batcher.next_due_in())
        if self._waiting:
            candidates.append(max(0.0, self._waiting[0][0] - self._clock()))
        times = [c for c in candidates if c is not None]
        return min(times) if times else None

    def _schedule(self, attempt: Attempt) -> None:
        now = self._clock()
        not_before = max(
            attempt.not_before, self._dispatcher.throttled_until(attempt.batch.key.dataset_id)
        )
        if not_before > now:
            if not_before > min(attempt.park_at, attempt.deadline):
                done = self._dispatcher.give_up(attempt, not_before - now)
                self._completed.put(Delivery(done=done))
                return
            heapq.heappush(self._waiting, (not_before, next(self._seq), attempt))
            return
        assert self._pool is not None, "sender not started"
        future = self._pool.submit(self._send, attempt)
        self._in_flight[future] = attempt
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        self._in_flight.pop(future, None)

    def _send(self, attempt: Attempt) -> None:
        try:
            delivery = self._dispatcher.deliver(attempt)
        except Exception as exc:  # a bug in a worker must not lose a batch
            log.exception("batch delivery crashed dataset=%s", attempt.batch.key.dataset_id)
            attempt.last_error = RetryableError(f"internal error: {type(exc).__name__}")
            delivery = Delivery(done=list(self._dispatcher.expire(attempt)))
        self._completed.put(delivery)

    # -- state -------------------------------------------------------------------------------

    def events(self, partitions: set[Partition] | None = None) -> int:
        """Events batched, waiting for a retry or in flight (of `partitions`, or all)."""
        batches: list[Batch] = [a.batch for _, _, a in self._waiting]
        batches += [a.batch for a in list(self._in_flight.values())]
        items = [i for b in batches for i in b.items]
        if partitions is None:
            return len(items) + len(self._batcher)
        return sum(1 for i in items if (i.source.topic, i.source.partition) in partitions)

    def in_flight(self, partitions: set[Partition] | None = None) -> int:
        """Events in requests on their way to Meta (of `partitions`, or all)."""
        items = [i for a in list(self._in_flight.values()) for i in a.batch.items]
        if partitions is None:
            return len(items)
        return sum(1 for i in items if i.source.topic_partition in partitions)

    def in_flight_requests(self) -> int:
        return len(self._in_flight)

    def leave(self, partitions: set[Partition]) -> list[OutgoingEvent]:
        """Give `partitions` up: their batched events and those waiting for a retry come back
        now (not sent); requests already in flight finish, and what of theirs comes back for
        another try is abandoned too (`take_abandoned`)."""
        self._left |= partitions
        dropped = self._batcher.drop(partitions)
        kept: list[tuple[float, int, Attempt]] = []
        for entry in self._waiting:
            dropped += entry[2].batch.take(partitions)
            if entry[2].batch.items:
                kept.append(entry)
        heapq.heapify(kept)
        self._waiting = kept
        return dropped

    def join(self, partitions: set[Partition]) -> None:
        """`partitions` are this instance's (again)."""
        self._left -= partitions
