"""Logging set up at the entry point: text (default) or one JSON object per line.

Messages carry their context as `key=%s` pairs in the format string (topic, partition, offset,
event_id, batch size). The JSON format takes those fields from the call's arguments, typed as
they were passed (an offset stays a number, a list of partitions a list), never parsed back out
of the rendered text. A worker of `CAPI_WORKERS` > 1 marks every line with its index. No message
carries customer information or tokens: the code logs ids and counts, never values.

librdkafka's own log goes through the logger `librdkafka`, and a line it repeats (a broker that
does not answer is retried every second) is written once every `REPEAT_S` seconds, with how
many were left out.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

__all__ = ["REPEAT_S", "JsonFormatter", "setup_logging"]

REPEAT_S = 30.0
# a %-placeholder, and the `key=` just before it when there is one
_PLACEHOLDER = re.compile(
    r"(?:(\w+)=)?%(?:\(\w+\))?[-#0 +]*(?:\d+|\*)?(?:\.\d+)?[diouxXeEfFgGcrsa%]"
)
_JSON_TYPES = (str, int, float, bool, type(None))


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The `key=%s` fields of a record's format string, with the values it was given."""
    args = record.args
    if not isinstance(record.msg, str) or not isinstance(args, tuple):
        return {}
    out: dict[str, Any] = {}
    index = 0
    for match in _PLACEHOLDER.finditer(record.msg):
        if match.group(0).endswith("%%"):
            continue
        if index >= len(args):
            break
        if match.group(1):
            out[match.group(1)] = _json_value(args[index])
        index += 1
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, _JSON_TYPES):
        return value
    if isinstance(value, list | tuple | set | frozenset) and all(
        isinstance(v, _JSON_TYPES) for v in value
    ):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, worker, and the call's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        worker = getattr(record, "worker", None)
        if worker is not None:
            entry["worker"] = worker
        for key, value in fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _Worker(logging.Filter):
    def __init__(self, worker: int | None) -> None:
        super().__init__()
        self._worker = worker
        self._prefix = "" if worker is None else f"worker={worker} "

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self._worker
        record.worker_prefix = self._prefix
        return True


class _Repeats(logging.Filter):
    """A repeated librdkafka line once every `REPEAT_S` seconds (numbers ignored)."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = re.sub(r"\d+", "#", record.getMessage())[:160]
        now = time.monotonic()
        last, left_out = self._seen.get(key, (0.0, 0))
        if last and now - last < REPEAT_S:
            self._seen[key] = (last, left_out + 1)
            return False
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[key] = (now, 0)
        if left_out:
            record.msg = f"{record.getMessage()} ({left_out} alike left out)"
            record.args = ()
        return True


def setup_logging(level: str = "INFO", fmt: str = "text", worker: int | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Worker(worker))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(worker_prefix)s%(name)s %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO: no secret in it, but noise at volume
    logging.getLogger("httpx").setLevel(logging.WARNING)
    librdkafka = logging.getLogger("librdkafka")
    librdkafka.filters[:] = [_Repeats()]
