"""Log lines: fields as the call gave them (typed), the worker on every line, librdkafka's
repeated lines left out."""

from __future__ import annotations

import io
import json
import logging

import pytest

from consumer.ops import logs


@pytest.fixture
def captured():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level

    def lines():
        return [line for line in stream.getvalue().splitlines() if line]

    def setup(fmt, worker=None):
        logs.setup_logging("INFO", fmt, worker)
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)

    yield setup, lines
    root.handlers[:], level = saved
    root.setLevel(level)
    logging.getLogger("librdkafka").filters[:] = []


def test_json_fields_are_the_calls_values_typed(captured):
    setup, lines = captured
    setup("json", worker=1)
    log = logging.getLogger("consumer.test")
    log.info("assigned partitions=%s offset=%d ratio=%.2f name=%s", [0, 1, 2], 1001, 0.5, "a b")
    log.warning("100%% done in %s s", 3)
    [first, second] = [json.loads(line) for line in lines()]
    assert first["partitions"] == [0, 1, 2]
    assert first["offset"] == 1001
    assert first["ratio"] == 0.5
    assert first["name"] == "a b"  # a value with a space stays whole
    assert first["worker"] == 1
    assert first["msg"] == "assigned partitions=[0, 1, 2] offset=1001 ratio=0.50 name=a b"
    assert second["msg"] == "100% done in 3 s"
    assert second["level"] == "warning"


def test_text_lines_name_their_worker(captured):
    setup, lines = captured
    setup("text", worker=3)
    logging.getLogger("consumer.test").info("draining pending=%d", 5)
    assert " INFO worker=3 consumer.test draining pending=5" in lines()[0]
    setup("text")
    logging.getLogger("consumer.test").info("x")
    assert " INFO consumer.test x" in lines()[-1]


def test_a_repeated_librdkafka_line_is_written_once_per_period(captured, monkeypatch):
    setup, lines = captured
    now = [100.0]
    monkeypatch.setattr("consumer.ops.logs.time.monotonic", lambda: now[0])
    setup("text")
    rdkafka = logging.getLogger("librdkafka")
    for port in range(50):  # the same failure, other numbers
        rdkafka.warning("FAIL [rdkafka#consumer-%d]: Connect to 127.0.0.1:%d failed", 6, port)
    assert len(lines()) == 1
    now[0] += logs.REPEAT_S + 1
    rdkafka.warning("FAIL [rdkafka#consumer-%d]: Connect to 127.0.0.1:%d failed", 6, 99)
    assert len(lines()) == 2
    assert lines()[-1].endswith("(49 alike left out)")
