"""A minimal Confluent Schema Registry for tests: the REST calls the codec makes (register a
schema under a subject, look one up, fetch one by id), optional basic authentication, and an
outage on demand (`stop`, then `start` on the same port)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class MinimalRegistry:
    def __init__(self, user_info: str | None = None) -> None:
        self.schemas: list[str] = []
        self.subjects: dict[str, list[int]] = {}
        self.requests = 0
        self._auth = (
            None if user_info is None else "Basic " + base64.b64encode(user_info.encode()).decode()
        )
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MinimalRegistry:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> MinimalRegistry:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def answer(self, method: str, path: str, body: Any, auth: str | None) -> tuple[int, Any]:
        self.requests += 1
        if self._auth is not None and auth != self._auth:
            return 401, {"error_code": 401, "message": "Unauthorized"}
        parts = path.split("?")[0].strip("/").split("/")
        if method == "GET" and len(parts) == 3 and parts[:2] == ["schemas", "ids"]:
            schema_id = int(parts[2])
            if 0 < schema_id <= len(self.schemas):
                return 200, {"schema": self.schemas[schema_id - 1], "schemaType": "AVRO"}
            return 404, {"error_code": 40403, "message": "Schema not found"}
        if (
            method == "POST"
            and len(parts) == 3
            and parts[0] == "subjects"
            and parts[2] == "versions"
        ):
            schema = body["schema"]
            if schema not in self.schemas:
                self.schemas.append(schema)
            schema_id = self.schemas.index(schema) + 1
            self.subjects.setdefault(parts[1], []).append(schema_id)
            return 200, {"id": schema_id}
        if method == "POST" and len(parts) == 2 and parts[0] == "subjects":
            ids = self.subjects.get(parts[1], [])
            if body["schema"] in self.schemas and self.schemas.index(body["schema"]) + 1 in ids:
                schema_id = self.schemas.index(body["schema"]) + 1
                return 200, {
                    "subject": parts[1],
                    "id": schema_id,
                    "version": 1,
                    "schema": body["schema"],
                }
            return 404, {"error_code": 40403 if ids else 40401, "message": "not found"}
        return 404, {"error_code": 404, "message": "not found"}


def _handler(registry: MinimalRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, payload = registry.answer(
                method, self.path, body, self.headers.get("Authorization")
            )
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler
