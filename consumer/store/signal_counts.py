"""The signal counts of the input partitions this instance owns, kept exact with the results.

Partition `p` of the signals topic holds input partition `p`'s counts, one compacted record per
dataset, event name and day (`consumer/events/signals.py`). The owner of an input partition owns
its counts:

- when the partition arrives, its signals partition is read from the start (the recovery reads
  it beside the results), the latest record of each key counts;
- each result that goes into a transaction adds its tally (`count`), and the transaction also
  carries the new value of every key it changed (`records`, produced just before the commit):
  the counts commit exactly when the results do, and an aborted transaction takes both away;
- when the partition leaves, its counts are dropped; its next owner reads them back.

Days past `SIGNALS_RETENTION_DAYS` are dropped with a tombstone, so the topic keeps about that
many records per input partition, dataset and event name.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable

from consumer.events.signals import SIGNALS_RETENTION_DAYS, DayCounts, SignalKey, Tally, utc_day
from consumer.kafka.publisher import OutRecord

__all__ = ["SignalCounts"]

log = logging.getLogger(__name__)


class SignalCounts:
    """Counts by `SignalKey` for the owned input partitions, and which changed since they were
    last written."""

    def __init__(
        self,
        topic: str,
        input_topic: str,
        *,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.topic = topic
        self._input_topic = input_topic
        self._clock_ms = clock_ms
        self._counts: dict[SignalKey, DayCounts] = {}
        # values read back and not needed yet: a key's superseded records are never decoded
        self._restored: dict[SignalKey, bytes] = {}
        self._changed: set[SignalKey] = set()
        self._expired_before = ""  # the oldest day kept, when expired days were last dropped
        self.read_offsets: dict[int, int] = {}  # signals partition -> next offset restored
        self.undecodable = 0

    def __len__(self) -> int:
        return len(self._counts) + len(self._restored)

    def get(self, key: SignalKey) -> DayCounts | None:
        counts = self._counts.get(key)
        if counts is not None:  # a key counted here is never among the restored values
            return counts
        value = self._restored.pop(key, None)
        if value is not None:
            try:
                self._counts[key] = DayCounts.decode(value)
            except ValueError:
                self.undecodable += 1
                log.warning("undecodable signals value key=%s: counted from zero", key.encode())
        return self._counts.get(key)

    def restore(self, key: bytes | None, value: bytes | None, partition: int, offset: int) -> None:
        """A record of the signals topic, read back when its partition arrived: the latest of
        a key replaces what was read before it, a tombstone removes it."""
        self.read_offsets[partition] = offset + 1
        try:
            signal = SignalKey.decode(key or b"")
        except (ValueError, UnicodeDecodeError):
            self.undecodable += 1
            log.warning("undecodable signals record partition=%d offset=%d", partition, offset)
            return
        self._counts.pop(signal, None)
        if value is None:
            self._restored.pop(signal, None)
        else:
            self._restored[signal] = value

    def count(self, tally: Tally) -> None:
        """A result goes into the open transaction: its key's counts grow."""
        key = tally.key
        counts = self.get(key)
        if counts is None:
            counts = self._counts[key] = DayCounts()
        counts.add(tally)
        self._changed.add(key)

    def records(self) -> list[OutRecord]:
        """The records the open transaction carries: the new value of every key changed since
        the last call, and a tombstone for each day past the retention."""
        out = [
            OutRecord(
                self.topic,
                key.encode(),
                self._counts[key].encode(key),
                (self._input_topic, key.partition),
                partition=key.partition,
            )
            for key in sorted(self._changed)
            if key in self._counts
        ]
        self._changed = set()
        return out + self._expire()

    def _expire(self) -> list[OutRecord]:
        today = utc_day(self._clock_ms())
        oldest = (today - dt.timedelta(days=SIGNALS_RETENTION_DAYS - 1)).isoformat()
        if oldest == self._expired_before:
            return []
        self._expired_before = oldest
        expired = [key for key in (*self._counts, *self._restored) if key.day < oldest]
        for key in expired:
            self._counts.pop(key, None)
            self._restored.pop(key, None)
        return [
            OutRecord(
                self.topic,
                key.encode(),
                None,
                (self._input_topic, key.partition),
                partition=key.partition,
            )
            for key in sorted(expired)
        ]

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions that left (or arrive, before their counts are read back)."""
        gone = set(partitions)
        for held in (self._counts, self._restored):
            for key in [k for k in held if k.partition in gone]:
                del held[key]
        self._changed = {k for k in self._changed if k.partition not in gone}
        for partition in gone:
            self.read_offsets.pop(partition, None)
        self._expired_before = ""  # read back, they may hold expired days again
