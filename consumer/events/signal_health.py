"""Every dataset's signal at a glance, for the service's gauges: how many dataset events are
under Meta's weekly minimum, which fell under it since the week before, the weeks of the lowest,
and the share of SENT events carrying each match key.

Summed from the whole signals topic (`signal_window.py`) over complete UTC days: the last week
is the 7 days before today, the week before it the 7 days before those (a day still going would
make the week dip every midnight). A dataset event counts when it has a result, SENT, SKIPPED
or FAILED, on one of those 14 days or today:

- `below_minimum`: those whose last week has fewer SENT events than the minimum (50);
- `fell_below`: those whose week before reached the minimum and whose last week did not;
- `shown`: at most `series` of them with their last week's SENT, so that the series labelled by
  dataset stay few however many datasets there are: every one that fell below first, then the
  lowest of the others (fewest SENT first, then by dataset and event name);
- `coverage`: for each key of `KEY_ORDER`, the share of the last week's SENT events, all
  datasets together, that carried it; empty when nothing was sent.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Mapping
from dataclasses import dataclass

from consumer.events.signal_window import WEEK_DAYS, Window, count_window
from consumer.events.signals import KEY_ORDER, META_WEEKLY_MINIMUM, DayCounts, SignalKey

__all__ = ["SignalHealth", "WeeklySent", "first_day_read", "signal_health"]

_DAYS = 2 * WEEK_DAYS + 1  # the two complete weeks, and today
_WEEK_BEFORE = range(0, WEEK_DAYS)
_LAST_WEEK = range(WEEK_DAYS, 2 * WEEK_DAYS)


@dataclass(frozen=True, slots=True)
class WeeklySent:
    """One dataset event's last complete week."""

    dataset_id: str
    event_name: str
    sent: int
    fell_below: bool  # the week before reached the minimum, this one did not


@dataclass(frozen=True, slots=True)
class SignalHealth:
    """What the gauges show (see the module's documentation)."""

    events: int
    below_minimum: int
    fell_below: int
    shown: tuple[WeeklySent, ...]
    coverage: Mapping[str, float]


def first_day_read(today: dt.date) -> dt.date:
    """The first day whose counts `signal_health` reads on `today`: older ones need no
    reading."""
    return Window(today, _DAYS).first_day


def signal_health(latest: Mapping[SignalKey, bytes], today: dt.date, series: int) -> SignalHealth:
    """The health of every dataset event in `latest` (the latest value of each key of the
    signals topic) on `today`, showing at most `series` of them."""
    window = Window(today, _DAYS)
    weeks: list[WeeklySent] = []
    week_sent = DayCounts()
    for event in count_window(latest, window).events:
        if not _has_results(event.total(window.indices())):
            continue  # listed for its older days only
        last = event.total(_LAST_WEEK)
        before = event.total(_WEEK_BEFORE).sent
        fell = before >= META_WEEKLY_MINIMUM > last.sent
        weeks.append(WeeklySent(event.dataset_id, event.event_name, last.sent, fell))
        week_sent.merge(last)
    fell_below = [week for week in weeks if week.fell_below]
    others = (week for week in weeks if not week.fell_below)
    shown = heapq.nsmallest(series, fell_below, key=_lowest_first)
    shown += heapq.nsmallest(series - len(shown), others, key=_lowest_first)
    coverage = {
        key: week_sent.match_keys.get(key, 0) / week_sent.sent
        for key in (KEY_ORDER if week_sent.sent else ())
    }
    return SignalHealth(
        len(weeks),
        sum(week.sent < META_WEEKLY_MINIMUM for week in weeks),
        len(fell_below),
        tuple(shown),
        coverage,
    )


def _has_results(counts: DayCounts) -> bool:
    return bool(counts.sent or any(counts.skipped.values()) or any(counts.failed.values()))


def _lowest_first(week: WeeklySent) -> tuple[int, str, str]:
    return week.sent, week.dataset_id, week.event_name
