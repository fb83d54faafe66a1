"""The sandbox's HTTP server: the Graph API endpoint plus `/_sandbox/*` for tests.

POST /{version}/{dataset_id}/events   validated like Meta; accepted events are recorded
GET  /_sandbox/events                 accepted events: [{dataset_id, test_event_code, event}]
GET  /_sandbox/requests               every request: status, dataset, events, error code
                                      (and the raw body when started with record_bodies)
GET  /_sandbox/stats                  counts (accepted, rejected, faults by kind, events
                                      whose answer a fault lost after storing them)
POST /_sandbox/reset                  forget what was recorded
POST /_sandbox/faults                 replace the fault plan (see faults.py)
"""

from __future__ import annotations

import logging
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from consumer.tools.sandbox.config import SandboxConfig
from consumer.tools.sandbox.faults import Fault, FaultPlan, graph_error
from consumer.tools.sandbox.rules import ValidationFailure, validate_request

__all__ = ["Sandbox"]

log = logging.getLogger(__name__)

_ERROR_PAGE = b"<html>Service Unavailable</html>"  # a 5xx without a Graph API error


@dataclass(slots=True)
class _Records:
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    accepted_requests: int = 0
    rejected_requests: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    lost_answer_events: int = 0  # stored, then their request's answer lost


class Sandbox:
    """A Graph API stand-in on `host:port` (0 picks a free port)."""

    def __init__(
        self,
        config: SandboxConfig,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        record_bodies: bool = False,
        faults: FaultPlan | None = None,
        light: bool = False,
    ) -> None:
        self.config = config
        self.faults = faults or FaultPlan()
        # light: for benchmarks; checks the token and one event in 100, keeps only counts
        self._light = light
        self._light_events = 0
        self._record_bodies = record_bodies
        self._records = _Records()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{port}"

    def start(self) -> str:
        """Serve from a background thread; return the base URL."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sandbox", daemon=True
        )
        self._thread.start()
        return self.url

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- recording ---------------------------------------------------------------------------

    def handle_events(
        self, version: str, dataset_id: str, query: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, Any]]:
        fbtrace_id = _fbtrace_id()
        request: dict[str, Any] = {
            "at": time.time(),
            "dataset_id": dataset_id,
            "version": version,
            "query": sorted(query),
            "bytes": len(raw),
        }
        if self._record_bodies:
            request["body"] = raw.decode("utf-8", errors="replace")
        try:
            body = _parse_body(raw)
            if self._light:
                return self._light_accept(version, dataset_id, query, body, fbtrace_id)
            events = validate_request(version, dataset_id, query, body, self.config)
        except ValidationFailure as failure:
            request.update(status=failure.http_status, error_code=failure.code)
            request["error_subcode"] = failure.subcode
            with self._lock:
                self._records.requests.append(request)
                self._records.rejected_requests += 1
            return failure.http_status, failure.error_body(fbtrace_id)
        test_code = body.get("test_event_code")
        request.update(status=200, events=len(events), test_event_code=test_code)
        with self._lock:
            self._records.requests.append(request)
            self._records.accepted_requests += 1
            self._records.events.extend(
                {"dataset_id": dataset_id, "test_event_code": test_code, "event": e} for e in events
            )
        messages = [] if test_code is None else [f"test event code {test_code}"]
        return 200, {
            "events_received": len(events),
            "messages": messages,
            "fbtrace_id": fbtrace_id,
        }

    def _light_accept(
        self,
        version: str,
        dataset_id: str,
        query: dict[str, str],
        body: dict[str, Any],
        fbtrace_id: str,
    ) -> tuple[int, dict[str, Any]]:
        raw_data = body.get("data")
        data: list[Any] = raw_data if isinstance(raw_data, list) else []
        sample = {**body, "data": data[::100] or data}
        validate_request(version, dataset_id, query, sample, self.config)
        with self._lock:
            self._records.accepted_requests += 1
            self._light_events += len(data)
        return 200, {"events_received": len(data), "messages": [], "fbtrace_id": fbtrace_id}

    def draw_fault(self, dataset_id: str) -> Fault:
        """The fault for a request; counted now when it strikes before the request is looked
        at, and by `lose_answer` when it strikes an accepted one."""
        fault = self.faults.draw(dataset_id)
        if fault.kind != "none" and not fault.after_accept:
            self._count_fault(fault)
        return fault

    def lose_answer(self, fault: Fault, events: int) -> None:
        """`fault` strikes the answer of an accepted request of `events` events, stored."""
        self._count_fault(fault)
        with self._lock:
            self._records.lost_answer_events += events

    def _count_fault(self, fault: Fault) -> None:
        with self._lock:
            faults = self._records.faults
            faults[fault.name] = faults.get(fault.name, 0) + 1

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._records.events)

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._records.requests)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            r = self._records
            return {
                "accepted_requests": r.accepted_requests,
                "rejected_requests": r.rejected_requests,
                "accepted_events": len(r.events) + self._light_events,
                "faults": dict(r.faults),
                "lost_answer_events": r.lost_answer_events,
            }

    def reset(self) -> None:
        with self._lock:
            self._records = _Records()
            self._light_events = 0


def _parse_body(raw: bytes) -> dict[str, Any]:
    """A JSON body, or a form body whose `data` is a JSON array (both are accepted by Meta)."""
    text = raw.strip()
    if text.startswith(b"{"):
        try:
            body = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ValidationFailure("(#100) The request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ValidationFailure("(#100) The request body must be a JSON object")
        return body
    form = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
    if "data" in form:
        try:
            form_body: dict[str, Any] = dict(form)
            form_body["data"] = orjson.loads(form["data"])
            return form_body
        except orjson.JSONDecodeError:
            raise ValidationFailure("(#100) param data must be a JSON array") from None
    return dict(form)


class _Handler(BaseHTTPRequestHandler):
    """The sandbox's HTTP face; `sandbox` is set by `_handler_for`."""

    sandbox: Sandbox
    protocol_version = "HTTP/1.1"
    server_version = "capi-sandbox"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sandbox %s", format % args)

    def _reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self) -> None:
        answers: dict[str, Callable[[], Any]] = {
            "/_sandbox/events": self.sandbox.events,
            "/_sandbox/requests": self.sandbox.requests,
            "/_sandbox/stats": self.sandbox.stats,
            "/healthz": _ok,
        }
        answer = answers.get(urlsplit(self.path).path)
        if answer is None:
            self._reply(404, {"error": {"message": "Unknown path", "code": 803}})
        else:
            self._reply(200, answer())

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        raw = self._read_body()
        if parts.path == "/_sandbox/reset":
            self.sandbox.reset()
            self._reply(200, {"ok": True})
            return
        if parts.path == "/_sandbox/faults":
            self.sandbox.faults.replace(orjson.loads(raw or b"{}"))
            self._reply(200, {"ok": True})
            return
        segments = parts.path.strip("/").split("/")
        if len(segments) != 3 or segments[2] != "events":
            self._reply(
                400,
                {
                    "error": {
                        "message": "Unknown path components",
                        "code": 2500,
                        "type": "OAuthException",
                    }
                },
            )
            return
        fault = self.sandbox.draw_fault(segments[1])
        if self._inject(fault):
            return
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        status, payload = self.sandbox.handle_events(segments[0], segments[1], query, raw)
        if fault.after_accept and status == 200:
            self.sandbox.lose_answer(fault, int(payload["events_received"]))
            self._lose_answer(fault)
            return
        self._reply(status, payload)

    def _inject(self, fault: Fault) -> bool:
        """Apply a fault that strikes before the request is looked at; True when it answered
        (or dropped) the request."""
        if fault.latency_s:
            time.sleep(fault.latency_s)
        if fault.kind == "none" or fault.after_accept:
            return False
        if fault.kind == "drop":
            self.close_connection = True
            return True
        if fault.kind == "timeout":
            time.sleep(fault.timeout_s)
            self._reply(504, b"{}")
            self.close_connection = True
            return True
        if fault.kind == "status":
            self._reply(fault.code, _ERROR_PAGE)
            return True
        fbtrace_id = _fbtrace_id()
        status, body, headers = graph_error(fault.code, fbtrace_id, fault.regain_minutes)
        self._reply(status, body, headers)
        return True

    def _lose_answer(self, fault: Fault) -> None:
        """The request's events are stored; its client never learns it."""
        if fault.kind == "reset":
            # closed here with a zero linger: a TCP reset, before the server's orderly end
            linger = struct.pack("ii", 1, 0)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            self.rfile.close()
            self.connection.close()
            self.close_connection = True
        elif fault.kind == "timeout":
            time.sleep(fault.timeout_s)
            self.close_connection = True
        elif fault.kind == "status":
            self._reply(fault.code, _ERROR_PAGE)
        else:
            self._reply(200, {"fbtrace_id": _fbtrace_id()})


def _ok() -> dict[str, bool]:
    return {"ok": True}


def _handler_for(sandbox: Sandbox) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"sandbox": sandbox})


def _fbtrace_id() -> str:
    """A trace id shaped like Meta's, one per answer."""
    return "A" + secrets.token_urlsafe(15)
