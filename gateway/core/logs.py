"""JSON log lines. Log calls pass only technical values (ids, counts, classes of error);
this formatter adds no request data of its own, and a test greps every line for numbers,
tokens and secrets.

The access log (one line per HTTP request, logger `gateway.http`, message "request") is
kept off the request path (issue 12: formatting and writing one line per request through
`logging` cost ~30 us of a webhook's ~400): a request only appends a tuple to a buffer;
the buffer is formatted and written once per `ACCESS_FLUSH_SECONDS` by a callback on the
event loop, as the same JSON lines `JsonFormatter` makes, in one write. Where
`setup_logging` installed the stderr handler (`gateway serve`) the lines go straight to
it; otherwise (in-process tests, embedders with their own handlers) each becomes a normal
`LogRecord` on `gateway.http`, so whatever handlers are attached still see them.
`[logging] access_log_sample` keeps that share of requests (1 = all, 0 = off); a 5xx is
always kept.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import sys
from datetime import UTC, datetime

# The extra fields a line may carry, in the order they are written.
FIELDS = ("route", "method", "status", "duration_ms", "request_id", "platform", "outcome",
          "loop")
# How long an access line may wait in the buffer before it is written.
ACCESS_FLUSH_SECONDS = 0.2
# A buffer this long is written at once (bounds memory under a burst).
ACCESS_BUFFER_MAX = 4096
ACCESS_LOGGER = "gateway.http"


def _fields(created: float, level: str, logger: str, message: str, extra: dict) -> dict:
    line = {"time": datetime.fromtimestamp(created, UTC).isoformat(),
            "level": level, "logger": logger, "message": message}
    for key in FIELDS:
        value = extra.get(key)
        if value is not None:
            line[key] = value
    return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = _fields(record.created, record.levelname, record.name, record.getMessage(),
                       record.__dict__)
        if record.exc_info and record.exc_info[0] is not None:
            # The exception class only: messages and tracebacks can carry request data.
            line["exception"] = record.exc_info[0].__name__
        return json.dumps(line)


# The handler setup_logging installed; the access log writes its batches to its stream.
_stderr_handler: logging.StreamHandler | None = None


def setup_logging(level: str = "INFO") -> None:
    global _stderr_handler
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    _stderr_handler = handler
    # aiohttp's own access log prints paths and user agents; ours prints route templates.
    logging.getLogger("aiohttp.access").disabled = True


class AccessLog:
    """One line per request, buffered and written from the event loop (module docstring).

    `record` is called by the middleware with technical values only: method, route
    template, status, the request's number (its id is `<process prefix>-<number>`) and the
    duration."""

    def __init__(self, request_prefix: str, sample: float = 1.0) -> None:
        if not 0.0 <= sample <= 1.0:
            raise ValueError("access_log_sample must be between 0 and 1")
        self.log = logging.getLogger(ACCESS_LOGGER)
        self.prefix = request_prefix
        # Keep one request in `every` (deterministic: no random draw per request).
        self.every = 0 if sample == 0 else max(1, round(1 / sample))
        self._sampled = itertools.count()
        self._buffer: list[tuple] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._quoted: dict[str, str] = {}

    def record(self, method: str, route: str, status: int, number: int,
               seconds: float, created: float) -> None:
        if self.every == 0 and status < 500:
            return
        if self.every > 1 and status < 500 and next(self._sampled) % self.every:
            return
        if not self.log.isEnabledFor(logging.INFO):
            return
        entry = (created, method, route, status, number, seconds)
        if not self._direct():
            self._emit(entry)       # someone else's handlers: they see it as it happens
            return
        self._buffer.append(entry)
        if len(self._buffer) >= ACCESS_BUFFER_MAX:
            self.flush()
        elif self._flush_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._flush_handle = loop.call_later(ACCESS_FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Write every buffered line now (also called at shutdown)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        buffered, self._buffer = self._buffer, []
        if not buffered:
            return
        handler = _stderr_handler
        if handler is None or not self._direct():
            for entry in buffered:
                self._emit(entry)
            return
        text = "".join(self._line(*entry) for entry in buffered)
        with handler.lock:
            try:
                handler.stream.write(text)
                handler.stream.flush()
            except (OSError, ValueError):
                pass    # stderr closed: the lines are lost, the requests are not

    def _line(self, created: float, method: str, route: str, status: int, number: int,
              seconds: float) -> str:
        """The line JsonFormatter would write for this request, from a template: the
        strings are JSON-quoted once per distinct value (methods and route templates are
        few), the request id is hex and digits, and floats print as json.dumps does."""
        quoted = self._quoted
        route_json = quoted.get(route) or quoted.setdefault(route, json.dumps(route))
        method_json = quoted.get(method) or quoted.setdefault(method, json.dumps(method))
        return (f'{{"time": "{datetime.fromtimestamp(created, UTC).isoformat()}",'
                f' "level": "INFO", "logger": "{ACCESS_LOGGER}", "message": "request",'
                f' "route": {route_json}, "method": {method_json}, "status": {int(status)},'
                f' "duration_ms": {float(round(seconds * 1000, 2))!r},'
                f' "request_id": "{self.prefix}-{int(number)}"}}\n')

    def _direct(self) -> bool:
        """True when this logger's lines end up only in setup_logging's stderr handler."""
        handler = _stderr_handler
        if handler is None:
            return False
        logger: logging.Logger | None = self.log
        while logger is not None and logger.parent is not None:   # up to the root
            if logger.handlers or not logger.propagate:
                return False
            logger = logger.parent
        return logging.getLogger().handlers == [handler]

    def _extra(self, method: str, route: str, status: int, number: int,
               seconds: float) -> dict:
        return {"method": method, "route": route, "status": status,
                "request_id": f"{self.prefix}-{number}",
                "duration_ms": round(seconds * 1000, 2)}

    def _emit(self, entry: tuple) -> None:
        created, method, route, status, number, seconds = entry
        record = self.log.makeRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, "request", (),
                                     None, extra=self._extra(method, route, status, number,
                                                             seconds))
        record.created = created
        self.log.handle(record)
