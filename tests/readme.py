"""What the README promises, read by the tests that hold the code to it."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def documented_metrics() -> set[str]:
    """The metric names of the README's catalogue (its `### Metrics` table)."""
    section = README.read_text().split("### Metrics", 1)[1].split("###", 1)[0]
    return set(re.findall(r"^\| `(capi_[a-z_]+)` \|", section, re.MULTILINE))
