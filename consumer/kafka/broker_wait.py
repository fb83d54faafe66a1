"""Waiting for a broker that does not answer: growing pauses, each one said.

A call the service cannot go on without (a transaction's commit, the committed offsets of
partitions just assigned) is made again until the broker answers, however long that takes. Each
pause is logged and reported (`report`, the monitor's note that the loop waits on a dependency
rather than being stuck), so that `/readyz` says what is awaited and the liveness probe does not
restart a process that is only waiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from confluent_kafka import KafkaError, KafkaException, TopicPartition

__all__ = ["BROKER_AWAY", "Pauses", "until_answered", "watermarks"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# what librdkafka answers a call when no broker (or no coordinator) answers it in time
BROKER_AWAY = frozenset(
    {
        KafkaError._TIMED_OUT,  # noqa: SLF001
        KafkaError._TRANSPORT,  # noqa: SLF001
        KafkaError._ALL_BROKERS_DOWN,  # noqa: SLF001
        KafkaError._WAIT_COORD,  # noqa: SLF001
        KafkaError._RESOLVE,  # noqa: SLF001
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
    }
)


class Pauses:
    """The pauses of one wait: 0.5 s, doubling up to 5 s. `report` hears what is awaited
    before each pause."""

    def __init__(
        self,
        report: Callable[[str], None],
        *,
        first_s: float = 0.5,
        max_s: float = 5.0,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._report = report
        self._next = first_s
        self._max = max_s
        self._sleep = sleep or time.sleep

    def pause(self, what: str) -> None:
        """Say what waits, then pause before the next try."""
        log.warning("waiting: %s; trying again in %.1f s", what, self._next)
        self._report(what)
        self._sleep(self._next)
        self._next = min(self._next * 2, self._max)


def _broker_away(error: KafkaError) -> bool:
    return error.code() in BROKER_AWAY


def until_answered(
    call: Callable[[], T],
    what: str,
    report: Callable[[str], None],
    *,
    again: Callable[[KafkaError], bool] = _broker_away,
) -> T:
    """`call()`, made again while it fails with an error `again` says is worth waiting out (by
    default: the broker does not answer); other errors raise."""
    pauses = Pauses(report)
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0]
            if not isinstance(error, KafkaError) or not again(error):
                raise
            pauses.pause(f"{what}: {error.str()}")


class _Watermarked(Protocol):
    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]: ...


def watermarks(
    consumer: _Watermarked, tp: TopicPartition, report: Callable[[str], None]
) -> tuple[int, int]:
    """Where `tp` starts and ends, asked again while the broker does not answer."""
    return until_answered(
        lambda: consumer.get_watermark_offsets(tp, 30),
        f"the broker to say where {tp.topic}[{tp.partition}] starts and ends",
        report,
    )
