"""JSON log lines. Log calls pass only technical values (ids, counts, classes of error);
this formatter adds no request data of its own, and a test greps every line for numbers,
tokens and secrets."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(),
                "level": record.levelname, "logger": record.name,
                "message": record.getMessage()}
        for key in ("route", "method", "status", "duration_ms", "request_id", "platform",
                    "outcome"):
            value = record.__dict__.get(key)
            if value is not None:
                line[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            # The exception class only: messages and tracebacks can carry request data.
            line["exception"] = record.exc_info[0].__name__
        return json.dumps(line)


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log prints paths and user agents; ours prints route templates.
    logging.getLogger("aiohttp.access").disabled = True
