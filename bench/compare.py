"""This tree's drain against an earlier commit's, side by side in one run.

`python bench/compare.py --base REV` checks REV out into a temporary git worktree, then runs
`bench/bench.py --only drain --only ceiling` in each tree in turn (`--rounds` times, the trees
alternating, so that a machine that slows down or speeds up weighs on both alike), each with
that tree's code for the service and the benchmark. It prints every round's figures and, for
each figure, the median of each tree and their ratio. The machines these run on differ from one
day to the next by as much as 3x: only ratios from one run say what a change did.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GIT = shutil.which("git") or "git"
# the figures read from bench.py's table, by the label it prints them with
FIGURES = {
    "CPU s per 1,000 events": "cpu_s_per_1000",
    "drain throughput (events/s)": "events_per_s",
    "plain loop (messages/s)": "plain_loop_per_s",
    "drain / plain loop": "share_of_plain_loop",
}


def run_drain(tree: Path, events: int) -> dict[str, float]:
    """One drain (and plain loop) with `tree`'s code: the figures it printed."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "bench/bench.py", "--only", "drain", "--only", "ceiling"]
    out = subprocess.run(
        [*command, "--events", str(events)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures = {}
    for label, name in FIGURES.items():
        match = re.search(rf"^{re.escape(label)}\s+([0-9.]+)", out, re.MULTILINE)
        if match:
            figures[name] = float(match[1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=60_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-base-") as tmp:
        base = Path(tmp) / "tree"
        subprocess.run(
            [GIT, "worktree", "add", "--detach", str(base), args.base],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            rounds: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
            for n in range(args.rounds):
                for name, tree in (("base", base), ("this", ROOT)):
                    figures = run_drain(tree, args.events)
                    rounds[name].append(figures)
                    print(f"round {n + 1} {name:4}: {figures}", flush=True)
        finally:
            subprocess.run([GIT, "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    print(f"\nmedians of {args.rounds} rounds, {args.events} events a drain; base = {args.base}")
    print(f"{'figure':24} {'base':>12} {'this tree':>12} {'this / base':>12}")
    for name in FIGURES.values():
        before = [r[name] for r in rounds["base"] if name in r]
        after = [r[name] for r in rounds["this"] if name in r]
        if before and after:
            b, a = statistics.median(before), statistics.median(after)
            print(f"{name:24} {b:12g} {a:12g} {a / b:12.2f}")


if __name__ == "__main__":
    main()
