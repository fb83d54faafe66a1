"""Logging set up at the entry point: text (default) or one JSON object per line.

Messages carry their context as `key=value` pairs (topic, partition, offset, event_id, batch
size); the JSON format lifts them into fields. No message carries customer information or
tokens: the code logs ids and counts, never values.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

__all__ = ["JsonFormatter", "setup_logging"]

_PAIR = re.compile(r"(\w+)=(\S+)")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": message,
        }
        for key, value in _PAIR.findall(message):
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO: no secret in it, but noise at volume
    logging.getLogger("httpx").setLevel(logging.WARNING)
