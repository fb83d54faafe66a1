"""Loaded by every Python process started with this folder on its `PYTHONPATH`: the service of
the benchmark's `latency_steps` part, which sets `BENCH_LATENCY_TRACE` to the file its steps go to
(`bench/latency_steps.py`). Without it, nothing happens."""

import os
from pathlib import Path

if os.environ.get("BENCH_LATENCY_TRACE"):
    from latency_steps import install

    install(Path(os.environ["BENCH_LATENCY_TRACE"]))
