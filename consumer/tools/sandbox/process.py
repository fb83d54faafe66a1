"""Run the sandbox as its own process (`capi-consumer sandbox`) and talk to it over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from consumer.tools.embedded_broker import stop_process

__all__ = ["SandboxProcess"]


class SandboxProcess:
    """`with SandboxProcess(config) as sandbox: sandbox.url`"""

    def __init__(
        self, config: dict[str, Any], *, record_bodies: bool = False, light: bool = False
    ) -> None:
        self._config = config
        self._record_bodies = record_bodies
        self._light = light
        self._process: subprocess.Popen[str] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self.url = ""

    def start(self) -> str:
        self._dir = tempfile.TemporaryDirectory(prefix="capi-sandbox-")
        config_path = Path(self._dir.name) / "sandbox.json"
        config_path.write_text(json.dumps(self._config), encoding="utf-8")
        args = [
            sys.executable,
            "-m",
            "consumer.tools.cli",
            "sandbox",
            "--port",
            "0",
            "--config",
            str(config_path),
        ]
        if self._record_bodies:
            args.append("--record-bodies")
        if self._light:
            args.append("--light")
        self._process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if "listening on " not in line:
            self.stop()
            raise RuntimeError(f"sandbox did not start: {line!r}")
        self.url = line.rsplit(" ", 1)[-1].strip()
        return self.url

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.url}{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def events(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/_sandbox/events")
        return result

    def requests(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/_sandbox/requests")
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/_sandbox/stats")
        return result

    def set_faults(self, rules: dict[str, Any]) -> None:
        httpx.post(f"{self.url}/_sandbox/faults", json=rules, timeout=10).raise_for_status()

    def reset(self) -> None:
        httpx.post(f"{self.url}/_sandbox/reset", timeout=10).raise_for_status()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)
            if process.stdout is not None:
                process.stdout.close()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> SandboxProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
