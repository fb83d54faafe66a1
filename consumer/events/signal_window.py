"""Signal counts over a window of UTC days: per dataset and event name, each day's counts summed
over the input partitions.

The counts come from the latest record of every key of the signals topic
(`store/signals_topic.py`). A `Window` is `days` days ending with `last_day`; its week is the
last 7 of them, and reaches before its first day when `days` is less than 7, since Meta's
minimum is per week. The days counted are the window's and its week's. Every dataset and event
name the topic has counts for up to `last_day` is listed, with empty days when nothing happened
in the window, so an event that stopped is still seen; of its days before the window only the
workspace is read, from the newest that names one.

Only the values needed are decoded: those of the counted days, and for a dataset and event name
with nothing newer, its older ones until one names the workspace. A value that is not a signals
record counts as undecodable.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from consumer.events.signals import SIGNALS_RETENTION_DAYS, DayCounts, SignalKey

__all__ = ["MAX_DAYS", "WEEK_DAYS", "EventDays", "Window", "WindowCounts", "count_window"]

WEEK_DAYS = 7
MAX_DAYS = SIGNALS_RETENTION_DAYS  # older days are gone from the topic


@dataclass(frozen=True, slots=True)
class Window:
    """`days` UTC days ending with `last_day`, and the week ending with it."""

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

    @property
    def span(self) -> int:
        """How many days are counted: the window's and its week's."""
        return max(self.days, WEEK_DAYS)

    def counted_days(self) -> tuple[str, ...]:
        """Each day counted as `YYYY-MM-DD`, oldest first; `EventDays` are in this order."""
        first = self.last_day - dt.timedelta(days=self.span - 1)
        return tuple((first + dt.timedelta(days=i)).isoformat() for i in range(self.span))

    def day_names(self) -> tuple[str, ...]:
        """Each day of the window as `YYYY-MM-DD`, oldest first."""
        return self.counted_days()[-self.days :]

    def indices(self) -> range:
        """Where the window's days are among the counted days."""
        return range(self.span - self.days, self.span)

    def week_indices(self) -> range:
        """Where the week's days are among the counted days."""
        return range(self.span - WEEK_DAYS, self.span)


class EventDays:
    """One dataset and event name: the counts of each counted day, summed over the input
    partitions, and the workspace of its latest counts that name one."""

    __slots__ = ("_days", "_workspace", "dataset_id", "event_name")

    def __init__(self, dataset_id: str, event_name: str) -> None:
        self.dataset_id = dataset_id
        self.event_name = event_name
        self._days: dict[int, DayCounts] = {}  # only the days with counts
        self._workspace = ("", "")  # (day, workspace_id) of the latest counts naming one

    @property
    def workspace_id(self) -> str:
        return self._workspace[1]

    def add(self, day: str, counts: DayCounts, index: int | None) -> None:
        """One input partition's counts of `day`; `index` is the day's place among the counted
        days (None: older, only its workspace is kept)."""
        if counts.workspace_id and (day, counts.workspace_id) > self._workspace:
            self._workspace = (day, counts.workspace_id)
        if index is None:
            return
        summed = self._days.get(index)
        if summed is None:
            summed = self._days[index] = DayCounts()
        summed.merge(counts)

    def day(self, index: int) -> DayCounts:
        """The counts of one counted day (empty when nothing happened)."""
        counts = self._days.get(index)
        return DayCounts() if counts is None else counts

    def total(self, indices: range) -> DayCounts:
        """The counts of these counted days, summed."""
        total = DayCounts()
        for index in indices:
            counts = self._days.get(index)
            if counts is not None:
                total.merge(counts)
        return total


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """Every dataset and event name of a window, ordered by dataset then event name."""

    window: Window
    events: tuple[EventDays, ...]
    undecodable: int  # values that are not signals records


def count_window(
    latest: Mapping[SignalKey, bytes], window: Window, datasets: frozenset[str] = frozenset()
) -> WindowCounts:
    """The counts of `window` from the latest value of each key, for `datasets` (all when
    empty)."""
    index = {day: i for i, day in enumerate(window.counted_days())}
    first, last = window.counted_days()[0], window.last_day.isoformat()
    events: dict[tuple[str, str], EventDays] = {}
    older: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
    undecodable = 0
    for key, value in latest.items():
        if key.day > last or (datasets and key.dataset_id not in datasets):
            continue
        name = (key.dataset_id, key.event_name)
        if key.day < first:
            older.setdefault(name, []).append((key.day, value))
            continue
        try:
            counts = DayCounts.decode(value)
        except ValueError:
            undecodable += 1
            continue
        days = events.get(name)
        if days is None:
            days = events[name] = EventDays(*name)
        days.add(key.day, counts, index[key.day])
    for name, older_days in older.items():
        undecodable += _add_latest_older(events, name, older_days)
    return WindowCounts(window, tuple(events[name] for name in sorted(events)), undecodable)


def _add_latest_older(
    events: dict[tuple[str, str], EventDays],
    name: tuple[str, str],
    days: list[tuple[str, bytes]],
) -> int:
    """A dataset and event name listed by its days before the counted ones, newest first, until
    one names its workspace (unless newer counts did); how many did not decode."""
    event = events.get(name)
    if event is not None and event.workspace_id:
        return 0
    undecodable = 0
    for day, value in sorted(days, reverse=True):
        try:
            counts = DayCounts.decode(value)
        except ValueError:
            undecodable += 1
            continue
        if event is None:
            event = events[name] = EventDays(*name)
        event.add(day, counts, None)
        if counts.workspace_id:
            break
    return undecodable
