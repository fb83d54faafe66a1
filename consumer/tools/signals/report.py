"""The signal-health report: per dataset and event name, SENT against Meta's weekly minimum,
SENT per day, match-key coverage and why events were not sent.

Built from the latest record of every key of the signals topic (`reader.py`), summed over
the input partitions by `consumer/events/signal_window.py`. Days are UTC dates. The window is
`days` days ending with `last_day` (today by default); `week_sent` always covers the last 7 of
them (`last_day` and the 6 before), whatever `days` is, since Meta's minimum is per week. Every
dataset and event name the topic has counts for up to `last_day` appears (with zeros when
nothing happened in the window), so an event that stopped is still listed.

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
    the order of `KEY_ORDER` (`consumer/events/signals.py`; then any other key
    alphabetically): `key`, `events` (SENT events carrying it), `share` (`events` / `sent`, 4
    decimals);
  - `not_sent`: one object per reason of the window, most events first: `status` (`SKIPPED`
    or `FAILED`), `reason` (the result's code), `events`, `advice` (what to do about it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from consumer.events.signal_window import EventDays, Window, count_window
from consumer.events.signals import META_WEEKLY_MINIMUM, match_key_order
from consumer.store.signals_topic import SignalRecords
from consumer.tools.signals.advice import advice_for

__all__ = [
    "DayTotals",
    "EventSignal",
    "KeyCoverage",
    "NotSentReason",
    "Selection",
    "SignalsReport",
    "build_report",
]

NotSentStatus = Literal["SKIPPED", "FAILED"]


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


def build_report(records: SignalRecords, window: Window, selection: Selection) -> SignalsReport:
    """The report of `window` over `records`, for the datasets and events `selection` keeps."""
    counts = count_window(records.latest, window, selection.datasets)
    signals = (_signal(event, window) for event in counts.events)
    return SignalsReport(
        records.topic,
        window,
        tuple(s for s in signals if _kept(s, selection)),
        records.records,
        records.bytes,
        records.undecodable + counts.undecodable,
    )


def _signal(event: EventDays, window: Window) -> EventSignal:
    totals = event.total(window.indices())
    coverage = tuple(
        KeyCoverage(key, totals.match_keys[key], round(totals.match_keys[key] / totals.sent, 4))
        for key in sorted(totals.match_keys, key=match_key_order)
        if totals.match_keys[key] and totals.sent
    )
    by_status: tuple[tuple[NotSentStatus, dict[str, int]], ...] = (
        ("SKIPPED", totals.skipped),
        ("FAILED", totals.failed),
    )
    reasons = [
        NotSentReason(status, reason, events, advice_for(reason))
        for status, counted in by_status
        for reason, events in counted.items()
        if events
    ]
    reasons.sort(key=lambda r: (-r.events, r.status, r.reason))
    per_day = tuple(
        DayTotals(name, day.sent, sum(day.skipped.values()), sum(day.failed.values()))
        for name, day in zip(window.day_names(), map(event.day, window.indices()), strict=True)
    )
    return EventSignal(
        event.dataset_id,
        event.event_name,
        event.workspace_id,
        event.total(window.week_indices()).sent,
        per_day,
        coverage,
        tuple(reasons),
    )


def _kept(signal: EventSignal, selection: Selection) -> bool:
    if selection.workspaces and signal.workspace_id not in selection.workspaces:
        return False
    return signal.below_minimum or not selection.below_only
