"""The `capi-consumer` command as tests run it: this interpreter, the environment they give."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from typing import Any

_COMMAND = [sys.executable, "-m", "consumer.tools.cli"]


def run_cli(env: Mapping[str, str], *args: str, timeout: float = 120) -> Any:
    """Run a command to its end; its output as text."""
    return subprocess.run(
        [*_COMMAND, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def start_cli(env: Mapping[str, str], *args: str, **popen: Any) -> Any:
    """Start a command (`run`, usually) and return its process."""
    return subprocess.Popen([*_COMMAND, *args], env=env, **popen)
