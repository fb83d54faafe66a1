"""The Confluent framing through the real `SchemaRegistryClient`, against a minimal registry.

The registry here implements the two REST calls the codec needs (register a schema under a
subject, fetch a schema by id), so the client library's real request and response handling is
exercised.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumer.kafka.codec import AvroCodec, SchemaStore
from tests.factories import trigger_record

pytestmark = pytest.mark.integration


class _Registry(BaseHTTPRequestHandler):
    schemas: list[str] = []
    subjects: dict[str, list[int]] = {}

    def log_message(self, *args):
        pass

    def _reply(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
            schema = body["schema"]
            if schema not in self.schemas:
                self.schemas.append(schema)
            schema_id = self.schemas.index(schema) + 1
            self.subjects.setdefault(parts[1], []).append(schema_id)
            self._reply(200, {"id": schema_id})
        else:
            self._reply(404, {"error_code": 404, "message": "not found"})

    def do_GET(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) == 3 and parts[:2] == ["schemas", "ids"]:
            schema_id = int(parts[2])
            if 0 < schema_id <= len(self.schemas):
                self._reply(200, {"schema": self.schemas[schema_id - 1], "schemaType": "AVRO"})
                return
            self._reply(404, {"error_code": 40403, "message": "Schema not found"})
        else:
            self._reply(404, {"error_code": 404, "message": "not found"})


@pytest.fixture
def registry_url():
    _Registry.schemas, _Registry.subjects = [], {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_confluent_framing_through_the_real_registry_client(registry_url):
    codec = AvroCodec(SchemaStore(), SchemaRegistryClient({"url": registry_url}))
    record = trigger_record()
    data = codec.encode("ConversionTriggered", record, "conversions.triggered")
    assert data[0] == 0
    assert _Registry.subjects == {"conversions.triggered-value": [1]}
    # a second codec (another process) resolves the writer schema by id from the registry
    reader = AvroCodec(SchemaStore(), SchemaRegistryClient({"url": registry_url}))
    assert reader.decode(data, "ConversionTriggered") == record


def test_unknown_schema_id_is_a_decode_error(registry_url):
    from consumer.errors import DecodeError

    codec = AvroCodec(SchemaStore(), SchemaRegistryClient({"url": registry_url}))
    with pytest.raises(DecodeError, match="schema id 42"):
        codec.decode(b"\x00\x00\x00\x00\x2a\x02", "ConversionTriggered")
