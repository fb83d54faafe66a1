"""What the README and docs/ promise, read by the tests that hold the code to it."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
DESIGN = Path(__file__).resolve().parents[1] / "docs" / "design.md"


def documented_metrics() -> set[str]:
    """The metric names of the README's catalogue (its `### Metrics` table)."""
    section = README.read_text().split("### Metrics", 1)[1].split("###", 1)[0]
    return set(re.findall(r"^\| `(capi_[a-z_]+)` \|", section, re.MULTILINE))


def module_table() -> set[str]:
    """The modules of docs/design.md's package table, as `package/module.py` below `consumer/`."""
    section = DESIGN.read_text().split("| package | module | what it does |", 1)[1]
    names: set[str] = set()
    package = ""
    for line in section.splitlines()[1:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0]:
            package = cells[0].strip("`").removeprefix("consumer/")
        for module in re.findall(r"`([a-z_]+(?:\.py|/))`", cells[1]):
            names.add(package + module)
    return names
