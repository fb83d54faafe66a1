"""The operations endpoint on `CAPI_METRICS_PORT`: `/metrics`, `/healthz`, `/readyz`.

- `/healthz` (liveness): the main loop turned recently. A loop stuck for longer than
  `stuck_after_s` answers 503, and an orchestrator restarts the process.
- `/readyz` (readiness): the tables are caught up, the broker answers, the loop turns. Each
  failed check is one line of the 503 body.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["HealthServer"]

Checks = Callable[[], list[str]]


class HealthServer:
    """Serves `/metrics`, `/healthz` and `/readyz` on a daemon thread."""

    def __init__(
        self,
        port: int,
        registry: CollectorRegistry,
        alive: Checks,
        ready: Checks,
        *,
        host: str = "0.0.0.0",
        listening: socket.socket | None = None,
    ) -> None:
        """Listens on `host:port`, or serves on `listening`, a socket bound and listening
        already (a worker's, handed down by its supervisor)."""
        handler = _handler(registry, alive, ready)
        if listening is None:
            self._server = ThreadingHTTPServer((host, port), handler)
        else:
            self._server = ThreadingHTTPServer(listening.getsockname(), handler, False)
            self._server.socket.close()
            self._server.socket = listening
        self._server.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, name="health", daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(
    registry: CollectorRegistry, alive: Checks, ready: Checks
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                problems = (alive if path == "/healthz" else ready)()
                body = ("\n".join(problems) if problems else "ok").encode() + b"\n"
                self._send(503 if problems else 200, body)
            else:
                self._send(404, b"not found\n")

    return Handler
