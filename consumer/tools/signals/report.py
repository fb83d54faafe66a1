"""The signal-health report: per dataset and event name, SENT against Meta's weekly minimum,
SENT per day, match-key coverage and why events were not sent.

Built from the latest record of every key of the signals topic (`reader.py`), summed over
the input partitions. Days are UTC dates. The window is `days` days ending with `last_day` (today
by default); `week_sent` always covers the last 7 of them (`last_day` and the 6 before),
whatever `days` is, since Meta's minimum is per week. Every dataset and event name the topic
has counts for up to `last_day` appears (with zeros when nothing happened in the window), so
an event that stopped is still listed.

The JSON form (`SignalsReport.as_json`, `capi-consumer signals --json`; docs/signals.md). Its
field names are stable; new fields may be added.

- `topic`, `first_day`, `last_day` (`YYYY-MM-DD`), `days`, `week_first_day` (the first day of
  `week_sent`), `weekly_minimum` (50), `records_read`, `bytes_read` (keys and values of every
  record read, superseded ones and tombstones included), `undecodable_records` (ignored:
  records without a key or whose key is not a signals key, and values the report needed that
  are not signals records);
- `signals`: one object per dataset and event name, ordered by `dataset_id` then
  `event_name`:
  - `dataset_id`, `workspace_id` (of its latest counts), `event_name`;
  - `week_sent`, `below_minimum` (`week_sent` < `weekly_minimum`), `to_minimum` (SENT
    events missing to reach it, 0 when reached);
  - `sent`, `skipped`, `failed`: totals of the window;
  - `per_day`: one object per day of the window, oldest first, zeros included: `day`,
    `sent`, `skipped`, `failed`;
  - `match_keys`: one object per `user_data` key carried by a SENT event of the window, in
    the order of `KEY_ORDER` (then any other key alphabetically): `key`, `events` (SENT
    events carrying it), `share` (`events` / `sent`, 4 decimals);
  - `not_sent`: one object per reason of the window, most events first: `status` (`SKIPPED`
    or `FAILED`), `reason` (the result's code), `events`, `advice` (what to do about it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from consumer.events.signals import META_WEEKLY_MINIMUM, DayCounts
from consumer.store.signal_counts import SIGNALS_RETENTION_DAYS
from consumer.tools.signals.advice import advice_for
from consumer.tools.signals.reader import SignalRecords

__all__ = [
    "KEY_ORDER",
    "MAX_DAYS",
    "WEEK_DAYS",
    "DayTotals",
    "EventSignal",
    "KeyCoverage",
    "NotSentReason",
    "Selection",
    "SignalsReport",
    "Window",
    "build_report",
    "match_key_order",
]

WEEK_DAYS = 7
MAX_DAYS = SIGNALS_RETENTION_DAYS  # older days are gone from the topic
# customer information first, then the click id and the channel's ids
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

NotSentStatus = Literal["SKIPPED", "FAILED"]


@dataclass(frozen=True, slots=True)
class Window:
    """The days of the report: `days` UTC days ending with `last_day`."""

    last_day: dt.date
    days: int = WEEK_DAYS

    def __post_init__(self) -> None:
        if not 1 <= self.days <= MAX_DAYS:
            raise ValueError(f"days: {self.days} is not between 1 and {MAX_DAYS}")

    @property
    def first_day(self) -> dt.date:
        return self.last_day - dt.timedelta(days=self.days - 1)

    @property
    def week_first_day(self) -> dt.date:
        return self.last_day - dt.timedelta(days=WEEK_DAYS - 1)

    def day_names(self) -> tuple[str, ...]:
        """Each day of the window as `YYYY-MM-DD`, oldest first."""
        return tuple((self.first_day + dt.timedelta(days=i)).isoformat() for i in range(self.days))


@dataclass(frozen=True, slots=True)
class Selection:
    """Which datasets and events to report: empty sets keep all."""

    datasets: frozenset[str] = frozenset()
    workspaces: frozenset[str] = frozenset()
    below_only: bool = False


@dataclass(frozen=True, slots=True)
class DayTotals:
    day: str  # YYYY-MM-DD
    sent: int
    skipped: int
    failed: int


@dataclass(frozen=True, slots=True)
class KeyCoverage:
    """How many SENT events carried one `user_data` key, and their share of all SENT."""

    key: str
    events: int
    share: float


@dataclass(frozen=True, slots=True)
class NotSentReason:
    status: NotSentStatus
    reason: str
    events: int
    advice: str


@dataclass(frozen=True, slots=True)
class EventSignal:
    """One dataset's signal for one event name."""

    dataset_id: str
    event_name: str
    workspace_id: str
    week_sent: int
    per_day: tuple[DayTotals, ...]
    match_keys: tuple[KeyCoverage, ...]
    not_sent: tuple[NotSentReason, ...]

    @property
    def below_minimum(self) -> bool:
        return self.week_sent < META_WEEKLY_MINIMUM

    @property
    def to_minimum(self) -> int:
        return max(0, META_WEEKLY_MINIMUM - self.week_sent)

    @property
    def sent(self) -> int:
        return sum(day.sent for day in self.per_day)

    @property
    def skipped(self) -> int:
        return sum(day.skipped for day in self.per_day)

    @property
    def failed(self) -> int:
        return sum(day.failed for day in self.per_day)

    def as_json(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "workspace_id": self.workspace_id,
            "event_name": self.event_name,
            "week_sent": self.week_sent,
            "below_minimum": self.below_minimum,
            "to_minimum": self.to_minimum,
            "sent": self.sent,
            "skipped": self.skipped,
            "failed": self.failed,
            "per_day": [
                {"day": d.day, "sent": d.sent, "skipped": d.skipped, "failed": d.failed}
                for d in self.per_day
            ],
            "match_keys": [
                {"key": c.key, "events": c.events, "share": c.share} for c in self.match_keys
            ],
            "not_sent": [
                {"status": r.status, "reason": r.reason, "events": r.events, "advice": r.advice}
                for r in self.not_sent
            ],
        }


@dataclass(frozen=True, slots=True)
class SignalsReport:
    """The report, and what was read to build it."""

    topic: str
    window: Window
    signals: tuple[EventSignal, ...]
    records_read: int
    bytes_read: int
    undecodable_records: int

    def as_json(self) -> dict[str, Any]:
        """The JSON form (see the module's documentation)."""
        return {
            "topic": self.topic,
            "first_day": self.window.first_day.isoformat(),
            "last_day": self.window.last_day.isoformat(),
            "days": self.window.days,
            "week_first_day": self.window.week_first_day.isoformat(),
            "weekly_minimum": META_WEEKLY_MINIMUM,
            "records_read": self.records_read,
            "bytes_read": self.bytes_read,
            "undecodable_records": self.undecodable_records,
            "signals": [signal.as_json() for signal in self.signals],
        }


class _Sums:
    """One dataset and event name's sums while the records are read."""

    __slots__ = (
        "failed",
        "failed_reasons",
        "match_keys",
        "sent",
        "skipped",
        "skipped_reasons",
        "week_sent",
        "workspace",
    )

    def __init__(self, days: int) -> None:
        self.workspace = ("", "")  # (day, workspace_id) of the latest counts naming one
        self.week_sent = 0
        self.sent, self.skipped, self.failed = [0] * days, [0] * days, [0] * days
        self.match_keys: dict[str, int] = {}
        self.skipped_reasons: dict[str, int] = {}
        self.failed_reasons: dict[str, int] = {}

    def add(self, day: str, counts: DayCounts, index: int | None, in_week: bool) -> None:
        """One day's counts; `index` is the day's place in the window (None: not in it)."""
        if counts.workspace_id and (day, counts.workspace_id) > self.workspace:
            self.workspace = (day, counts.workspace_id)
        if in_week:
            self.week_sent += counts.sent
        if index is None:
            return
        self.sent[index] += counts.sent
        self.skipped[index] += sum(counts.skipped.values())
        self.failed[index] += sum(counts.failed.values())
        for into, counted in (
            (self.match_keys, counts.match_keys),
            (self.skipped_reasons, counts.skipped),
            (self.failed_reasons, counts.failed),
        ):
            for name, n in counted.items():
                into[name] = into.get(name, 0) + n


def build_report(records: SignalRecords, window: Window, selection: Selection) -> SignalsReport:
    """The report of `window` over `records`, for the datasets and events `selection` keeps.

    Only the values the report needs are decoded: those of the window and of the week, and
    for a dataset and event name with nothing newer, its latest older one (it is listed, with
    its workspace). A value that is not a signals record counts as undecodable.
    """
    day_index = {day: i for i, day in enumerate(window.day_names())}
    week_first, last = window.week_first_day.isoformat(), window.last_day.isoformat()
    earliest = min(window.first_day, window.week_first_day).isoformat()
    sums: dict[tuple[str, str], _Sums] = {}
    older: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
    undecodable = records.undecodable
    for key, value in records.latest.items():
        if key.day > last or (selection.datasets and key.dataset_id not in selection.datasets):
            continue
        name = (key.dataset_id, key.event_name)
        if key.day < earliest:
            older.setdefault(name, []).append((key.day, value))
            continue
        try:
            counts = DayCounts.decode(value)
        except ValueError:
            undecodable += 1
            continue
        group = sums.get(name)
        if group is None:
            group = sums[name] = _Sums(window.days)
        group.add(key.day, counts, day_index.get(key.day), key.day >= week_first)
    for name, days in older.items():
        undecodable += _add_latest_older(sums, name, days, window.days)
    signals = (
        _signal(dataset_id, event_name, group, window)
        for (dataset_id, event_name), group in sorted(sums.items())
    )
    return SignalsReport(
        records.topic,
        window,
        tuple(s for s in signals if _kept(s, selection)),
        records.records,
        records.bytes,
        undecodable,
    )


def _add_latest_older(
    sums: dict[tuple[str, str], _Sums],
    name: tuple[str, str],
    days: list[tuple[str, bytes]],
    window_days: int,
) -> int:
    """A dataset and event name listed by its days before the window, newest first, until one
    names its workspace (unless newer counts did); how many did not decode."""
    group = sums.get(name)
    if group is not None and group.workspace[1]:
        return 0
    undecodable = 0
    for day, value in sorted(days, reverse=True):
        try:
            counts = DayCounts.decode(value)
        except ValueError:
            undecodable += 1
            continue
        if group is None:
            group = sums[name] = _Sums(window_days)
        group.add(day, counts, None, in_week=False)
        if counts.workspace_id:
            break
    return undecodable


def _signal(dataset_id: str, event_name: str, sums: _Sums, window: Window) -> EventSignal:
    sent = sum(sums.sent)
    coverage = tuple(
        KeyCoverage(key, sums.match_keys[key], round(sums.match_keys[key] / sent, 4))
        for key in sorted(sums.match_keys, key=match_key_order)
        if sums.match_keys[key] and sent
    )
    by_status: tuple[tuple[NotSentStatus, dict[str, int]], ...] = (
        ("SKIPPED", sums.skipped_reasons),
        ("FAILED", sums.failed_reasons),
    )
    reasons = [
        NotSentReason(status, reason, events, advice_for(reason))
        for status, counted in by_status
        for reason, events in counted.items()
        if events
    ]
    reasons.sort(key=lambda r: (-r.events, r.status, r.reason))
    per_day = tuple(
        DayTotals(day, sums.sent[i], sums.skipped[i], sums.failed[i])
        for i, day in enumerate(window.day_names())
    )
    return EventSignal(
        dataset_id, event_name, sums.workspace[1], sums.week_sent, per_day, coverage, tuple(reasons)
    )


def match_key_order(key: str) -> tuple[int, str]:
    """Sort key of a `user_data` key: `KEY_ORDER`, then any other key alphabetically."""
    return _KEY_RANK.get(key, len(KEY_ORDER)), key


def _kept(signal: EventSignal, selection: Selection) -> bool:
    if selection.workspaces and signal.workspace_id not in selection.workspaces:
        return False
    return signal.below_minimum or not selection.below_only
