"""`capi-consumer signals`: the signal health of each dataset, read from the signals topic.

`reader.py` reads the topic to its end (`consumer/store/signals_topic.py`), `report.py` sums
it over the window (`consumer/events/signal_window.py`) into the report and its JSON form,
`advice.py` says what to do about each reason events were not sent, `table.py` and `page.py`
render the report as text and as a self-contained HTML page. See docs/signals.md.
"""

from consumer.events.signal_window import Window
from consumer.tools.signals.page import render_page
from consumer.tools.signals.reader import read_signals
from consumer.tools.signals.report import Selection, SignalsReport, build_report
from consumer.tools.signals.table import render_table

__all__ = [
    "Selection",
    "SignalsReport",
    "Window",
    "build_report",
    "read_signals",
    "render_page",
    "render_table",
]
