"""The whole signals topic read to its end, as compaction leaves it: the latest record of each
key, every input partition's.

`signal_counts.py` keeps the counts of the partitions one instance owns; this is the topic as a
whole, which `capi-consumer signals` reports on and the service's signal-health gauges sum
(`consumer/events/signal_window.py`). Records are read with `read_committed` (the service
writes them in its transactions). The latest record of a key wins and a null value deletes the
key, so what is read does not depend on whether the broker has compacted the topic yet. Values
are kept as read: the window decodes only those it needs. A record without a key, or whose key
is not a signals key (`consumer/events/signals.py`), is counted and left out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from consumer.events.signals import SignalKey
from consumer.kafka.read_to_end import read_to_end

__all__ = ["LatestRecords", "SignalRecords", "read_signals_topic"]


@dataclass(frozen=True, slots=True)
class SignalRecords:
    """The latest value of every key of the topic, and what reading them took."""

    topic: str
    latest: Mapping[SignalKey, bytes]  # values not decoded yet
    records: int  # every record read: superseded ones and tombstones too
    bytes: int  # their keys and values
    undecodable: int  # records without a key, or with one that is not a signals key


class LatestRecords:
    """Compaction as a reader sees it: the latest value of each key; a null value deletes it.
    With `since`, the keys of earlier days are read and left out (the day ends the key)."""

    def __init__(self, since: dt.date | None = None) -> None:
        self._since = b"" if since is None else since.isoformat().encode()
        self._values: dict[bytes, bytes] = {}
        self._records = 0
        self._bytes = 0
        self._without_key = 0

    def add(self, key: bytes | None, value: bytes | None) -> None:
        """One record, in the topic's order."""
        self._records += 1
        self._bytes += len(key or b"") + len(value or b"")
        if key is None:
            self._without_key += 1
        elif key[-10:] < self._since:
            return
        elif value is None:
            self._values.pop(key, None)
        else:
            self._values[key] = value

    def records(self, topic: str) -> SignalRecords:
        """The latest values by decoded key; keys that do not decode counted and left out."""
        latest: dict[SignalKey, bytes] = {}
        undecodable = self._without_key
        for raw_key, value in self._values.items():
            try:
                key = SignalKey.decode(raw_key)
            except ValueError:
                undecodable += 1
            else:
                latest[key] = value
        return SignalRecords(topic, latest, self._records, self._bytes, undecodable)


def read_signals_topic(
    kafka_config: Mapping[str, Any],
    topic: str,
    *,
    since: dt.date | None = None,
    stopped: Callable[[], bool] = lambda: False,
) -> SignalRecords:
    """`topic` read from its beginning to its end with a consumer of `kafka_config` (errors:
    `read_to_end`), keeping the days from `since` (all by default); a read that `stopped()` cut
    short holds what it read until then."""
    latest = LatestRecords(since)
    read_to_end(kafka_config, topic, latest.add, stopped=stopped)
    return latest.records(topic)
