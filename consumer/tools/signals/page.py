"""The report as one self-contained HTML page (`capi-consumer signals --html FILE`).

Inline CSS and inline SVG: no script, no font, image or style sheet from elsewhere, no URL at
all, so the page opens the same offline, attached to a ticket or mailed. Per dataset and event
name a bar chart of SENT per day, with a dashed line at Meta's weekly minimum spread over 7
days (50 / 7, about 7.1 a day: a week of days on that line reaches the minimum), and the
reasons events were not sent with what to do; then one match-key coverage table for all.
Every value from the topic is escaped.
"""

from __future__ import annotations

import math
from html import escape

from consumer.events.signal_window import WEEK_DAYS
from consumer.events.signals import META_WEEKLY_MINIMUM, match_key_order
from consumer.tools.signals.report import EventSignal, SignalsReport

__all__ = ["BAR_COLOUR", "CHART_HEIGHT", "CHART_WIDTH", "MINIMUM_COLOUR", "render_page"]

BAR_COLOUR = "#7b2fbe"  # SENT bars; no other element of the page has this colour
MINIMUM_COLOUR = "#e8590c"  # the weekly minimum's line
CHART_WIDTH, CHART_HEIGHT = 720, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 150, 20, 30  # the minimum's label right of the plot
_PLOT_W, _PLOT_H = CHART_WIDTH - _LEFT - _RIGHT, CHART_HEIGHT - _TOP - _BOTTOM
_DAILY_MINIMUM = META_WEEKLY_MINIMUM / WEEK_DAYS

_STYLE = """
body { font-family: system-ui, sans-serif; color: #222; margin: 24px; max-width: 1100px; }
h1 { font-size: 22px; margin: 0 0 8px; }
h2 { font-size: 17px; margin: 0 0 4px; }
section { border-top: 1px solid #ddd; padding: 12px 0; }
p { margin: 4px 0 8px; }
.below { color: #b02a37; font-weight: 600; }
.reached { color: #2b7a3d; font-weight: 600; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
td.n { text-align: right; }
svg text { font-size: 11px; fill: #444; }
"""


def render_page(report: SignalsReport) -> str:
    """The whole page."""
    window = report.window
    below = sum(signal.below_minimum for signal in report.signals)
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        f"<title>Signal health, {window.first_day} to {window.last_day}</title>\n",
        f"<style>{_STYLE}</style>\n</head>\n<body>\n<h1>Signal health</h1>\n",
        f"<p>{escape(report.topic)}: {window.first_day} to {window.last_day} "
        f"({window.days} UTC days). Meta optimises ads for an event once a dataset sends it "
        f"about {META_WEEKLY_MINIMUM} times a week. Bars: SENT per day. Dashed line: "
        f"{META_WEEKLY_MINIMUM} a week spread over {WEEK_DAYS} days "
        f"({_DAILY_MINIMUM:.1f} a day).</p>\n",
        f"<p>{below} of {len(report.signals)} dataset events below {META_WEEKLY_MINIMUM} SENT "
        f"in the last {WEEK_DAYS} days.</p>\n",
    ]
    parts += [_section(signal) for signal in report.signals]
    if report.signals:
        parts.append(_coverage(report.signals))
    parts.append(
        f"<p>Read {report.records_read:,} records ({report.bytes_read:,} bytes); "
        f"{report.undecodable_records:,} undecodable, ignored.</p>\n</body>\n</html>\n"
    )
    return "".join(parts)


def _section(signal: EventSignal) -> str:
    status = (
        f'<span class="below">below {META_WEEKLY_MINIMUM}, {signal.to_minimum} to go</span>'
        if signal.below_minimum
        else f'<span class="reached">{META_WEEKLY_MINIMUM} reached</span>'
    )
    title = f"{escape(signal.dataset_id)} · {escape(signal.event_name)}"
    return (
        f"<section>\n<h2>{title}</h2>\n"
        f"<p>workspace {escape(signal.workspace_id or '-')} · {signal.week_sent} SENT in the "
        f"last {WEEK_DAYS} days: {status}</p>\n{_chart(signal)}{_reasons(signal)}</section>\n"
    )


def _chart(signal: EventSignal) -> str:
    """SENT per day as bars, the daily share of the weekly minimum as a dashed line."""
    top = max(math.ceil(_DAILY_MINIMUM), *(day.sent for day in signal.per_day))
    slot = _PLOT_W / len(signal.per_day)
    bar_w = max(1, math.floor(slot * 0.7))
    label_every = math.ceil(len(signal.per_day) / 14)
    base = _TOP + _PLOT_H
    name = f"SENT per day of {signal.event_name} to dataset {signal.dataset_id}"
    out = [
        f'<svg width="{CHART_WIDTH}" height="{CHART_HEIGHT}" '
        f'viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img" aria-label="{escape(name)}">\n',
        f'<line x1="{_LEFT}" y1="{base}" x2="{_LEFT + _PLOT_W}" y2="{base}" stroke="#999"/>\n',
        f'<text x="{_LEFT - 6}" y="{base + 4}" text-anchor="end">0</text>\n',
        f'<text x="{_LEFT - 6}" y="{_TOP + 4}" text-anchor="end">{top}</text>\n',
    ]
    for i, day in enumerate(signal.per_day):
        x = _LEFT + math.floor(i * slot + (slot - bar_w) / 2)
        height = round(day.sent / top * _PLOT_H)
        if height:
            out.append(
                f'<rect x="{x}" y="{base - height}" width="{bar_w}" height="{height}" '
                f'fill="{BAR_COLOUR}" shape-rendering="crispEdges">'
                f"<title>{day.day}: {day.sent} SENT</title></rect>\n"
            )
        if label_every == 1:  # up to 14 days: each bar's count above it
            out.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{base - height - 4}" text-anchor="middle">'
                f"{day.sent}</text>\n"
            )
        if i % label_every == 0:
            out.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{base + 16}" text-anchor="middle">'
                f"{day.day[5:]}</text>\n"
            )
    line_y = base - round(_DAILY_MINIMUM / top * _PLOT_H)
    out += [
        f'<line x1="{_LEFT}" y1="{line_y}" x2="{_LEFT + _PLOT_W}" y2="{line_y}" '
        f'stroke="{MINIMUM_COLOUR}" stroke-width="2" stroke-dasharray="6 4"/>\n',
        f'<text x="{_LEFT + _PLOT_W + 6}" y="{line_y + 4}">'
        f"{META_WEEKLY_MINIMUM} a week = {_DAILY_MINIMUM:.1f} a day</text>\n",
        "</svg>\n",
    ]
    return "".join(out)


def _reasons(signal: EventSignal) -> str:
    if not signal.not_sent:
        return "<p>Every event of the window was sent.</p>\n"
    rows = "".join(
        f"<tr><td>{escape(r.status)}</td><td>{escape(r.reason)}</td>"
        f'<td class="n">{r.events}</td><td>{escape(r.advice)}</td></tr>\n'
        for r in signal.not_sent
    )
    return (
        "<table>\n<tr><th>not sent</th><th>reason</th><th>events</th>"
        f"<th>what to do</th></tr>\n{rows}</table>\n"
    )


def _coverage(signals: tuple[EventSignal, ...]) -> str:
    """One row per dataset and event: the share of SENT events carrying each key."""
    keys = sorted({c.key for s in signals for c in s.match_keys}, key=match_key_order)
    head = "".join(f"<th>{escape(key)}</th>" for key in keys)
    rows = []
    for signal in signals:
        shares = {c.key: c.share for c in signal.match_keys}
        cells = "".join(
            f'<td class="n">{shares[key]:.0%}</td>' if key in shares else '<td class="n">-</td>'
            for key in keys
        )
        rows.append(
            f"<tr><td>{escape(signal.dataset_id)}</td><td>{escape(signal.event_name)}</td>"
            f'<td class="n">{signal.sent}</td>{cells}</tr>\n'
        )
    return (
        "<section>\n<h2>Match-key coverage</h2>\n"
        "<p>The share of SENT events of the window that carried each key: the more keys, "
        "the more events Meta matches to people.</p>\n"
        f"<table>\n<tr><th>dataset</th><th>event</th><th>SENT</th>{head}</tr>\n"
        f"{''.join(rows)}</table>\n</section>\n"
    )
