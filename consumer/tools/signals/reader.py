"""The signals topic read to its end, as compaction leaves it: the latest record of each key.

Records are read with `read_committed` (the service writes them in its transactions). The
latest record of a key wins and a null value deletes the key, so what is read does not depend
on whether the broker has compacted the topic yet. Values are kept as read: the report decodes
only those it needs (`report.py`). A record without a key, or whose key is not a signals key
(`consumer/events/signals.py`), is counted and left out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from consumer.events.signals import SignalKey
from consumer.settings import Settings
from consumer.tools.walkthrough import Tail

__all__ = ["LatestRecords", "SignalRecords", "read_signals"]


@dataclass(frozen=True, slots=True)
class SignalRecords:
    """The latest value of every key of the topic, and what reading them took."""

    topic: str
    latest: Mapping[SignalKey, bytes]  # values not decoded yet
    records: int  # every record read: superseded ones and tombstones too
    bytes: int  # their keys and values
    undecodable: int  # records without a key, or with one that is not a signals key


class LatestRecords:
    """Compaction as a reader sees it: the latest value of each key; a null value deletes it."""

    def __init__(self) -> None:
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
                _check_day(key.day)
            except ValueError:
                undecodable += 1
            else:
                latest[key] = value
        return SignalRecords(topic, latest, self._records, self._bytes, undecodable)


def _check_day(day: str) -> None:
    """`ValueError` unless `day` is a date written `YYYY-MM-DD`."""
    if dt.date.fromisoformat(day).isoformat() != day:
        raise ValueError(f"not a YYYY-MM-DD day: {day!r}")


def read_signals(settings: Settings, stopped: Callable[[], bool] = lambda: False) -> SignalRecords:
    """The signals topic (`settings.topics.signals`) read from its beginning to its end.

    A broker that does not answer, or a topic that does not exist, is a `CapiConsumerError`
    naming it (one line for the command).
    """
    topic = settings.topics.signals
    latest = LatestRecords()
    reader = Tail(settings, topic)
    try:
        for msg in reader.messages(follow=False, stopped=stopped):
            latest.add(msg.key(), msg.value())
    finally:
        reader.close()
    return latest.records(topic)
