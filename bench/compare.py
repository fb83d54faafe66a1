"""This tree's drain against an earlier commit's, side by side in one run.

`python bench/compare.py --base REV` checks REV out into a temporary git worktree, then runs
`bench/bench.py --only drain --only ceiling` in each tree in turn (`--rounds` times, the trees
alternating, so that a machine that slows down or speeds up weighs on both alike), each with
that tree's code for the service and the benchmark. It prints every round's figures and, for
each figure, the median of each tree and their ratio. The machines these run on differ from one
day to the next by as much as 3x: only ratios from one run say what a change did.

`--only PART` (repeatable) runs other parts of `bench/bench.py` instead: `--only latency --only
plain_latency` compares the latency at a fixed load, and the service's p99 over the plain
relay's in the same round.
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
# the figures read from bench.py's table, by the pattern of the label it prints them with
FIGURES = {
    r"CPU s per 1,000 events": "cpu_s_per_1000",
    r"drain throughput \(events/s\)": "events_per_s",
    r"plain loop \(messages/s\)": "plain_loop_per_s",
    r"drain / plain loop": "share_of_plain_loop",
    r"latency p50 at \S+ \(ms\)": "latency_p50_ms",
    r"latency p99 at \S+ \(ms\)": "latency_p99_ms",
    r"plain relay latency p50 at \S+ \(ms\)": "relay_p50_ms",
    r"plain relay latency p99 at \S+ \(ms\)": "relay_p99_ms",
}
# figures made of two read in the same round
DERIVED = {"p99_over_relay_ms": ("latency_p99_ms", "relay_p99_ms")}


def run_parts(tree: Path, events: int, parts: list[str]) -> dict[str, float]:
    """`parts` of the benchmark with `tree`'s code: the figures it printed."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "bench/bench.py", *(a for p in parts for a in ("--only", p))]
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
        match = re.search(rf"^{label}\s+([0-9.]+)", out, re.MULTILINE)
        if match:
            figures[name] = float(match[1])
    for name, (minuend, subtrahend) in DERIVED.items():
        if minuend in figures and subtrahend in figures:
            figures[name] = figures[minuend] - figures[subtrahend]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument(
        "--only", action="append", help="the parts of bench.py to run (default: drain, ceiling)"
    )
    args = parser.parse_args()
    parts = args.only or ["drain", "ceiling"]
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
                    figures = run_parts(tree, args.events, parts)
                    rounds[name].append(figures)
                    print(f"round {n + 1} {name:4}: {figures}", flush=True)
        finally:
            subprocess.run([GIT, "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    print(f"\nmedians of {args.rounds} rounds ({', '.join(parts)}); base = {args.base}")
    print(f"{'figure':24} {'base':>12} {'this tree':>12} {'this / base':>12}")
    for name in [*FIGURES.values(), *DERIVED]:
        before = [r[name] for r in rounds["base"] if name in r]
        after = [r[name] for r in rounds["this"] if name in r]
        if before and after:
            b, a = statistics.median(before), statistics.median(after)
            ratio = f"{a / b:12.2f}" if b > 0 else f"{'-':>12}"
            print(f"{name:24} {b:12g} {a:12g} {ratio}")


if __name__ == "__main__":
    main()
