"""Signal health: what each result adds to its dataset's daily counts, and the record they are
kept in.

Meta optimises a campaign for an event once a dataset sends it about 50 times a week, and
matches more of those events to people the more customer information each carries. A
`DayCounts` holds, for one input partition, dataset, event name and UTC day (of the result's
`processed_at`), the results SENT, SKIPPED and FAILED by reason, and how many SENT events
carried each `user_data` key. Results without a dataset (undecodable input, an unknown
connection) and test events (sent to Meta's Test Events, not counted for ads) count nowhere.

The record in the signals topic (compacted; the latest record of a key counts):

- key: `<input partition>|<dataset_id>|<event name>|<day>`, for example
  `3|1234567890|LeadSubmitted|2026-12-05`;
- value: a JSON object with the fields `partition`, `dataset_id`, `workspace_id`, `event_name`,
  `day` (`YYYY-MM-DD`, UTC), `sent`, `skipped` and `failed` (objects of reason code to count),
  and `match_keys` (object of `user_data` key to the number of SENT events that carried it);
- null: the day is past the retention (`SIGNALS_RETENTION_DAYS`), the key is gone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from consumer.events.results import ConversionResult

__all__ = [
    "KEY_ORDER",
    "META_WEEKLY_MINIMUM",
    "SIGNALS_RETENTION_DAYS",
    "DayCounts",
    "SignalKey",
    "Tally",
    "match_key_order",
    "tally_of",
    "tally_of_result",
    "utc_day",
]

# the conversions of one event a week a dataset needs before Meta optimises ads for it
META_WEEKLY_MINIMUM = 50
# the UTC days the signals topic keeps; older days are deleted with a tombstone
SIGNALS_RETENTION_DAYS = 28
# the `user_data` keys a SENT event can carry, as reports list them: customer information
# first, then the click id and the channel's ids
KEY_ORDER: tuple[str, ...] = (
    "em",
    "ph",
    "fn",
    "ln",
    "db",
    "ge",
    "ct",
    "st",
    "zp",
    "country",
    "external_id",
    "ctwa_clid",
    "page_scoped_user_id",
    "ig_sid",
    "whatsapp_business_account_id",
    "page_id",
    "ig_account_id",
)
_KEY_RANK = {key: rank for rank, key in enumerate(KEY_ORDER)}


def match_key_order(key: str) -> tuple[int, str]:
    """Sort key of a `user_data` key: `KEY_ORDER`, then any other key alphabetically."""
    return _KEY_RANK.get(key, len(KEY_ORDER)), key


class SignalKey(NamedTuple):
    """Whose counts: an input partition's, for one dataset, event name and UTC day. A named
    tuple: one is built for every result, and it keys the counts (hashed and ordered in C)."""

    partition: int
    dataset_id: str
    event_name: str
    day: str  # YYYY-MM-DD

    def encode(self) -> bytes:
        return f"{self.partition}|{self.dataset_id}|{self.event_name}|{self.day}".encode()

    @classmethod
    def decode(cls, key: bytes) -> SignalKey:
        """The key of a signals record; `ValueError` for one that is not (a day not written
        `YYYY-MM-DD` included)."""
        partition, dataset_id, event_name, day = key.decode().split("|")
        if dt.date.fromisoformat(day).isoformat() != day:
            raise ValueError(f"not a YYYY-MM-DD day: {day!r}")
        return cls(int(partition), dataset_id, event_name, day)


@dataclass(slots=True)
class Tally:
    """What one result adds to the counts of its key."""

    key: SignalKey
    workspace_id: str
    status: str  # SENT, SKIPPED, FAILED
    reason: str
    user_data_keys: tuple[str, ...]


def utc_day(at_ms: int) -> dt.date:
    """The UTC day of a time in epoch milliseconds: the signals' day."""
    return dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC).date()


def tally_of(result: Mapping[str, Any]) -> Tally | None:
    """What a result (its Avro record) adds; None when it counts nowhere (no dataset, or a
    test event)."""
    return _tally(
        partition=result["source_partition"],
        dataset_id=result["dataset_id"],
        event_name=result["event_name"],
        test_event_code=result["test_event_code"],
        processed_at=result["processed_at"],
        workspace_id=result["workspace_id"],
        status=result["status"],
        reason=result["reason"],
        user_data_keys=tuple(result["user_data_keys"]),
    )


def tally_of_result(result: ConversionResult) -> Tally | None:
    """`tally_of` a result before it is encoded."""
    t = result.trigger
    if t is None:
        return None
    return _tally(
        partition=result.source.partition,
        dataset_id=t.dataset_id,
        event_name=t.event_type.event_name,
        test_event_code=t.test_event_code,
        processed_at=result.processed_at,
        workspace_id=t.workspace_id,
        status=str(result.status),
        reason=None if result.reason is None else str(result.reason),
        user_data_keys=result.user_data_keys,
    )


def _tally(
    *,
    partition: int,
    dataset_id: str | None,
    event_name: str | None,
    test_event_code: str | None,
    processed_at: int,
    workspace_id: str | None,
    status: str,
    reason: str | None,
    user_data_keys: tuple[str, ...],
) -> Tally | None:
    """The one rule of both: results without a dataset and test events count nowhere."""
    if not dataset_id or test_event_code or not event_name:
        return None
    key = SignalKey._make((partition, dataset_id, event_name, _day(processed_at)))
    return Tally(key, workspace_id or "", status, reason or "", user_data_keys)


_MS_A_DAY = 86_400_000
_days: dict[int, str] = {}  # day number since the epoch -> its ISO date, as results ask


def _day(at_ms: int) -> str:
    """`utc_day(at_ms)` in ISO form, each day computed once."""
    number = at_ms // _MS_A_DAY
    day = _days.get(number)
    if day is None:
        day = _days[number] = utc_day(at_ms).isoformat()
    return day


@dataclass(slots=True, eq=False, repr=False)
class DayCounts:
    """The counts of one `SignalKey`.

    A SENT event's `user_data` keys are counted by the set they came in (`add`): an event
    carries up to eleven, most events one of a few sets, and one count a set costs a tenth of
    one a key (0.15 against 1.36 µs). `match_keys` counts them key by key when it is read.
    """

    workspace_id: str = ""
    sent: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    _match_keys: dict[str, int] = field(default_factory=dict)
    # SENT events' keys, by the set they came in, not yet in `_match_keys`
    _key_sets: dict[tuple[str, ...], int] = field(default_factory=dict, init=False)

    @property
    def match_keys(self) -> dict[str, int]:
        """How many SENT events carried each `user_data` key."""
        if self._key_sets:
            counts = self._match_keys
            for keys, events in self._key_sets.items():
                for key in keys:
                    counts[key] = counts.get(key, 0) + events
            self._key_sets = {}
        return self._match_keys

    def _compared(self) -> tuple[object, ...]:
        return (self.workspace_id, self.sent, self.skipped, self.failed, self.match_keys)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DayCounts) and self._compared() == other._compared()

    def __repr__(self) -> str:
        workspace, sent, skipped, failed, match_keys = self._compared()
        return (
            f"DayCounts(workspace_id={workspace!r}, sent={sent!r}, skipped={skipped!r}, "
            f"failed={failed!r}, match_keys={match_keys!r})"
        )

    def add(self, tally: Tally) -> None:
        """Count one result."""
        if tally.workspace_id:
            self.workspace_id = tally.workspace_id
        if tally.status == "SENT":
            self.sent += 1
            keys = tally.user_data_keys
            self._key_sets[keys] = self._key_sets.get(keys, 0) + 1
        elif tally.status == "SKIPPED":
            self.skipped[tally.reason] = self.skipped.get(tally.reason, 0) + 1
        else:
            self.failed[tally.reason] = self.failed.get(tally.reason, 0) + 1

    def merge(self, other: DayCounts) -> None:
        """Add the counts of another input partition for the same day. The workspace is left
        as it is: which one is the latest is a question of days (`signal_window.py`)."""
        self.sent += other.sent
        for into, counted in (
            (self.match_keys, other.match_keys),
            (self.skipped, other.skipped),
            (self.failed, other.failed),
        ):
            for name, n in counted.items():
                into[name] = into.get(name, 0) + n

    def encode(self, key: SignalKey) -> bytes:
        """The record's value (see the module's documentation)."""
        return orjson.dumps(
            {
                "partition": key.partition,
                "dataset_id": key.dataset_id,
                "workspace_id": self.workspace_id,
                "event_name": key.event_name,
                "day": key.day,
                "sent": self.sent,
                "skipped": self.skipped,
                "failed": self.failed,
                "match_keys": self.match_keys,
            },
            option=orjson.OPT_SORT_KEYS,
        )

    @classmethod
    def decode(cls, value: bytes) -> DayCounts:
        """The counts of a record's value; `ValueError` for one that is not."""
        data: dict[str, Any] = orjson.loads(value)
        try:
            return cls(
                str(data["workspace_id"]),
                int(data["sent"]),
                {str(k): int(v) for k, v in data["skipped"].items()},
                {str(k): int(v) for k, v in data["failed"].items()},
                {str(k): int(v) for k, v in data["match_keys"].items()},
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a signals record: {exc!r}") from exc
