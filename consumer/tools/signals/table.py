"""The report as a text table (`capi-consumer signals` without `--json`).

One row per dataset and event name: the SENT of the last 7 days against Meta's weekly minimum
and SENT per day, oldest first; under it the share of SENT events carrying each match key and
the reasons events were not sent, each with what to do about it.
"""

from __future__ import annotations

from consumer.events.signals import META_WEEKLY_MINIMUM
from consumer.tools.signals.report import EventSignal, SignalsReport

__all__ = ["render_table"]

_INDENT = "    "


def render_table(report: SignalsReport) -> str:
    """The whole table, lines joined, without a final newline."""
    window = report.window
    lines = [
        f"{report.topic}: {window.first_day} to {window.last_day} ({window.days} UTC days)",
        f"Meta optimises ads for an event once a dataset sends it about {META_WEEKLY_MINIMUM} "
        "times a week.",
        "",
    ]
    if not report.signals:
        lines.append("No dataset and event to report (no counts, or none that the filters keep).")
        return "\n".join(lines)
    widths = _widths(report.signals)
    days = f"SENT PER DAY, {window.first_day:%m-%d} TO {window.last_day:%m-%d}"
    header = ("DATASET", "EVENT", "WORKSPACE", "SENT 7 DAYS", "MINIMUM", days)
    lines.append(_row(header, widths))
    number = max(len(str(d.sent)) for s in report.signals for d in s.per_day)
    for signal in report.signals:
        trend = " ".join(f"{day.sent:>{number}}" for day in signal.per_day)
        cells = (
            signal.dataset_id,
            signal.event_name,
            signal.workspace_id or "-",
            str(signal.week_sent),
            _minimum(signal),
            trend,
        )
        if signal is not report.signals[0]:
            lines.append("")
        lines += [_row(cells, widths), *_details(signal)]
    below = sum(signal.below_minimum for signal in report.signals)
    lines += [
        "",
        f"{below} of {len(report.signals)} below {META_WEEKLY_MINIMUM} SENT in the last 7 days.",
    ]
    return "\n".join(lines)


def _minimum(signal: EventSignal) -> str:
    return f"below, {signal.to_minimum} to go" if signal.below_minimum else "reached"


def _widths(signals: tuple[EventSignal, ...]) -> tuple[int, ...]:
    return (
        max(len("DATASET"), *(len(s.dataset_id) for s in signals)),
        max(len("EVENT"), *(len(s.event_name) for s in signals)),
        max(len("WORKSPACE"), *(len(s.workspace_id or "-") for s in signals)),
        len("SENT 7 DAYS"),
        max(len("MINIMUM"), *(len(_minimum(s)) for s in signals)),
    )


def _row(cells: tuple[str, ...], widths: tuple[int, ...]) -> str:
    dataset, event, workspace, week, minimum, trend = cells
    w = widths
    return (
        f"{dataset:<{w[0]}}  {event:<{w[1]}}  {workspace:<{w[2]}}  {week:>{w[3]}}  "
        f"{minimum:<{w[4]}}  {trend}"
    )


def _details(signal: EventSignal) -> list[str]:
    """The match keys and the reasons not sent, under the row."""
    if signal.match_keys:
        keys = "  ".join(f"{c.key} {c.share:.0%}" for c in signal.match_keys)
    else:
        keys = "no SENT event in the window"
    lines = [f"{_INDENT}match keys  {keys}"]
    if not signal.not_sent:
        return lines
    reason_width = max(len(r.reason) for r in signal.not_sent)
    count_width = max(len(str(r.events)) for r in signal.not_sent)
    for i, r in enumerate(signal.not_sent):
        label = "not sent  " if i == 0 else " " * len("not sent  ")
        lines.append(
            f"{_INDENT}{label}{r.status:<7} {r.reason:<{reason_width}} "
            f"{r.events:>{count_width}}  {r.advice}"
        )
    return lines
